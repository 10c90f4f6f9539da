import type { Logger } from '../../src/log.js';
import { cached, type Db } from '../../src/storage/sqlite.js';
import { MAX_PAYLOAD_BYTES, PLAYLIST_PAGE_ENTRIES, type Playlist, type PlaylistPage, type PlaylistSummary } from '../../src/protocol/schemas.js';
import type { ControlChannel } from '../control/channel.js';
import { CommandError, type CommandRouter } from '../control/commands.js';
import type { Catalogue } from '../library/catalogue.js';
import type { Playback, PlaylistDirectory } from '../playback/playback.js';

/**
 * A playlist's entries are one ordered list that commands rewrite whole (insert at an
 * index, remove at an index), so they are kept as a JSON array in the playlist's row:
 * one read and one write per change, and the order cannot come apart from the list.
 */
export const PLAYLISTS_SCHEMA = `
  CREATE TABLE playlists (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    entry_ids TEXT NOT NULL DEFAULT '[]',
    created_at INTEGER NOT NULL
  );
`;

/** The most entries one playlist holds (as the protocol's playlist schema allows). */
export const MAX_PLAYLIST_ENTRIES = 10_000;

interface PlaylistRow {
  id: number;
  name: string;
  entry_ids: string;
}

/** The retained list's budget: the payload limit less room for the envelope and one more playlist. */
const LIST_BUDGET_BYTES = MAX_PAYLOAD_BYTES - 2048;

/** Listeners told after every change (the Home Assistant bridge re-publishes its selects). */
export type PlaylistsListener = (playlists: Playlist[]) => void;

/**
 * Saved playlists: named, ordered lists of library entries, kept in the hub's SQLite and
 * changed by the playlist/* commands. The list (id, name, entry count, duration; no
 * entries, so it stays under the 64 KiB payload limit) is a retained topic, published at
 * start and after every change; entries are read in pages with `playlist/get` (the
 * changing commands answer with the first page). `play {playlistId}` reads a playlist
 * through this module, and in-process readers (Home Assistant, the REST API) get whole
 * playlists from `list()` and `playlist()`.
 */
export class Playlists implements PlaylistDirectory {
  private readonly listeners = new Set<PlaylistsListener>();

  constructor(
    private readonly db: Db,
    private readonly channel: ControlChannel,
    private readonly commands: CommandRouter,
    private readonly catalogue: Catalogue,
    private readonly playback: Playback,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    this.playback.playlists = this;
    const c = this.commands;
    c.register('playlist/create', ({ name, entryIds }) => {
      if (this.byName(name)) throw new CommandError('conflict', `a playlist named ${JSON.stringify(name)} exists already`);
      const entries = entryIds ?? [];
      this.requireEntries(entries);
      this.requireListRoom(name);
      const playlistId = Number(cached(this.db, 'INSERT INTO playlists (name, entry_ids, created_at) VALUES (?, ?, ?)').run(name, JSON.stringify(entries), Date.now()).lastInsertRowid);
      this.log.info({ playlistId, name, entries: entries.length }, 'playlist created');
      return this.changed(playlistId);
    });
    c.register('playlist/rename', ({ playlistId, name }) => {
      this.require(playlistId);
      const other = this.byName(name);
      if (other && other.id !== playlistId) throw new CommandError('conflict', `a playlist named ${JSON.stringify(name)} exists already (id ${other.id})`);
      this.requireListRoom(name, playlistId);
      cached(this.db, 'UPDATE playlists SET name = ? WHERE id = ?').run(name, playlistId);
      return this.changed(playlistId);
    });
    c.register('playlist/delete', ({ playlistId }) => {
      this.require(playlistId);
      cached(this.db, 'DELETE FROM playlists WHERE id = ?').run(playlistId);
      this.log.info({ playlistId }, 'playlist deleted');
      this.publish();
      return { playlistId };
    });
    c.register('playlist/add', ({ playlistId, entryIds, at }) => {
      const entries = this.entriesOf(playlistId);
      if (!entries) throw new CommandError('not-found', `no playlist with id ${playlistId}`);
      this.requireEntries(entryIds);
      if (at !== undefined && at > entries.length) throw new CommandError('invalid', `at: playlist ${playlistId} has ${entries.length} entries; insert at 0 to ${entries.length}`);
      if (entries.length + entryIds.length > MAX_PLAYLIST_ENTRIES) {
        throw new CommandError('invalid', `playlist ${playlistId} would hold ${entries.length + entryIds.length} entries; the limit is ${MAX_PLAYLIST_ENTRIES}`);
      }
      entries.splice(at ?? entries.length, 0, ...entryIds);
      this.write(playlistId, entries);
      return this.changed(playlistId);
    });
    c.register('playlist/remove', ({ playlistId, index }) => {
      const entries = this.entriesOf(playlistId);
      if (!entries) throw new CommandError('not-found', `no playlist with id ${playlistId}`);
      if (index >= entries.length) throw new CommandError('not-found', `playlist ${playlistId} has no entry at index ${index} (it has ${entries.length}, counted from 0)`);
      entries.splice(index, 1);
      this.write(playlistId, entries);
      return this.changed(playlistId);
    });
    c.register('playlist/get', ({ playlistId, offset, limit }) => {
      const page = this.page(playlistId, offset ?? 0, limit ?? PLAYLIST_PAGE_ENTRIES);
      if (!page) throw new CommandError('not-found', `no playlist with id ${playlistId}`);
      return page;
    });
    this.publish();
  }

  async stop(): Promise<void> {
    if (this.playback.playlists === this) this.playback.playlists = undefined;
  }

  onChange(listener: PlaylistsListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // --- PlaylistDirectory ---------------------------------------------------------------

  entriesOf(playlistId: number): number[] | undefined {
    const row = this.row(playlistId);
    return row ? this.entriesOfRow(row) : undefined;
  }

  list(): Playlist[] {
    return (cached(this.db, 'SELECT id, name, entry_ids FROM playlists ORDER BY id').all() as PlaylistRow[]).map((r) => this.toPlaylist(r));
  }

  /** What the retained list carries: each playlist without its entries. */
  summaries(): PlaylistSummary[] {
    return this.list().map(summaryOf);
  }

  /** Entries `offset` to `offset + limit` of a playlist, with its summary; undefined when there is no such playlist. */
  page(playlistId: number, offset = 0, limit = PLAYLIST_PAGE_ENTRIES): PlaylistPage | undefined {
    const p = this.playlist(playlistId);
    if (!p) return undefined;
    const n = Math.min(Math.max(1, limit), PLAYLIST_PAGE_ENTRIES);
    return { ...summaryOf(p), offset, entryIds: p.entryIds.slice(offset, offset + n) };
  }

  playlist(playlistId: number): Playlist | undefined {
    const row = this.row(playlistId);
    return row ? this.toPlaylist(row) : undefined;
  }

  // --- internals -----------------------------------------------------------------------

  private row(playlistId: number): PlaylistRow | undefined {
    return cached(this.db, 'SELECT id, name, entry_ids FROM playlists WHERE id = ?').get(playlistId) as PlaylistRow | undefined;
  }

  private byName(name: string): PlaylistRow | undefined {
    return cached(this.db, 'SELECT id, name, entry_ids FROM playlists WHERE name = ?').get(name) as PlaylistRow | undefined;
  }

  private entriesOfRow(row: PlaylistRow): number[] {
    const parsed: unknown = JSON.parse(row.entry_ids);
    return Array.isArray(parsed) ? parsed.filter((v): v is number => Number.isInteger(v)) : [];
  }

  private write(playlistId: number, entries: number[]): void {
    cached(this.db, 'UPDATE playlists SET entry_ids = ? WHERE id = ?').run(JSON.stringify(entries), playlistId);
  }

  private require(playlistId: number): void {
    if (!this.row(playlistId)) throw new CommandError('not-found', `no playlist with id ${playlistId}`);
  }

  /** Only entries the library has (live, indexed) go into a playlist. */
  private requireEntries(entryIds: readonly number[]): void {
    const missing = [...new Set(entryIds)].filter((id) => {
      const e = this.catalogue.entry(id);
      return !e || e.removed || e.status !== 'ok';
    });
    if (missing.length > 0) throw new CommandError('not-found', `not playable tracks in the library: entry ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ` and ${missing.length - 10} more` : ''}`);
  }

  /**
   * The retained list must stay under the payload limit: a new playlist (or a longer name)
   * that would push it over is refused, saying how many there are.
   */
  private requireListRoom(name: string, renaming?: number): void {
    const list = (cached(this.db, 'SELECT id, name FROM playlists ORDER BY id').all() as { id: number; name: string }[]).filter((r) => r.id !== renaming);
    // Sizes as published, with the largest count and duration a playlist can have.
    const worst = (id: number, n: string) => ({ playlistId: id, name: n, entryCount: 10_000, durationMs: 99_999_999_999 });
    const bytes = Buffer.byteLength(JSON.stringify({ playlists: [...list.map((r) => worst(r.id, r.name)), worst(2 ** 31 - 1, name)], at: Date.now() }));
    if (bytes > LIST_BUDGET_BYTES) {
      throw new CommandError('invalid', `the list of playlists would take ${bytes} bytes, over the ${LIST_BUDGET_BYTES}-byte budget of its retained topic (${list.length} playlists); delete some or use shorter names`);
    }
  }

  private toPlaylist(row: PlaylistRow): Playlist {
    const entryIds = this.entriesOfRow(row);
    let durationMs = 0;
    const seconds = new Map<number, number>();
    for (const id of entryIds) {
      if (!seconds.has(id)) {
        const d = this.catalogue.entry(id)?.metadata.durationSeconds;
        seconds.set(id, typeof d === 'number' && Number.isFinite(d) && d > 0 ? d : 0);
      }
      durationMs += seconds.get(id)! * 1000;
    }
    return { playlistId: row.id, name: row.name, entryIds, durationMs: Math.round(durationMs) };
  }

  /** Publishes the list; the reply is the changed playlist's first page. */
  private changed(playlistId: number): PlaylistPage {
    this.publish();
    return this.page(playlistId)!;
  }

  private publish(): void {
    const playlists = this.list();
    this.channel.publish(this.channel.topics.playlists, { playlists: playlists.map(summaryOf), at: Date.now() }, { retain: true });
    for (const listener of this.listeners) {
      try {
        listener(playlists);
      } catch (err) {
        this.log.error({ err }, 'playlist listener failed');
      }
    }
  }
}

export function summaryOf(p: Playlist): PlaylistSummary {
  return { playlistId: p.playlistId, name: p.name, entryCount: p.entryIds.length, durationMs: p.durationMs };
}
