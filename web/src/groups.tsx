import { useEffect, useRef, useState } from 'preact/hooks';
import type { GroupState, NodeInfo } from '../../src/protocol/schemas';
import { api } from './api';
import { entryByline, entryTitle, formatTime, useEntries } from './entries';
import type { HubState } from './live';
import { Icon } from './icons';
import { useAction } from './ui';

/** The position now: published position plus the time since it arrived, while playing. */
function usePosition(g: GroupState, receivedAt: number | undefined): number {
  const [now, setNow] = useState(performance.now());
  const playing = g.playback.state === 'playing';
  useEffect(() => {
    if (!playing) return;
    const t = setInterval(() => setNow(performance.now()), 500);
    return () => clearInterval(t);
  }, [playing]);
  const since = playing && receivedAt !== undefined ? now - receivedAt : 0;
  const pos = g.playback.positionMs + Math.max(0, since);
  return g.playback.durationMs ? Math.min(pos, g.playback.durationMs) : pos;
}

function Cover({ entryId, hasCover, label }: { entryId: number | null; hasCover: boolean; label: string }) {
  if (entryId !== null && hasCover) return <img class="cover" src={`api/library/entries/${entryId}/cover`} alt={`Cover of ${label}`} width={96} height={96} />;
  return (
    <div class="cover cover-none" role="img" aria-label="No cover art">
      <Icon name="note" size={40} />
    </div>
  );
}

function GroupCard({ g, hub, nodes }: { g: GroupState; hub: HubState; nodes: NodeInfo[] }) {
  const act = useAction();
  const id = g.groupId;
  const queueIds = g.queue.items.map((i) => i.entryId);
  const entries = useEntries(g.playback.entryId !== null ? [g.playback.entryId, ...queueIds] : queueIds);
  const current = g.playback.entryId !== null ? entries.get(g.playback.entryId) : undefined;
  const position = usePosition(g, hub.receivedAt[id]);
  const [seeking, setSeeking] = useState<number | null>(null);
  const [editing, setEditing] = useState(false);
  const playing = g.playback.state === 'playing';
  const title = g.playback.title ?? entryTitle(current, g.playback.entryId === null ? 'Nothing queued' : 'Loading…');
  const post = (path: string, body?: unknown) => act(() => api('POST', `/groups/${id}${path}`, body));
  const nodeById = new Map(nodes.map((n) => [n.nodeId, n]));

  return (
    <article class="card group" aria-labelledby={`group-${id}-name`} data-group={g.name}>
      <header class="card-head">
        <h2 id={`group-${id}-name`}>{g.name}</h2>
        <span class={`badge ${g.available ? 'ok' : 'off'}`}>{g.available ? g.playback.state : 'no node online'}</span>
        <button type="button" class="ghost" onClick={() => setEditing(!editing)} aria-expanded={editing}>
          {editing ? 'Close' : 'Edit group'}
        </button>
      </header>
      {editing && <GroupEditor g={g} nodes={nodes} onDone={() => setEditing(false)} />}
      <div class="now">
        <Cover entryId={g.playback.entryId} hasCover={Boolean(current?.cover)} label={title} />
        <div class="now-text">
          <p class="title" data-testid="now-title">{title}</p>
          <p class="byline">{entryByline(current)}</p>
          <div class="seek">
            <span class="time">{formatTime(seeking ?? position)}</span>
            <input
              type="range"
              min={0}
              max={Math.max(1, Math.round((g.playback.durationMs ?? 0) / 1000))}
              step={1}
              value={Math.round((seeking ?? position) / 1000)}
              disabled={g.playback.entryId === null || !g.playback.durationMs}
              aria-label={`Position in ${title}`}
              aria-valuetext={`${formatTime(seeking ?? position)} of ${formatTime(g.playback.durationMs)}`}
              onInput={(e) => setSeeking(Number((e.target as HTMLInputElement).value) * 1000)}
              onChange={(e) => {
                const seconds = Number((e.target as HTMLInputElement).value);
                setSeeking(null);
                post('/seek', { seconds });
              }}
            />
            <span class="time">{formatTime(g.playback.durationMs)}</span>
          </div>
        </div>
      </div>
      <div class="transport" role="group" aria-label={`Playback in ${g.name}`}>
        <button type="button" onClick={() => post('/previous')} aria-label="Previous track" title="Previous"><Icon name="previous" /></button>
        {playing ? (
          <button type="button" class="primary" onClick={() => post('/pause')} aria-label="Pause" title="Pause"><Icon name="pause" /></button>
        ) : (
          <button type="button" class="primary" onClick={() => post(g.playback.state === 'paused' ? '/resume' : '/play')} aria-label="Play" title="Play" disabled={g.queue.length === 0}>
            <Icon name="play" />
          </button>
        )}
        <button type="button" onClick={() => post('/next')} aria-label="Next track" title="Next"><Icon name="next" /></button>
        <button type="button" onClick={() => post('/stop')} aria-label="Stop" title="Stop"><Icon name="stop" /></button>
        <button type="button" aria-pressed={g.playback.shuffle} onClick={() => act(() => api('PATCH', `/groups/${id}`, { shuffle: !g.playback.shuffle }))} title="Shuffle">
          Shuffle
        </button>
        <label class="inline">
          <span>Repeat</span>
          <select value={g.playback.repeat} onChange={(e) => act(() => api('PATCH', `/groups/${id}`, { repeat: (e.target as HTMLSelectElement).value }))}>
            <option value="off">off</option>
            <option value="one">one</option>
            <option value="all">all</option>
          </select>
        </label>
      </div>
      <div class="volume-row">
        <label for={`group-${id}-volume`}>Volume</label>
        <VolumeSlider id={`group-${id}-volume`} value={g.volume} label={`Volume of ${g.name}`} onCommit={(v) => act(() => api('PATCH', `/groups/${id}`, { volume: v }))} />
        <button type="button" class="ghost" aria-pressed={g.playback.muted} onClick={() => act(() => api('PATCH', `/groups/${id}`, { muted: !g.playback.muted }))}>
          {g.playback.muted ? 'Unmute' : 'Mute'}
        </button>
      </div>
      {g.members.length > 0 && (
        <details class="members">
          <summary>
            Speakers ({g.members.filter((m) => m.online).length} of {g.members.length} online)
          </summary>
          <ul>
            {g.members.map((m) => (
              <li key={m.nodeId}>
                <span class={`dot ${m.online ? 'ok' : 'off'}`} aria-hidden="true" />
                <label for={`member-${id}-${m.nodeId}`}>{m.name}</label>
                <VolumeSlider id={`member-${id}-${m.nodeId}`} value={nodeById.get(m.nodeId)?.volume ?? m.volume} label={`Volume of ${m.name}`} onCommit={(v) => act(() => api('PATCH', `/nodes/${m.nodeId}`, { volume: v }))} />
                <button type="button" class="ghost small" aria-pressed={m.muted} aria-label={`Mute ${m.name}`} onClick={() => act(() => api('PATCH', `/nodes/${m.nodeId}`, { muted: !m.muted }))}>
                  {m.muted ? 'Muted' : 'Mute'}
                </button>
              </li>
            ))}
          </ul>
        </details>
      )}
      {g.errors.length > 0 && (
        <p class="error-line" role="status">
          Last problem: {g.errors[g.errors.length - 1].message}
        </p>
      )}
      <Queue g={g} entries={entries} />
    </article>
  );
}

function Queue({ g, entries }: { g: GroupState; entries: ReturnType<typeof useEntries> }) {
  const act = useAction();
  const id = g.groupId;
  if (g.queue.length === 0) return <p class="muted">The queue is empty: add tracks from the Library.</p>;
  return (
    <section class="queue" aria-label={`Queue of ${g.name}`}>
      <div class="queue-head">
        <h3>Queue ({g.queue.length})</h3>
        <button type="button" class="ghost" onClick={() => act(() => api('DELETE', `/groups/${id}/queue`))}>
          Clear
        </button>
      </div>
      <ol>
        {g.queue.items.map((item, index) => {
          const e = entries.get(item.entryId);
          const isCurrent = item.itemId === g.queue.current;
          const name = entryTitle(e);
          return (
            <li key={item.itemId} class={isCurrent ? 'current' : ''} aria-current={isCurrent ? 'true' : undefined}>
              <span class="q-title">
                {name}
                <small>{entryByline(e)}</small>
              </span>
              <span class="q-actions">
                <button type="button" class="icon" disabled={index === 0} aria-label={`Move ${name} up`} onClick={() => act(() => api('POST', `/groups/${id}/queue/${item.itemId}/move`, { to: index - 1 }))}>
                  <Icon name="up" size={18} />
                </button>
                <button type="button" class="icon" disabled={index === g.queue.items.length - 1} aria-label={`Move ${name} down`} onClick={() => act(() => api('POST', `/groups/${id}/queue/${item.itemId}/move`, { to: index + 1 }))}>
                  <Icon name="down" size={18} />
                </button>
                <button type="button" class="icon" aria-label={`Remove ${name} from the queue`} onClick={() => act(() => api('DELETE', `/groups/${id}/queue/${item.itemId}`))}>
                  <Icon name="close" size={18} />
                </button>
              </span>
            </li>
          );
        })}
      </ol>
    </section>
  );
}

/**
 * A volume slider that sends once the user lets go (or on each key press), not on every
 * pixel, and shows what was sent until the hub's state says the same: quick key presses
 * then step from the value sent, not from the one still on its way back.
 */
export function VolumeSlider({ id, value, label, onCommit }: { id: string; value: number; label: string; onCommit: (v: number) => Promise<unknown> }) {
  const [local, setLocal] = useState<number | null>(null);
  // One request at a time, the latest value last: parallel requests could land out of order.
  const sending = useRef<{ busy: boolean; next: number | null }>({ busy: false, next: null });
  const send = (v: number) => {
    const s = sending.current;
    if (s.busy) {
      s.next = v;
      return;
    }
    s.busy = true;
    void onCommit(v).finally(() => {
      s.busy = false;
      const next = s.next;
      s.next = null;
      if (next !== null) send(next);
    });
  };
  useEffect(() => {
    if (local === null) return;
    // Functional updates: a key press may have moved the slider again since this render.
    if (local === value) return setLocal((cur) => (cur === value ? null : cur));
    // The hub refused or someone else changed it: show the hub's value after a while.
    const shown = local;
    const t = setTimeout(() => setLocal((cur) => (cur === shown ? null : cur)), 3000);
    return () => clearTimeout(t);
  }, [value, local]);
  return (
    <span class="slider">
      <input
        id={id}
        type="range"
        min={0}
        max={100}
        step={1}
        value={local ?? value}
        aria-label={label}
        onInput={(e) => setLocal(Number((e.target as HTMLInputElement).value))}
        onChange={(e) => {
          const v = Number((e.target as HTMLInputElement).value);
          setLocal(v);
          send(v);
        }}
      />
      <output for={id}>{local ?? value}</output>
    </span>
  );
}

function NodePicker({ nodes, chosen, onChange, legend }: { nodes: NodeInfo[]; chosen: Set<number>; onChange: (s: Set<number>) => void; legend: string }) {
  if (nodes.length === 0) return <p class="muted">No nodes have joined the hub yet.</p>;
  return (
    <fieldset class="picker">
      <legend>{legend}</legend>
      {nodes.map((n) => (
        <label key={n.nodeId} class="check">
          <input
            type="checkbox"
            checked={chosen.has(n.nodeId)}
            onChange={(e) => {
              const next = new Set(chosen);
              if ((e.target as HTMLInputElement).checked) next.add(n.nodeId);
              else next.delete(n.nodeId);
              onChange(next);
            }}
          />
          {n.name} <span class={`dot ${n.online ? 'ok' : 'off'}`} aria-label={n.online ? 'online' : 'offline'} />
        </label>
      ))}
    </fieldset>
  );
}

function GroupEditor({ g, nodes, onDone }: { g: GroupState; nodes: NodeInfo[]; onDone: () => void }) {
  const act = useAction();
  const [name, setName] = useState(g.name);
  const [chosen, setChosen] = useState(new Set(g.members.map((m) => m.nodeId)));
  return (
    <form
      class="editor"
      aria-label={`Edit ${g.name}`}
      onSubmit={(e) => {
        e.preventDefault();
        act(() => api('PATCH', `/groups/${g.groupId}`, { name, members: [...chosen] })).then((ok) => ok && onDone());
      }}
    >
      <label>
        Name
        <input value={name} required maxLength={64} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
      </label>
      <NodePicker nodes={nodes} chosen={chosen} onChange={setChosen} legend="Speakers in this group" />
      <div class="row">
        <button type="submit" class="primary">Save</button>
        <button
          type="button"
          class="danger"
          onClick={() => {
            if (confirm(`Delete the group ${g.name}? Its speakers stay; only the group goes.`)) act(() => api('DELETE', `/groups/${g.groupId}`));
          }}
        >
          Delete group
        </button>
      </div>
    </form>
  );
}

function NewGroup({ nodes }: { nodes: NodeInfo[] }) {
  const act = useAction();
  const [open, setOpen] = useState(false);
  const [name, setName] = useState('');
  const [chosen, setChosen] = useState(new Set<number>());
  if (!open)
    return (
      <button type="button" class="primary" onClick={() => setOpen(true)}>
        New group
      </button>
    );
  return (
    <form
      class="card editor"
      aria-label="New group"
      onSubmit={(e) => {
        e.preventDefault();
        act(() => api('POST', '/groups', { name, members: [...chosen] })).then((ok) => {
          if (!ok) return;
          setOpen(false);
          setName('');
          setChosen(new Set());
        });
      }}
    >
      <h2>New group</h2>
      <label>
        Group name
        <input value={name} required maxLength={64} onInput={(e) => setName((e.target as HTMLInputElement).value)} placeholder="e.g. Downstairs" />
      </label>
      <NodePicker nodes={nodes} chosen={chosen} onChange={setChosen} legend="Speakers (a speaker leaves its old group)" />
      <div class="row">
        <button type="submit" class="primary">Create group</button>
        <button type="button" class="ghost" onClick={() => setOpen(false)}>
          Cancel
        </button>
      </div>
    </form>
  );
}

export function GroupsView({ hub }: { hub: HubState }) {
  return (
    <section aria-labelledby="groups-title">
      <div class="view-head">
        <h1 id="groups-title">Playing</h1>
        <NewGroup nodes={hub.nodes} />
      </div>
      {hub.groups.length === 0 && <p class="muted">No groups yet. Create one from the speakers that have joined the hub.</p>}
      <div class="cards">
        {hub.groups.map((g) => (
          <GroupCard key={g.groupId} g={g} hub={hub} nodes={hub.nodes} />
        ))}
      </div>
    </section>
  );
}
