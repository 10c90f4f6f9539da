import { cached, type Db } from '../../src/storage/sqlite.js';
import type { GroupQueue } from '../../src/protocol/schemas.js';

/** The playback tables (migration 2 of hub.sqlite). */
export const PLAYBACK_SCHEMA = `
  CREATE TABLE queue_items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    pos INTEGER NOT NULL,
    entry_id INTEGER NOT NULL,
    shuffle_key REAL NOT NULL
  );
  CREATE INDEX queue_items_group ON queue_items(group_id, pos);
  CREATE TABLE group_playback (
    group_id INTEGER PRIMARY KEY REFERENCES groups(id) ON DELETE CASCADE,
    current_item INTEGER,
    position_ms REAL NOT NULL DEFAULT 0,
    shuffle INTEGER NOT NULL DEFAULT 0,
    repeat TEXT NOT NULL DEFAULT 'off',
    muted INTEGER NOT NULL DEFAULT 0
  );
  CREATE TABLE node_output (
    node_id INTEGER PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
    muted INTEGER NOT NULL DEFAULT 0,
    latency_ms REAL NOT NULL DEFAULT 0
  );
`;

/**
 * The session under way per group, so a hub restarted after a crash adopts the playback
 * its nodes carried on with (same session, same anchor) instead of restarting it.
 * Created on open rather than as a numbered migration, so it merges beside other
 * modules' migrations; the table is new and needs no data migration.
 */
export const SESSION_SCHEMA = `CREATE TABLE IF NOT EXISTS playback_session (
  group_id INTEGER PRIMARY KEY REFERENCES groups(id) ON DELETE CASCADE,
  state TEXT NOT NULL,
  session TEXT,
  item_id INTEGER,
  anchor_position_ms REAL,
  anchor_hub_ms REAL
)`;

/** What a restarted hub needs to take over a group's playback. */
export interface SavedSession {
  state: 'playing' | 'paused';
  session: string | null;
  itemId: number | null;
  /** Track position `positionMs` of item `itemId` plays at hub time `hubMs` (hub/clock/hub-time.ts). */
  anchor: { positionMs: number; hubMs: number } | null;
}

export type RepeatMode = 'off' | 'one' | 'all';

export interface QueueItem {
  itemId: number;
  entryId: number;
}

interface ItemRow {
  id: number;
  entry_id: number;
  pos: number;
  shuffle_key: number;
}

interface SettingsRow {
  current_item: number | null;
  position_ms: number;
  shuffle: number;
  repeat: RepeatMode;
  muted: number;
}

/** How many items the retained group state lists (it must stay well under 64 KiB). */
const STATE_ITEMS = 200;

/**
 * One group's play queue, kept in the hub's SQLite so it survives a restart: the items
 * in the user's order, which one is current, shuffle (a random play order, with the
 * current item first) and repeat (off, one, all).
 */
export class PlayQueue {
  constructor(
    private readonly db: Db,
    readonly groupId: number,
  ) {
    cached(db, 'INSERT OR IGNORE INTO group_playback (group_id) VALUES (?)').run(groupId);
  }

  private settings(): SettingsRow {
    return (cached(this.db, 'SELECT current_item, position_ms, shuffle, repeat, muted FROM group_playback WHERE group_id = ?').get(this.groupId) as SettingsRow | undefined) ?? {
      current_item: null,
      position_ms: 0,
      shuffle: 0,
      repeat: 'off',
      muted: 0,
    };
  }

  private rows(): ItemRow[] {
    return cached(this.db, 'SELECT id, entry_id, pos, shuffle_key FROM queue_items WHERE group_id = ? ORDER BY pos, id').all(this.groupId) as ItemRow[];
  }

  items(): QueueItem[] {
    return this.rows().map((r) => ({ itemId: r.id, entryId: r.entry_id }));
  }

  get shuffle(): boolean {
    return this.settings().shuffle === 1;
  }
  get repeat(): RepeatMode {
    return this.settings().repeat;
  }
  get muted(): boolean {
    return this.settings().muted === 1;
  }
  /** Where a paused or stopped group stands in its current item. */
  get savedPositionMs(): number {
    return this.settings().position_ms;
  }

  current(): QueueItem | undefined {
    const id = this.settings().current_item;
    const row = id === null ? undefined : this.rows().find((r) => r.id === id);
    return row ? { itemId: row.id, entryId: row.entry_id } : undefined;
  }

  setCurrent(item: QueueItem | undefined, positionMs = 0): void {
    cached(this.db, 'UPDATE group_playback SET current_item = ?, position_ms = ? WHERE group_id = ?').run(item?.itemId ?? null, positionMs, this.groupId);
  }

  savePosition(positionMs: number): void {
    cached(this.db, 'UPDATE group_playback SET position_ms = ? WHERE group_id = ?').run(positionMs, this.groupId);
  }

  setRepeat(mode: RepeatMode): void {
    cached(this.db, 'UPDATE group_playback SET repeat = ? WHERE group_id = ?').run(mode, this.groupId);
  }

  setMuted(muted: boolean): void {
    cached(this.db, 'UPDATE group_playback SET muted = ? WHERE group_id = ?').run(muted ? 1 : 0, this.groupId);
  }

  /** Shuffle on: a fresh random order that starts with the current item. */
  setShuffle(on: boolean): void {
    this.db.transaction(() => {
      cached(this.db, 'UPDATE group_playback SET shuffle = ? WHERE group_id = ?').run(on ? 1 : 0, this.groupId);
      if (!on) return;
      const current = this.settings().current_item;
      const update = cached(this.db, 'UPDATE queue_items SET shuffle_key = ? WHERE id = ?');
      for (const r of this.rows()) update.run(r.id === current ? -1 : Math.random(), r.id);
    })();
  }

  /** Items in the order they play. */
  playOrder(): QueueItem[] {
    const rows = this.rows();
    if (this.shuffle) rows.sort((a, b) => a.shuffle_key - b.shuffle_key);
    return rows.map((r) => ({ itemId: r.id, entryId: r.entry_id }));
  }

  first(): QueueItem | undefined {
    return this.playOrder()[0];
  }

  /**
   * What follows `item`. At the end of a track (`manual` false) repeat one plays the
   * same item again; a user's next moves on even then. Repeat all wraps around.
   */
  after(item: QueueItem | undefined, manual: boolean): QueueItem | undefined {
    const order = this.playOrder();
    if (!item) return order[0];
    if (!manual && this.repeat === 'one') return order.find((i) => i.itemId === item.itemId);
    const at = order.findIndex((i) => i.itemId === item.itemId);
    if (at < 0) return order[0];
    if (at + 1 < order.length) return order[at + 1];
    return this.repeat === 'all' ? order[0] : undefined;
  }

  before(item: QueueItem | undefined): QueueItem | undefined {
    const order = this.playOrder();
    const at = item ? order.findIndex((i) => i.itemId === item.itemId) : -1;
    if (at > 0) return order[at - 1];
    return this.repeat === 'all' ? order.at(-1) : order[0];
  }

  /** Puts entries in the queue before index `at` (default: at the end); returns the new items. */
  add(entryIds: readonly number[], at?: number): QueueItem[] {
    return this.db.transaction(() => {
      const rows = this.rows();
      const index = Math.min(at ?? rows.length, rows.length);
      const insert = cached(this.db, 'INSERT INTO queue_items (group_id, pos, entry_id, shuffle_key) VALUES (?, ?, ?, ?)');
      const added = entryIds.map((entryId) => ({ itemId: Number(insert.run(this.groupId, 0, entryId, Math.random()).lastInsertRowid), entryId }));
      const order = [...rows.slice(0, index).map((r) => r.id), ...added.map((a) => a.itemId), ...rows.slice(index).map((r) => r.id)];
      this.renumber(order);
      return added;
    })();
  }

  /** Replaces the whole queue; the first new item becomes current. */
  replace(entryIds: readonly number[]): QueueItem[] {
    return this.db.transaction(() => {
      cached(this.db, 'DELETE FROM queue_items WHERE group_id = ?').run(this.groupId);
      const added = this.add(entryIds);
      this.setCurrent(added[0]);
      if (this.shuffle) this.setShuffle(true); // the current item plays first
      return added;
    })();
  }

  has(itemId: number): boolean {
    return this.rows().some((r) => r.id === itemId);
  }

  remove(itemId: number): void {
    cached(this.db, 'DELETE FROM queue_items WHERE id = ? AND group_id = ?').run(itemId, this.groupId);
    this.renumber(this.rows().map((r) => r.id));
  }

  move(itemId: number, to: number): void {
    this.db.transaction(() => {
      const ids = this.rows().map((r) => r.id).filter((id) => id !== itemId);
      ids.splice(Math.min(to, ids.length), 0, itemId);
      this.renumber(ids);
    })();
  }

  clear(): void {
    cached(this.db, 'DELETE FROM queue_items WHERE group_id = ?').run(this.groupId);
    this.setCurrent(undefined);
  }

  private renumber(ids: readonly number[]): void {
    const update = cached(this.db, 'UPDATE queue_items SET pos = ? WHERE id = ?');
    ids.forEach((id, pos) => update.run(pos, id));
  }

  /** Saves (or, with null: the group is stopped, forgets) the session under way. */
  saveSession(saved: SavedSession | null): void {
    if (!saved) return void cached(this.db, 'DELETE FROM playback_session WHERE group_id = ?').run(this.groupId);
    cached(
      this.db,
      `INSERT INTO playback_session (group_id, state, session, item_id, anchor_position_ms, anchor_hub_ms) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT(group_id) DO UPDATE SET state = excluded.state, session = excluded.session, item_id = excluded.item_id,
         anchor_position_ms = excluded.anchor_position_ms, anchor_hub_ms = excluded.anchor_hub_ms`,
    ).run(this.groupId, saved.state, saved.session, saved.itemId, saved.anchor?.positionMs ?? null, saved.anchor?.hubMs ?? null);
  }

  savedSession(): SavedSession | undefined {
    const row = cached(this.db, 'SELECT state, session, item_id, anchor_position_ms, anchor_hub_ms FROM playback_session WHERE group_id = ?').get(this.groupId) as
      | { state: string; session: string | null; item_id: number | null; anchor_position_ms: number | null; anchor_hub_ms: number | null }
      | undefined;
    if (!row || (row.state !== 'playing' && row.state !== 'paused')) return undefined;
    const anchor = row.anchor_position_ms !== null && row.anchor_hub_ms !== null ? { positionMs: row.anchor_position_ms, hubMs: row.anchor_hub_ms } : null;
    return { state: row.state, session: row.session, itemId: row.item_id, anchor };
  }

  state(): GroupQueue {
    const items = this.items();
    return { items: items.slice(0, STATE_ITEMS), length: items.length, current: this.settings().current_item };
  }
}
