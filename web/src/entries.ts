import { useEffect, useState } from 'preact/hooks';
import { api } from './api';

/** A library entry as GET /api/library returns it. */
export type { ApiEntry as Entry } from '../../hub/http/api-types';
import type { ApiEntry as Entry } from '../../hub/http/api-types';

const cache = new Map<number, Entry | null>();
const waiting = new Map<number, Promise<Entry | null>>();

function load(id: number): Promise<Entry | null> {
  let p = waiting.get(id);
  if (!p) {
    p = api<Entry>('GET', `/library/entries/${id}`)
      .catch(() => null)
      .then((e) => {
        cache.set(id, e);
        waiting.delete(id);
        return e;
      });
    waiting.set(id, p);
  }
  return p;
}

/** Entries by id, fetched once and kept (queue items and what plays). */
export function useEntries(ids: readonly number[]): Map<number, Entry | null> {
  const [, setTick] = useState(0);
  const key = ids.join(',');
  useEffect(() => {
    let live = true;
    const missing = ids.filter((id) => !cache.has(id));
    if (missing.length > 0) void Promise.all(missing.map(load)).then(() => live && setTick((t) => t + 1));
    return () => {
      live = false;
    };
  }, [key]);
  return cache;
}

/** Forget entries (a file was deleted or re-read). */
export function forgetEntries(): void {
  cache.clear();
}

export function entryTitle(e: Entry | null | undefined, fallback = 'Unknown track'): string {
  if (!e) return fallback;
  return e.title ?? e.path.split('/').pop() ?? fallback;
}

export function entryByline(e: Entry | null | undefined): string {
  if (!e) return '';
  return [e.artist ?? e.albumArtist, e.album].filter(Boolean).join(' — ');
}

export function formatTime(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–:––';
  const s = Math.max(0, Math.floor(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}
