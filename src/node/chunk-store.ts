import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
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

/**
 * A content-addressed chunk store: each chunk is one file named by its SHA-256 under
 * a two-level fan-out, indexed in the node's SQLite. Chunks are verified before they are
 * kept and written atomically (temporary file, fsync, rename), so a crash at any moment
 * leaves either the whole chunk or none of it. A chunk shared by several tracks is
 * stored once.
 */
export class ChunkStore {
  private readonly root: string;
  private readonly tmp: string;
  private clock = 0;
  /** Since when (ms) writes fail for lack of space; undefined while they succeed. Reported in the heartbeat. */
  fullSince?: number;
  /** Fan-out folders known to exist (putAsync makes each once). */
  private readonly folders = new Set<string>();

  constructor(
    private readonly db: Db,
    dir: string,
    /**
     * fsync each chunk before it is renamed into place. Without it a process crash still
     * leaves whole chunks or none (rename), and a power cut may leave a damaged file that
     * the verifying read drops (it is fetched again); with it, a busy disk's fsync latency
     * bounds how fast chunks arrive (setting store.fsync).
     */
    private readonly fsync = true,
    /** Told once each time the disk fills (the node logs it; the heartbeat carries `full` until a write succeeds again). */
    private readonly onFull: (err: StoreFullError) => void = () => {},
  ) {
    this.root = join(dir, 'chunks');
    this.tmp = join(dir, 'chunks', 'tmp');
    mkdirSync(this.tmp, { recursive: true });
    // Leftovers of writes a crash interrupted: never renamed, so never indexed.
    for (const name of readdirSync(this.tmp)) rmSync(join(this.tmp, name), { force: true });
    const last = cached(this.db, 'SELECT MAX(last_used) AS t FROM chunks').get() as { t: number | null };
    this.clock = Math.max(Date.now(), (last.t ?? 0) + 1);
  }

  /** A strictly increasing use stamp, so LRU order is exact even within a millisecond. */
  private tick(): number {
    this.clock = Math.max(this.clock + 1, Date.now());
    return this.clock;
  }

  private pathOf(hash: Buffer): string {
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

  /** Verifies and keeps a chunk. Throws BadChunkError if the bytes do not match the hash, StoreFullError when the disk is full. */
  put(hash: Buffer, data: Uint8Array): void {
    const place = this.placeFor(hash, data);
    if (!place) return;
    const { final, tmp } = place;
    try {
      mkdirSync(join(final, '..'), { recursive: true });
      const fd = openSync(tmp, 'w');
      try {
        let off = 0;
        while (off < data.length) off += writeSync(fd, data, off, data.length - off);
        if (this.fsync) fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, final);
      // Only now, with the whole chunk in place, does the index name it.
      this.index(hash, data.length);
    } catch (err) {
      rmSync(tmp, { force: true });
      throw this.writeFailed(err);
    }
    this.fullSince = undefined;
  }

  /**
   * As `put`, with the file written, fsynced and renamed off the event loop. A node
   * fetching from the swarm uses this: under a busy disk each fsync takes milliseconds
   * to tens of milliseconds, and a synchronous one stops the whole process meanwhile
   * (no chunk served to peers, no stream read). Rejects with BadChunkError when the bytes
   * do not match the hash, StoreFullError when the disk is full; the chunk counts as held
   * once the promise resolves.
   */
  async putAsync(hash: Buffer, data: Uint8Array): Promise<void> {
    const place = this.placeFor(hash, data);
    if (!place) return;
    const { final, tmp } = place;
    try {
      const fanout = join(final, '..');
      if (!this.folders.has(fanout)) {
        await mkdir(fanout, { recursive: true });
        this.folders.add(fanout);
      }
      const fh = await open(tmp, 'w');
      try {
        await fh.writeFile(data);
        if (this.fsync) await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, final);
      this.index(hash, data.length);
    } catch (err) {
      await rm(tmp, { force: true });
      throw this.writeFailed(err);
    }
    this.fullSince = undefined;
  }

  /** Verifies a chunk about to be kept: where it goes, or undefined when it is held already (then marked used). */
  private placeFor(hash: Buffer, data: Uint8Array): { final: string; tmp: string } | undefined {
    const actual = sha256(data);
    if (!actual.equals(hash)) throw new BadChunkError(hash, actual);
    if (this.has(hash)) {
      this.touch([hash]);
      return undefined;
    }
    return { final: this.pathOf(hash), tmp: join(this.tmp, `${hash.toString('hex')}.${randomBytes(4).toString('hex')}`) };
  }

  /** A chunk renamed into place counts as held from now on. */
  private index(hash: Buffer, size: number): void {
    cached(this.db, 'INSERT OR REPLACE INTO chunks (hash, size, last_used) VALUES (?, ?, ?)').run(hash, size, this.tick());
  }

  /**
   * A write that failed (its partial temporary file already removed: never renamed, so
   * never indexed; one renamed but not indexed is an orphan no read can reach). A full
   * disk becomes StoreFullError, reported once until a write succeeds again.
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
    if (!this.has(hash)) return undefined;
    let data: Buffer;
    try {
      data = await readFile(this.pathOf(hash));
    } catch {
      this.forget(hash);
      return undefined;
    }
    if (!sha256(data).equals(hash)) {
      this.forget(hash);
      await rm(this.pathOf(hash), { force: true });
      return undefined;
    }
    return data;
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

  /**
   * Deletes least recently used chunks until the store fits the budget. Pinned chunks
   * (the current queue) are never evicted, even if that leaves the store over budget.
   */
  evict(budgetBytes: number, pinned: ReadonlySet<string> = new Set()): { chunks: number; bytes: number } {
    let { bytes } = this.usage();
    const freed = { chunks: 0, bytes: 0 };
    if (bytes <= budgetBytes) return freed;
    const oldest = cached(this.db, 'SELECT hash, size FROM chunks ORDER BY last_used').iterate() as IterableIterator<{ hash: Buffer; size: number }>;
    const victims: { hash: Buffer; size: number }[] = [];
    for (const row of oldest) {
      if (bytes <= budgetBytes) break;
      if (pinned.has(row.hash.toString('hex'))) continue;
      victims.push(row);
      bytes -= row.size;
    }
    for (const v of victims) {
      // Index first: a crash after it leaves an orphan file, never an entry without bytes.
      this.forget(v.hash);
      rmSync(this.pathOf(v.hash), { force: true });
      freed.chunks++;
      freed.bytes += v.size;
    }
    return freed;
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
