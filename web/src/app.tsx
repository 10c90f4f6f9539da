import { useEffect, useRef, useState } from 'preact/hooks';
import { login, onLoginNeeded } from './api';
import { GroupsView } from './groups';
import { LibraryView } from './library';
import { live, type HubState } from './live';
import { Activity, NodesView } from './nodes';
import { Notices } from './ui';

const VIEWS = [
  { id: 'playing', label: 'Playing' },
  { id: 'library', label: 'Library' },
  { id: 'speakers', label: 'Speakers' },
] as const;
type View = (typeof VIEWS)[number]['id'];

function viewOfHash(): View {
  const h = location.hash.replace(/^#\/?/, '');
  return (VIEWS.find((v) => v.id === h)?.id ?? 'playing') as View;
}

/** The token form, shown when the API answers 401 (a hub bound beyond loopback with a token set). */
function LoginDialog({ done }: { done: () => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState('');
  const field = useRef<HTMLInputElement>(null);
  useEffect(() => field.current?.focus(), []);
  return (
    <div class="overlay" role="dialog" aria-modal="true" aria-labelledby="login-title">
      <form
        class="card login"
        onSubmit={(e) => {
          e.preventDefault();
          login(token).then(done, (err: Error) => setError(err.message));
        }}
      >
        <h2 id="login-title">This hub needs an access token</h2>
        <label>
          Access token
          <input ref={field} type="password" autocomplete="current-password" required value={token} onInput={(e) => setToken((e.target as HTMLInputElement).value)} />
        </label>
        {error && (
          <p class="error-line" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary">
          Sign in
        </button>
      </form>
    </div>
  );
}

export function App() {
  const [hub, setHub] = useState<HubState>(live.state);
  const [view, setView] = useState<View>(viewOfHash());
  const [loginDone, setLoginDone] = useState<(() => void) | null>(null);

  useEffect(() => {
    onLoginNeeded(() => new Promise<void>((resolve) => setLoginDone(() => () => (setLoginDone(null), resolve()))));
    const off = live.subscribe(setHub);
    void live.start();
    const onHash = () => setView(viewOfHash());
    addEventListener('hashchange', onHash);
    return () => {
      off();
      live.stop();
      removeEventListener('hashchange', onHash);
    };
  }, []);

  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <span class="brand" aria-hidden="true">
          ●
        </span>
        <strong class="brand-name">Firefly</strong>
        <nav aria-label="Views">
          {VIEWS.map((v) => (
            <a key={v.id} href={`#/${v.id}`} aria-current={view === v.id ? 'page' : undefined}>
              {v.label}
            </a>
          ))}
        </nav>
        <span class={`conn ${hub.connected ? 'ok' : 'off'}`} role="status">
          {hub.connected ? 'live' : 'connecting…'}
        </span>
      </header>
      <Activity hub={hub} />
      <main id="main" tabIndex={-1}>
        {view === 'playing' && <GroupsView hub={hub} />}
        {view === 'library' && <LibraryView hub={hub} />}
        {view === 'speakers' && <NodesView hub={hub} />}
      </main>
      <Notices />
      {loginDone && <LoginDialog done={loginDone} />}
    </>
  );
}
