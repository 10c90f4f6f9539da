import { closeSync, fdatasync, fdatasyncSync, fstatSync, ftruncateSync, mkdirSync, openSync, read, readdirSync, rmSync, statSync, writev, writevSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { sha256 } from '../chunking/manifest.js';
import { cached, type Db } from '../storage/sqlite.js';

/** Schema of the store's index; run by the node's database (see node-db.ts). */
export const CHUNK_STORE_SCHEMA = `
  CREATE TABLE chunks (
    hash BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    last_used INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX chunks_lru ON chunks(last_used);
`;

/**
 * Second migration: chunks live in pack files. A row with a pack names the file
 * (packs/<pack>.pack) and where in it the chunk's bytes start; a row without one is a
 * chunk an earlier version kept as a file of its own (chunks/<fan-out>/<hash>), still read.
 */
export const CHUNK_STORE_PACKS = `
  ALTER TABLE chunks ADD COLUMN pack INTEGER;
  ALTER TABLE chunks ADD COLUMN offset INTEGER;
  CREATE INDEX chunks_pack ON chunks(pack, offset) WHERE pack IS NOT NULL;
`;

/** The bytes did not hash to the name they came with. */
export class BadChunkError extends Error {
  constructor(readonly expected: Buffer, readonly actual: Buffer) {
    super(`chunk ${expected.toString('hex').slice(0, 16)}… hashed to ${actual.toString('hex').slice(0, 16)}…`);
  }
}

export interface StoreUsage {
  chunks: number;
  bytes: number;
}

/** The disk (or the index's database) is full: nothing more can be kept until space is freed. */
export class StoreFullError extends Error {
  constructor(cause: Error) {
    super(`the chunk store's disk is full (${(cause as NodeJS.ErrnoException).code ?? cause.message}): keeping what it holds; free space or lower store.budgetBytes`, { cause });
  }
}

function isDiskFull(err: unknown): boolean {
  const code = (err as { code?: string } | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL';
}

/** A pack is sealed (no more appends) once it reaches this size. */
export const PACK_BYTES = 64 * 1024 * 1024;
/** A sealed pack is rewritten once this share of it is dead (evicted or dropped chunks). */
const RECLAIM_DEAD_SHARE = 1 / 3;
/** Compaction moves at most this much per step, so fetched chunks never wait long behind it. */
const COMPACT_STEP_BYTES = 4 * 1024 * 1024;
/** Chunks written together: one writev, one fdatasync, one index transaction. */
const MAX_BATCH_CHUNKS = 64;
/** Pack files kept open for reading beyond the active one. */
const MAX_OPEN_PACKS = 128;

const writevAsync = (fd: number, buffers: Uint8Array[], position: number) =>
  new Promise<number>((resolve, reject) => writev(fd, buffers, position, (err, written) => (err ? reject(err) : resolve(written))));
const fdatasyncAsync = promisify(fdatasync);
const readAsync = (fd: number, into: Buffer, offset: number, length: number, position: number) =>
  new Promise<number>((resolve, reject) => read(fd, into, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))));

/** An open pack file: `refs` counts reads and writes using its descriptor, so it is closed only when none is. */
interface PackHandle {
  id: number;
  fd: number;
  refs: number;
  /** Its file was deleted (emptied or compacted): close once the last user is done. */
  retired: boolean;
}

interface Located {
  size: number;
  pack: number | null;
  offset: number | null;
}

export interface ChunkStoreOptions {
  /**
   * fdatasync each batch before its chunks are indexed (default true). Without it a
   * process crash still leaves whole chunks or none (the index is written after the
   * bytes), and a power cut may leave a damaged chunk that the verifying read drops (it
   * is fetched again); with it, a busy disk's sync latency bounds how fast chunks arrive
   * (setting store.fsync).
   */
  fsync?: boolean;
  /** Told once each time the disk fills (the node logs it; the heartbeat carries `full` until a write succeeds again). */
  onFull?: (err: StoreFullError) => void;
  /** Size at which a pack is sealed (default PACK_BYTES; tests use small packs). */
  packBytes?: number;
}

interface PendingPut {
  hash: Buffer;
  data: Uint8Array;
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * A content-addressed chunk store, indexed in the node's SQLite. Chunks are verified
 * before they are kept and appended to pack files (`chunks/packs/<n>.pack`, sealed at
 * 64 MiB); the index names each chunk's pack, offset and size. Chunks that arrive
 * together are written together — one writev, one fdatasync, one index transaction — and
 * a chunk counts as held only once its bytes are on disk and its row is committed, so a
 * crash at any moment leaves either the whole chunk or none of it (bytes not yet indexed
 * are dead space). A chunk shared by several tracks is stored once.
 *
 * Why packs: one file per chunk cost a create, write, fsync, rename and close per 64 KiB
 * (0.3–0.45 ms of CPU each, measured), and a read four system calls; with eight nodes on
 * two cores that, not the network, set the swarm's pace.
 *
 * Evicted and damaged chunks leave dead space in their pack; a sealed pack a third dead
 * is rewritten (its live chunks appended to the active pack, then the file deleted) in
 * small steps, and an emptied pack is deleted at once. Disk use thus stays within about
 * 1.5 × the chunks held, plus the active pack.
 */
export class ChunkStore {
  private readonly root: string;
  private readonly tmp: string;
  private readonly packDir: string;
  private clock = 0;
  /** Since when (ms) writes fail for lack of space; undefined while they succeed. Reported in the heartbeat. */
  fullSince?: number;
  private readonly handles = new Map<number, PackHandle>();
  /** The pack appended to, and the next byte to write in it (positions are reserved before a write starts). */
  private active!: { handle: PackHandle; end: number };
  /** Chunks waiting for the next batch write, and those being written (by hex hash: one write per chunk). */
  private pending: PendingPut[] = [];
  private readonly writing = new Map<string, Promise<void>>();
  /** Batch writes and compaction steps run one at a time, in order. */
  private lane: Promise<void> = Promise.resolve();
  private flushQueued = false;
  private compactQueued = false;
  /** The pack being compacted: its steps go on with it, so the packs are not surveyed again every 4 MiB. */
  private compacting?: number;
  private closed = false;

  private readonly fsync: boolean;
  private readonly onFull: (err: StoreFullError) => void;
  private readonly packBytes: number;

  constructor(
    private readonly db: Db,
    dir: string,
    options: ChunkStoreOptions = {},
  ) {
    this.fsync = options.fsync ?? true;
    this.onFull = options.onFull ?? (() => {});
    this.packBytes = options.packBytes ?? PACK_BYTES;
    this.root = join(dir, 'chunks');
    this.tmp = join(this.root, 'tmp');
    this.packDir = join(this.root, 'packs');
    mkdirSync(this.packDir, { recursive: true });
    // Leftovers of an earlier version's interrupted writes: never renamed, so never indexed.
    for (const name of safeList(this.tmp)) rmSync(join(this.tmp, name), { force: true });
    const last = cached(this.db, 'SELECT MAX(last_used) AS t FROM chunks').get() as { t: number | null };
    this.clock = Math.max(Date.now(), (last.t ?? 0) + 1);
    this.openPacks();
  }

  /** Finds the packs on disk: deletes those nothing points to, and appends to the newest unless it is sealed. */
  private openPacks(): void {
    const used = new Set((cached(this.db, 'SELECT DISTINCT pack FROM chunks WHERE pack IS NOT NULL').all() as { pack: number }[]).map((r) => r.pack));
    const onDisk = safeList(this.packDir)
      .map((name) => /^(\d+)\.pack$/.exec(name))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
    const newest = onDisk.at(-1);
    for (const id of onDisk) if (!used.has(id) && id !== newest) rmSync(this.packPath(id), { force: true });
    const maxUsed = Math.max(0, ...used);
    if (newest !== undefined && statSync(this.packPath(newest)).size < this.packBytes) {
      const handle = this.handle(newest, 'r+');
      this.active = { handle, end: fstatSync(handle.fd).size };
    } else {
      this.roll(Math.max(maxUsed, newest ?? 0) + 1);
    }
    // A crash may have come between a compaction's index update and its file deletion, or during a reclaim.
    if (this.sparsePacks().length > 0) this.scheduleCompaction();
  }

  private packPath(id: number): string {
    return join(this.packDir, `${String(id).padStart(6, '0')}.pack`);
  }

  /** A new, empty active pack. */
  private roll(id: number): void {
    const handle: PackHandle = { id, fd: openSync(this.packPath(id), 'wx+'), refs: 0, retired: false };
    this.handles.set(id, handle);
    this.active = { handle, end: 0 };
  }

  /** The open descriptor of a pack (opened now if need be), with one more user; release() when done. */
  private handle(id: number, mode: 'r' | 'r+' = 'r'): PackHandle {
    let h = this.handles.get(id);
    if (!h) {
      if (this.handles.size > MAX_OPEN_PACKS) {
        for (const other of this.handles.values()) {
          if (other.refs === 0 && other !== this.active?.handle) {
            closeSync(other.fd);
            this.handles.delete(other.id);
            break;
          }
        }
      }
      h = { id, fd: openSync(this.packPath(id), mode), refs: 0, retired: false };
      this.handles.set(id, h);
    }
    h.refs++;
    return h;
  }

  private release(h: PackHandle): void {
    h.refs--;
    if (h.retired && h.refs === 0) closeSync(h.fd);
  }

  /** Deletes a pack nothing points to any more; its descriptor closes once reads in flight on it are done. */
  private retire(id: number): void {
    rmSync(this.packPath(id), { force: true });
    const h = this.handles.get(id);
    if (!h) return;
    this.handles.delete(id);
    h.retired = true;
    if (h.refs === 0) closeSync(h.fd);
  }

  /**
   * Reserves room for `bytes` at the end of the active pack (sealing it and starting the
   * next when full) and returns where to write, holding the pack until release().
   */
  private reserve(bytes: number): { handle: PackHandle; position: number } {
    if (this.active.end > 0 && this.active.end + bytes > this.packBytes) this.roll(this.active.handle.id + 1);
    const position = this.active.end;
    this.active.end += bytes;
    this.active.handle.refs++;
    return { handle: this.active.handle, position };
  }

  /**
   * A write that failed gives its room back when nothing was reserved after it, and
   * what it wrote of itself is cut off (on a full disk that is space SQLite may need);
   * otherwise the room stays dead space.
   */
  private unreserve(handle: PackHandle, position: number, bytes: number): void {
    if (this.active.handle !== handle || this.active.end !== position + bytes) return;
    this.active.end = position;
    try {
      ftruncateSync(handle.fd, position);
    } catch {
      // Dead space then, reclaimed with the pack.
    }
  }

  /** A strictly increasing use stamp, so LRU order is exact even within a millisecond. */
  private tick(): number {
    this.clock = Math.max(this.clock + 1, Date.now());
    return this.clock;
  }

  private legacyPathOf(hash: Buffer): string {
    const hex = hash.toString('hex');
    return join(this.root, hex.slice(0, 2), hex);
  }

  has(hash: Buffer): boolean {
    return cached(this.db, 'SELECT 1 FROM chunks WHERE hash = ?').get(hash) !== undefined;
  }

  /** Which of these hashes the store lacks, in the order given, without repeats. */
  missing(hashes: readonly Buffer[]): Buffer[] {
    const check = cached(this.db, 'SELECT 1 FROM chunks WHERE hash = ?');
    const seen = new Set<string>();
    const out: Buffer[] = [];
    for (const h of hashes) {
      const key = h.toString('hex');
      if (seen.has(key)) continue;
      seen.add(key);
      if (check.get(h) === undefined) out.push(h);
    }
    return out;
  }

  /** Where a chunk's bytes are (file, offset, size), or undefined when it is not held: for diagnostics and tests. */
  locate(hash: Buffer): { file: string; offset: number; size: number } | undefined {
    const row = this.row(hash);
    if (!row) return undefined;
    return row.pack === null ? { file: this.legacyPathOf(hash), offset: 0, size: row.size } : { file: this.packPath(row.pack), offset: row.offset ?? 0, size: row.size };
  }

  private row(hash: Buffer): Located | undefined {
    return cached(this.db, 'SELECT size, pack, offset FROM chunks WHERE hash = ?').get(hash) as Located | undefined;
  }

  /** Verifies and keeps a chunk, synchronously. Throws BadChunkError if the bytes do not match the hash, StoreFullError when the disk is full. */
  put(hash: Buffer, data: Uint8Array): void {
    if (!this.accept(hash, data)) return;
    const { handle, position } = this.reserve(data.length);
    try {
      writeAllSync(handle.fd, [data], position);
      if (this.fsync) fdatasyncSync(handle.fd);
      // Only now, with the whole chunk on disk, does the index name it.
      this.index([{ hash, size: data.length, pack: handle.id, offset: position }]);
    } catch (err) {
      this.unreserve(handle, position, data.length);
      throw this.writeFailed(err);
    } finally {
      this.release(handle);
    }
    this.fullSince = undefined;
  }

  /**
   * As `put`, off the event loop and batched: chunks put while a batch is being written
   * go into the next one, which is written with one writev, synced once and indexed in
   * one transaction. A node fetching from the swarm uses this: a synchronous write stops
   * the whole process meanwhile (no chunk served to peers, no stream read). Rejects with
   * BadChunkError when the bytes do not match the hash, StoreFullError when the disk is
   * full; the chunk counts as held once the promise resolves.
   */
  putAsync(hash: Buffer, data: Uint8Array): Promise<void> {
    try {
      if (!this.accept(hash, data)) return Promise.resolve();
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const key = hash.toString('hex');
    const already = this.writing.get(key);
    if (already) return already;
    const done = new Promise<void>((resolve, reject) => this.pending.push({ hash, data, resolve, reject }));
    this.writing.set(key, done);
    const forget = () => this.writing.delete(key);
    done.then(forget, forget);
    this.scheduleFlush();
    return done;
  }

  /** Verifies a chunk about to be kept: true if it must be written, false when it is held already (then marked used). */
  private accept(hash: Buffer, data: Uint8Array): boolean {
    if (this.closed) throw new Error('the chunk store is closed');
    const actual = sha256(data);
    if (!actual.equals(hash)) throw new BadChunkError(hash, actual);
    if (this.has(hash)) {
      this.touch([hash]);
      return false;
    }
    return true;
  }

  /** Queues a step behind the others; a step that fails does not stop the ones after it (compaction is tried again at the next eviction). */
  private enqueue(step: () => Promise<void>): void {
    this.lane = this.lane.then(() => step().catch(() => undefined));
  }

  private scheduleFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    this.enqueue(async () => {
      this.flushQueued = false;
      while (this.pending.length > 0) await this.writeBatch(this.pending.splice(0, MAX_BATCH_CHUNKS));
    });
  }

  private async writeBatch(batch: PendingPut[]): Promise<void> {
    try {
      await this.writeChunks(batch);
    } catch (err) {
      // Whatever failed outside the write itself (the index unreadable, say): every put of the batch hears it, none hangs.
      for (const p of batch) p.reject(err as Error);
    }
  }

  private async writeChunks(batch: PendingPut[]): Promise<void> {
    // A chunk may have been stored meanwhile (a sync put of the same bytes).
    const todo = batch.filter((p) => !this.has(p.hash));
    for (const p of batch) if (!todo.includes(p)) p.resolve();
    if (todo.length === 0) return;
    const bytes = todo.reduce((n, p) => n + p.data.length, 0);
    const { handle, position } = this.reserve(bytes);
    try {
      await writeAll(handle.fd, todo.map((p) => p.data), position);
      if (this.fsync) await fdatasyncAsync(handle.fd);
      let offset = position;
      this.index(
        todo.map((p) => {
          const row = { hash: p.hash, size: p.data.length, pack: handle.id, offset };
          offset += p.data.length;
          return row;
        }),
      );
    } catch (err) {
      this.unreserve(handle, position, bytes);
      const failure = this.writeFailed(err);
      for (const p of todo) p.reject(failure);
      return;
    } finally {
      this.release(handle);
    }
    this.fullSince = undefined;
    for (const p of todo) p.resolve();
  }

  /** Chunks whose bytes are on disk count as held from now on. */
  private index(rows: readonly { hash: Buffer; size: number; pack: number; offset: number }[]): void {
    const insert = cached(this.db, 'INSERT OR REPLACE INTO chunks (hash, size, last_used, pack, offset) VALUES (?, ?, ?, ?, ?)');
    this.db.transaction(() => {
      for (const r of rows) insert.run(r.hash, r.size, this.tick(), r.pack, r.offset);
    })();
  }

  /**
   * A write that failed (never indexed, so no read can reach its bytes). A full disk
   * becomes StoreFullError, reported once until a write succeeds again.
   */
  private writeFailed(err: unknown): Error {
    if (!isDiskFull(err)) return err as Error;
    const full = new StoreFullError(err as Error);
    if (this.fullSince === undefined) {
      this.fullSince = Date.now();
      this.onFull(full);
    }
    return full;
  }

  /** The chunk's bytes, verified; undefined if absent or found damaged (then it is dropped). Marks it used. */
  async get(hash: Buffer): Promise<Buffer | undefined> {
    const data = await this.read(hash);
    if (data) this.touch([hash]);
    return data;
  }

  /**
   * The chunk's bytes, verified, without marking it used: serving a peer is not playing,
   * and must not keep a track from being evicted.
   */
  async read(hash: Buffer): Promise<Buffer | undefined> {
    const row = this.row(hash);
    if (!row) return undefined;
    let data: Buffer;
    try {
      data = row.pack === null ? await readFile(this.legacyPathOf(hash)) : await this.readPacked(row.pack, row.offset ?? 0, row.size);
    } catch {
      this.forget(hash);
      return undefined;
    }
    if (data.length !== row.size || !sha256(data).equals(hash)) {
      this.forget(hash);
      if (row.pack === null) await rm(this.legacyPathOf(hash), { force: true });
      return undefined;
    }
    return data;
  }

  private async readPacked(pack: number, offset: number, size: number): Promise<Buffer> {
    const h = this.handle(pack);
    try {
      const out = Buffer.allocUnsafe(size);
      let done = 0;
      while (done < size) {
        const bytesRead = await readAsync(h.fd, out, done, size - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return done === size ? out : out.subarray(0, done);
    } finally {
      this.release(h);
    }
  }

  private forget(hash: Buffer): void {
    cached(this.db, 'DELETE FROM chunks WHERE hash = ?').run(hash);
  }

  /** Marks chunks as just used (played or fetched), for least-recently-used eviction. */
  touch(hashes: readonly Buffer[]): void {
    const stamp = cached(this.db, 'UPDATE chunks SET last_used = ? WHERE hash = ?');
    try {
      this.db.transaction(() => {
        for (const h of hashes) stamp.run(this.tick(), h);
      })();
    } catch (err) {
      // The use stamp only orders eviction: on a full disk, playing what the store holds matters more.
      if (!isDiskFull(err)) throw err;
    }
  }

  usage(): StoreUsage {
    const r = cached(this.db, 'SELECT COUNT(*) AS chunks, COALESCE(SUM(size), 0) AS bytes FROM chunks').get() as StoreUsage;
    return { chunks: r.chunks, bytes: r.bytes };
  }

  /** Bytes the pack files take on disk (live and dead), for diagnostics and tests. */
  diskBytes(): number {
    let total = 0;
    for (const name of safeList(this.packDir)) total += statSync(join(this.packDir, name)).size;
    return total;
  }

  /**
   * Deletes least recently used chunks until the store fits the budget. Pinned chunks
   * (the current queue) are never evicted, even if that leaves the store over budget.
   * Packs left empty are deleted now; those left a third dead are compacted in the background.
   */
  evict(budgetBytes: number, pinned: ReadonlySet<string> = new Set()): { chunks: number; bytes: number } {
    let { bytes } = this.usage();
    const freed = { chunks: 0, bytes: 0 };
    if (bytes <= budgetBytes) return freed;
    const oldest = cached(this.db, 'SELECT hash, size, pack FROM chunks ORDER BY last_used').iterate() as IterableIterator<{ hash: Buffer; size: number; pack: number | null }>;
    const victims: { hash: Buffer; size: number; pack: number | null }[] = [];
    for (const row of oldest) {
      if (bytes <= budgetBytes) break;
      if (pinned.has(row.hash.toString('hex'))) continue;
      victims.push(row);
      bytes -= row.size;
    }
    const touched = new Set<number>();
    this.db.transaction(() => {
      for (const v of victims) this.forget(v.hash);
    })();
    for (const v of victims) {
      // Index first: a crash after it leaves dead bytes or an orphan file, never an entry without bytes.
      if (v.pack === null) rmSync(this.legacyPathOf(v.hash), { force: true });
      else touched.add(v.pack);
      freed.chunks++;
      freed.bytes += v.size;
    }
    const live = cached(this.db, 'SELECT 1 FROM chunks WHERE pack = ? LIMIT 1');
    for (const id of touched) if (id !== this.active.handle.id && live.get(id) === undefined) this.retire(id);
    if (this.sparsePacks().length > 0) this.scheduleCompaction();
    return freed;
  }

  /** Sealed packs at least a third dead, most dead first. */
  private sparsePacks(): number[] {
    const liveBytes = cached(this.db, 'SELECT pack, SUM(size) AS live FROM chunks WHERE pack IS NOT NULL GROUP BY pack').all() as { pack: number; live: number }[];
    const live = new Map(liveBytes.map((r) => [r.pack, r.live]));
    const out: { id: number; dead: number }[] = [];
    for (const name of safeList(this.packDir)) {
      const m = /^(\d+)\.pack$/.exec(name);
      if (!m) continue;
      const id = Number(m[1]);
      if (id === this.active.handle.id) continue;
      const size = statSync(join(this.packDir, name)).size;
      const dead = size - (live.get(id) ?? 0);
      if (size === 0 || dead >= size * RECLAIM_DEAD_SHARE) out.push({ id, dead: dead / Math.max(1, size) });
    }
    return out.sort((a, b) => b.dead - a.dead).map((p) => p.id);
  }

  private scheduleCompaction(): void {
    if (this.compactQueued || this.closed) return;
    this.compactQueued = true;
    this.enqueue(() => this.compactStep());
  }

  /**
   * Moves up to COMPACT_STEP_BYTES of live chunks out of the sparsest sealed pack into the
   * active one, then queues the next step behind any writes waiting: chunks are re-indexed
   * only once their copy is on disk, and the old file goes only when nothing points to it.
   */
  private async compactStep(): Promise<void> {
    this.compactQueued = false;
    if (this.closed) return;
    const id = this.compacting ?? this.sparsePacks()[0];
    if (id === undefined) return;
    this.compacting = id;
    const rows = cached(this.db, 'SELECT hash, size, offset FROM chunks WHERE pack = ? ORDER BY offset').all(id) as { hash: Buffer; size: number; offset: number }[];
    const moving: { hash: Buffer; data: Buffer }[] = [];
    let bytes = 0;
    for (const r of rows) {
      if (bytes >= COMPACT_STEP_BYTES) break;
      const data = await this.readPacked(id, r.offset, r.size).catch(() => undefined);
      // A damaged chunk is dropped, not copied: it is fetched again when wanted.
      if (!data || data.length !== r.size || !sha256(data).equals(r.hash)) {
        this.forget(r.hash);
        continue;
      }
      moving.push({ hash: r.hash, data });
      bytes += r.size;
    }
    if (moving.length > 0) {
      const { handle, position } = this.reserve(bytes);
      try {
        await writeAll(handle.fd, moving.map((m) => m.data), position);
        if (this.fsync) await fdatasyncAsync(handle.fd);
        // Only rows still pointing at the old pack move (one evicted meanwhile stays gone).
        const move = cached(this.db, 'UPDATE chunks SET pack = ?, offset = ? WHERE hash = ? AND pack = ?');
        let offset = position;
        this.db.transaction(() => {
          for (const m of moving) {
            move.run(handle.id, offset, m.hash, id);
            offset += m.data.length;
          }
        })();
      } catch (err) {
        this.unreserve(handle, position, bytes);
        this.writeFailed(err);
        return;
      } finally {
        this.release(handle);
      }
    }
    if (cached(this.db, 'SELECT 1 FROM chunks WHERE pack = ? LIMIT 1').get(id) === undefined) {
      this.retire(id);
      this.compacting = undefined;
    }
    this.scheduleCompaction();
  }

  /** Resolves once every write and compaction step queued so far is done. */
  async flushed(): Promise<void> {
    for (;;) {
      const lane = this.lane;
      await lane;
      if (lane === this.lane && this.pending.length === 0) return;
    }
  }

  /** Finishes queued writes and closes the pack files (before the database closes). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.flushed();
    for (const h of this.handles.values()) closeSync(h.fd);
    this.handles.clear();
  }

  /** A track's bytes, streamed from its chunks in order. Fails if a chunk is missing. */
  stream(chunks: readonly { hash: Buffer }[]): Readable {
    const store = this;
    return Readable.from(
      (async function* () {
        for (const [i, c] of chunks.entries()) {
          const data = await store.get(c.hash);
          if (!data) throw new Error(`chunk ${i} (${c.hash.toString('hex').slice(0, 16)}…) is not in the store`);
          yield data;
        }
      })(),
      { objectMode: false },
    );
  }
}

/** Names in a folder; none when it does not exist. */
function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Writes every buffer at `position` on, following short writes. */
async function writeAll(fd: number, buffers: Uint8Array[], position: number): Promise<void> {
  let rest = buffers;
  while (rest.length > 0) {
    const written = await writevAsync(fd, rest, position);
    position += written;
    rest = afterBytes(rest, written);
  }
}

function writeAllSync(fd: number, buffers: Uint8Array[], position: number): void {
  let rest = buffers;
  while (rest.length > 0) {
    const written = writevSync(fd, rest, position);
    position += written;
    rest = afterBytes(rest, written);
  }
}

/** What is left of `buffers` once `n` bytes of them were written. */
function afterBytes(buffers: Uint8Array[], n: number): Uint8Array[] {
  let i = 0;
  while (i < buffers.length && n >= buffers[i].length) n -= buffers[i++].length;
  if (i >= buffers.length) return [];
  return [buffers[i].subarray(n), ...buffers.slice(i + 1)];
}
