import { useEffect, useState } from 'preact/hooks';
import { Icon } from './icons';

/** Messages for the user (a refused action and why), shown in a live region. */
export interface Notice {
  id: number;
  kind: 'error' | 'info';
  text: string;
}

let notices: Notice[] = [];
let nextId = 1;
const listeners = new Set<(n: Notice[]) => void>();

export function notify(kind: Notice['kind'], text: string): void {
  const n = { id: nextId++, kind, text };
  notices = [...notices, n].slice(-4);
  for (const l of listeners) l(notices);
  setTimeout(() => dismiss(n.id), kind === 'error' ? 10_000 : 4000);
}

function dismiss(id: number): void {
  notices = notices.filter((n) => n.id !== id);
  for (const l of listeners) l(notices);
}

/** Runs an action; a failure becomes a notice with the hub's reason. Resolves true on success. */
export function useAction(): (fn: () => Promise<unknown>) => Promise<boolean> {
  return async (fn) => {
    try {
      await fn();
      return true;
    } catch (err) {
      notify('error', (err as Error).message);
      return false;
    }
  };
}

export function Notices() {
  const [list, setList] = useState(notices);
  useEffect(() => {
    listeners.add(setList);
    return () => void listeners.delete(setList);
  }, []);
  return (
    <div class="notices" role="status" aria-live="polite">
      {list.map((n) => (
        <p key={n.id} class={`notice ${n.kind}`}>
          <span>{n.text}</span>
          <button type="button" class="icon" aria-label="Dismiss" onClick={() => dismiss(n.id)}>
            <Icon name="close" size={16} />
          </button>
        </p>
      ))}
    </div>
  );
}

export function Progress({ value, max, label, text }: { value: number; max: number; label: string; text: string }) {
  return (
    <div class="progress">
      <span class="progress-label">{text}</span>
      <progress value={value} max={Math.max(max, 1)} aria-label={label} />
    </div>
  );
}
