import type { Logger } from '../log.js';
import type { Intro, IntroStore } from './player/intro-cache.js';
import { cached, type Db } from '../storage/sqlite.js';

/** The node's cached track starts (see IntroCache), in its SQLite file: they survive a restart. */
export const INTRO_STORE_SCHEMA = `
  CREATE TABLE intros (
    content_id TEXT PRIMARY KEY,
    entry_id INTEGER NOT NULL,
    rate INTEGER NOT NULL,
    channels INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    pcm BLOB NOT NULL,
    -- Eviction order: the next number on every use (a clock's ms would tie).
    used_at INTEGER NOT NULL
  );
  CREATE INDEX intros_used_at ON intros (used_at);
`;

/**
 * Keeps the intro cache in the node's SQLite file, so a node that restarts (an update, a
 * power cut) still starts its recent tracks at once. Each row is one track's first
 * frames as 16-bit PCM with the shape it was decoded at; rows of another shape (the
 * output's rate or channels changed, or introMs) are dropped when loaded; a play reads
 * its row back. A write that fails (a full disk) is logged once and that start stays in
 * memory instead: playback never waits for the disk.
 */
/**
 * Uses are written this much later (ms), together: a write can wait on a WAL checkpoint
 * (up to 16 ms measured, against 0.1 ms typically), and a use comes in a play's prepare.
 */
const USE_FLUSH_MS = 5000;

export class SqliteIntroStore implements IntroStore {
  private warned = false;
  /** Uses not yet written, oldest first (content id → entry id). */
  private readonly uses = new Map<string, number>();
  private useTimer?: NodeJS.Timeout;

  constructor(
    private readonly db: Db,
    private readonly rate: number,
    private readonly log: Logger,
  ) {}

  load(frames: number, channels: number): { entryId: number; contentId: string }[] {
    this.flush();
    try {
      cached(this.db, 'DELETE FROM intros WHERE rate != ? OR channels != ? OR frames != ? OR length(pcm) != ?').run(this.rate, channels, frames, frames * channels * 2);
      const rows = cached(this.db, 'SELECT content_id, entry_id FROM intros ORDER BY used_at, content_id').all() as { content_id: string; entry_id: number }[];
      return rows.map((r) => ({ entryId: r.entry_id, contentId: r.content_id }));
    } catch (err) {
      this.failed('read', err as Error);
      return [];
    }
  }

  read(contentId: string): Int16Array | undefined {
    try {
      const row = cached(this.db, 'SELECT pcm FROM intros WHERE content_id = ?').get(contentId) as { pcm: Buffer } | undefined;
      if (!row) return undefined;
      // Copied out: an Int16Array needs an aligned buffer of its own.
      return new Int16Array(row.pcm.buffer.slice(row.pcm.byteOffset, row.pcm.byteOffset + row.pcm.byteLength));
    } catch (err) {
      this.failed('read', err as Error);
      return undefined;
    }
  }

  put(intro: Intro, channels: number): boolean {
    this.flush();
    return this.guard('write', () =>
      cached(this.db, 'INSERT INTO intros (content_id, entry_id, rate, channels, frames, pcm, used_at) VALUES (?, ?, ?, ?, ?, ?, (SELECT coalesce(max(used_at), 0) + 1 FROM intros)) ON CONFLICT(content_id) DO UPDATE SET entry_id = excluded.entry_id, rate = excluded.rate, channels = excluded.channels, frames = excluded.frames, pcm = excluded.pcm, used_at = excluded.used_at').run(
        intro.contentId,
        intro.entryId,
        this.rate,
        channels,
        intro.pcm.length / channels,
        Buffer.from(intro.pcm.buffer, intro.pcm.byteOffset, intro.pcm.byteLength),
      ),
    );
  }

  used(contentId: string, entryId: number): void {
    this.uses.delete(contentId);
    this.uses.set(contentId, entryId);
    if (this.useTimer) return;
    this.useTimer = setTimeout(() => this.flush(), USE_FLUSH_MS);
    this.useTimer.unref();
  }

  /** Writes the uses not written yet, in their order (before any other write, so the order stays exact). */
  flush(): void {
    clearTimeout(this.useTimer);
    this.useTimer = undefined;
    if (this.uses.size === 0) return;
    const uses = [...this.uses];
    this.uses.clear();
    void this.guard('write', () =>
      this.db.transaction(() => {
        for (const [contentId, entryId] of uses) cached(this.db, 'UPDATE intros SET used_at = (SELECT coalesce(max(used_at), 0) + 1 FROM intros), entry_id = ? WHERE content_id = ?').run(entryId, contentId);
      })(),
    );
  }

  remove(contentId: string): void {
    this.flush();
    void this.guard('write', () => cached(this.db, 'DELETE FROM intros WHERE content_id = ?').run(contentId));
  }

  /** Runs a write; false (logged) if it failed. */
  private guard(what: string, work: () => void): boolean {
    try {
      work();
      return true;
    } catch (err) {
      this.failed(what, err as Error);
      return false;
    }
  }

  private failed(what: string, err: Error): void {
    // Once per run: a full disk would otherwise log on every track.
    if (this.warned) return this.log.debug({ err: err.message }, `cached track starts: ${what} failed`);
    this.warned = true;
    this.log.warn({ err: err.message }, `cached track starts could not be ${what === 'read' ? 'read from' : 'saved to'} the node's database; they are kept in memory only`);
  }
}
