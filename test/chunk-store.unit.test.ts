import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { BadChunkError, ChunkStore, type ChunkStoreOptions } from '../src/node/chunk-store.js';
import { openNodeDb } from '../src/node/node-db.js';
import { manifestOf, sha256 } from '../src/chunking/manifest.js';
import type { Db } from '../src/storage/sqlite.js';
import { pseudoRandomBytes } from './helpers/bytes.js';

type T = { after: (fn: () => void) => void };

function setup(t: T, dir?: string, options: ChunkStoreOptions = {}): { store: ChunkStore; db: Db; dir: string } {
  if (!dir) {
    const made = mkdtempSync(join(tmpdir(), 'ff-store-'));
    t.after(() => rmSync(made, { recursive: true, force: true }));
    dir = made;
  }
  const db = openNodeDb(dir);
  const store = new ChunkStore(db, dir, options);
  t.after(async () => {
    await store.close();
    if (db.open) db.close();
  });
  return { store, db, dir };
}

function chunk(seed: string, size = 1000): { hash: Buffer; data: Buffer } {
  const data = pseudoRandomBytes(size, seed);
  return { hash: sha256(data), data };
}

/** The bytes on disk where the index says the chunk is. */
function bytesAt(store: ChunkStore, hash: Buffer): Buffer {
  const at = store.locate(hash);
  assert.ok(at, 'indexed');
  return readFileSync(at.file).subarray(at.offset, at.offset + at.size);
}

/** The pack files, sorted. */
function packs(dir: string): string[] {
  return readdirSync(join(dir, 'chunks', 'packs')).sort();
}

test('put keeps a verified chunk in a pack; get returns the bytes', async (t) => {
  const { store } = setup(t);
  const c = chunk('a', 5000);
  assert.equal(store.has(c.hash), false);
  store.put(c.hash, c.data);
  assert.equal(store.has(c.hash), true);
  assert.match(store.locate(c.hash)!.file, /chunks\/packs\/\d{6}\.pack$/);
  assert.deepEqual(bytesAt(store, c.hash), c.data);
  assert.deepEqual(await store.get(c.hash), c.data);
  assert.deepEqual(store.usage(), { chunks: 1, bytes: 5000 });
  assert.equal(store.diskBytes(), 5000);
  assert.equal(await store.get(chunk('absent').hash), undefined);
});

test('put refuses bytes that do not match the hash, and stores nothing', async (t) => {
  const { store } = setup(t);
  const c = chunk('a');
  const wrong = Buffer.from(c.data);
  wrong[10] ^= 0xff;
  assert.throws(
    () => store.put(c.hash, wrong),
    (err: unknown) => err instanceof BadChunkError && err.expected.equals(c.hash) && err.actual.equals(sha256(wrong)),
  );
  assert.throws(() => store.put(c.hash, new Uint8Array(0)), BadChunkError);
  await assert.rejects(store.putAsync(c.hash, wrong), BadChunkError);
  assert.equal(store.has(c.hash), false);
  assert.deepEqual(store.usage(), { chunks: 0, bytes: 0 });
  assert.equal(store.diskBytes(), 0, 'not a byte written');
  // The right bytes are still accepted afterwards.
  store.put(c.hash, c.data);
  assert.equal(store.has(c.hash), true);
});

test('putAsync writes chunks that arrive together in one batch, each once, and they count as held when it resolves', async (t) => {
  const { store } = setup(t);
  const cs = Array.from({ length: 100 }, (_, i) => chunk(`c${i}`, 500 + i));
  const twice = cs[7];
  await Promise.all([...cs.map((c) => store.putAsync(c.hash, c.data)), store.putAsync(twice.hash, twice.data)]);
  assert.equal(store.usage().chunks, 100);
  assert.equal(store.diskBytes(), cs.reduce((n, c) => n + c.data.length, 0), 'the repeated chunk is written once');
  for (const c of cs) assert.deepEqual(await store.get(c.hash), c.data);
  // Chunks written one after another follow each other in the pack.
  const offsets = cs.map((c) => store.locate(c.hash)!.offset);
  assert.deepEqual(offsets, [...offsets].sort((a, b) => a - b));
});

test('a batch that cannot be indexed rejects every put in it; none is left waiting', async (t) => {
  const { store, db } = setup(t);
  const cs = [chunk('x'), chunk('y')];
  const puts = cs.map((c) => store.putAsync(c.hash, c.data));
  // The index goes away between the puts and their batch write.
  db.close();
  for (const p of puts) await assert.rejects(p, /database connection is not open/);
});

test('bytes a crash left unindexed are dead space: the next open appends after them, and unreferenced packs go', async (t) => {
  const first = setup(t, undefined, { packBytes: 4000 });
  const cs = Array.from({ length: 6 }, (_, i) => chunk(`c${i}`, 1500));
  for (const c of cs) first.store.put(c.hash, c.data);
  await first.store.close();
  first.db.close();
  const dir = first.dir;
  const before = packs(dir);
  assert.equal(before.length, 3, '2 chunks of 1500 B fit a 4000 B pack');
  // A write the crash interrupted: bytes at the end of the newest pack that no row names.
  appendFileSync(join(dir, 'chunks', 'packs', before.at(-1)!), Buffer.alloc(300, 7));
  // A pack a compaction had emptied (rows moved) when the crash came, before its deletion.
  writeFileSync(join(dir, 'chunks', 'packs', '000000.pack'), 'moved away');
  // An earlier version's leftover temporary file.
  mkdirSync(join(dir, 'chunks', 'tmp'), { recursive: true });
  writeFileSync(join(dir, 'chunks', 'tmp', 'abc.deadbeef'), 'half a chunk');

  const again = setup(t, dir, { packBytes: 4000 });
  assert.deepEqual(packs(dir), before, 'the unreferenced pack is deleted, the real ones kept');
  assert.deepEqual(readdirSync(join(dir, 'chunks', 'tmp')), []);
  assert.equal(again.store.usage().chunks, 6);
  const fresh = chunk('fresh', 500);
  await again.store.putAsync(fresh.hash, fresh.data);
  const at = again.store.locate(fresh.hash)!;
  assert.equal(at.file.endsWith(before.at(-1)!) ? at.offset : -1, 2 * 1500 + 300, 'appended after the dead bytes');
  for (const c of [...cs, fresh]) assert.deepEqual(await again.store.get(c.hash), c.data);
});

test('a chunk shared by several tracks is stored once', async (t) => {
  const { store } = setup(t);
  const shared = chunk('shared', 3000);
  const a = chunk('a');
  const b = chunk('b');
  for (const c of [a, shared, b, shared, shared]) store.put(c.hash, c.data);
  await Promise.all([store.putAsync(shared.hash, shared.data), store.putAsync(shared.hash, shared.data)]);
  assert.deepEqual(store.usage(), { chunks: 3, bytes: 5000 });
  assert.equal(store.diskBytes(), 5000);
  assert.deepEqual(await store.get(shared.hash), shared.data);
});

test('missing() lists the absent hashes in order, without repeats', (t) => {
  const { store } = setup(t);
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((s) => chunk(s));
  store.put(b.hash, b.data);
  store.put(d.hash, d.data);
  const got = store.missing([c.hash, a.hash, b.hash, c.hash, d.hash, a.hash]);
  assert.deepEqual(
    got.map((h) => h.toString('hex')),
    [c.hash, a.hash].map((h) => h.toString('hex')),
  );
  assert.deepEqual(store.missing([]), []);
  assert.deepEqual(store.missing([b.hash, d.hash]), []);
});

test('get() detects a chunk damaged on disk and drops it', async (t) => {
  const { store } = setup(t);
  const c = chunk('a', 4096);
  const other = chunk('b');
  store.put(c.hash, c.data);
  store.put(other.hash, other.data);
  const at = store.locate(c.hash)!;
  const fd = openSync(at.file, 'r+');
  writeSync(fd, Buffer.from([c.data[100] ^ 1]), 0, 1, at.offset + 100);
  closeSync(fd);
  assert.equal(await store.get(c.hash), undefined);
  assert.equal(store.has(c.hash), false);
  assert.equal(store.locate(c.hash), undefined, 'no longer indexed');
  assert.deepEqual(await store.get(other.hash), other.data, 'its neighbour in the pack is untouched');
  assert.deepEqual(store.missing([c.hash, other.hash]), [c.hash]);
  assert.deepEqual(store.usage(), { chunks: 1, bytes: other.data.length });
  // It can be fetched again.
  store.put(c.hash, c.data);
  assert.deepEqual(await store.get(c.hash), c.data);
});

test('get() drops a chunk whose bytes have vanished (pack cut short)', async (t) => {
  const { store } = setup(t);
  const c = chunk('a');
  store.put(c.hash, c.data);
  const at = store.locate(c.hash)!;
  truncateSync(at.file, at.offset + 10);
  assert.equal(await store.get(c.hash), undefined);
  assert.equal(store.has(c.hash), false);
  assert.deepEqual(store.missing([c.hash]), [c.hash], 'so the next sync fetches it again');
  store.put(c.hash, c.data);
  assert.deepEqual(await store.get(c.hash), c.data);
});

test('evict() frees least recently used chunks first and stops within the budget', async (t) => {
  // Packs of two chunks each: c0 c1 | c2 c3 | c4 c5 (the last one active).
  const { store, dir } = setup(t, undefined, { packBytes: 2000 });
  const cs = Array.from({ length: 6 }, (_, i) => chunk(`c${i}`, 1000));
  for (const c of cs) store.put(c.hash, c.data); // put order = use order: c0 oldest
  assert.equal(packs(dir).length, 3);
  assert.deepEqual(store.evict(6000), { chunks: 0, bytes: 0 }, 'within budget: nothing to do');
  const freed = store.evict(4000);
  assert.deepEqual(freed, { chunks: 2, bytes: 2000 });
  assert.deepEqual(
    cs.map((c) => store.has(c.hash)),
    [false, false, true, true, true, true],
  );
  assert.equal(packs(dir).length, 2, 'the pack evicted whole is deleted at once');
  assert.deepEqual(store.usage(), { chunks: 4, bytes: 4000 });
  assert.equal(store.diskBytes(), 4000);
  for (const c of cs.slice(2)) assert.deepEqual(await store.get(c.hash), c.data);
});

test('evicting part of a pack leaves dead space that compaction reclaims, moving only live chunks', async (t) => {
  const { store, dir, db } = setup(t, undefined, { packBytes: 10_000 });
  const cs = Array.from({ length: 40 }, (_, i) => chunk(`c${i}`, 1000));
  for (const c of cs) store.put(c.hash, c.data);
  assert.equal(packs(dir).length, 4);
  // Every other chunk used again, so the others are the oldest: evicting half leaves every pack half dead.
  store.touch(cs.filter((_, i) => i % 2 === 1).map((c) => c.hash));
  assert.deepEqual(store.evict(20_000), { chunks: 20, bytes: 20_000 });
  await store.flushed();
  const live = cs.filter((_, i) => i % 2 === 1);
  assert.deepEqual(store.usage(), { chunks: 20, bytes: 20_000 });
  // Before compaction the four packs took 40,000 B; after it, what is held plus at most the active pack's room.
  assert.ok(store.diskBytes() <= 20_000 + 10_000, `disk use ${store.diskBytes()} B for 20,000 B held`);
  for (const c of live) assert.deepEqual(await store.get(c.hash), c.data);
  // The use order survives the move: the oldest live chunk is still the first to go.
  store.evict(19_000);
  assert.equal(store.has(live[0].hash), false);
  assert.equal(store.has(live[1].hash), true);
  // Reopened, everything still reads.
  await store.close();
  db.close();
  const again = setup(t, dir, { packBytes: 10_000 });
  for (const c of live.slice(1)) assert.deepEqual(await again.store.get(c.hash), c.data);
});

test('chunks an earlier version kept as files of their own are still read and evicted', async (t) => {
  const { store, db, dir } = setup(t);
  const old = chunk('old', 2000);
  const hex = old.hash.toString('hex');
  mkdirSync(join(dir, 'chunks', hex.slice(0, 2)), { recursive: true });
  writeFileSync(join(dir, 'chunks', hex.slice(0, 2), hex), old.data);
  db.prepare('INSERT INTO chunks (hash, size, last_used) VALUES (?, ?, 1)').run(old.hash, old.data.length);
  assert.equal(store.has(old.hash), true);
  assert.deepEqual(await store.get(old.hash), old.data);
  const fresh = chunk('fresh');
  store.put(fresh.hash, fresh.data);
  store.evict(1000);
  assert.equal(store.has(old.hash), false);
  assert.equal(existsSync(join(dir, 'chunks', hex.slice(0, 2), hex)), false, 'its file is deleted');
  assert.deepEqual(await store.get(fresh.hash), fresh.data);
});

test('touch() and get() make a chunk recently used, changing the eviction order', async (t) => {
  const { store } = setup(t);
  const cs = Array.from({ length: 5 }, (_, i) => chunk(`c${i}`, 1000));
  for (const c of cs) store.put(c.hash, c.data);
  store.touch([cs[0].hash]); // c0 now newest
  await store.get(cs[1].hash); // then c1
  store.put(cs[2].hash, cs[2].data); // putting a chunk already held counts as a use: c2 newest
  store.evict(3000);
  assert.deepEqual(
    cs.map((c) => store.has(c.hash)),
    [true, true, true, false, false],
  );
  store.evict(1000);
  assert.deepEqual(
    cs.map((c) => store.has(c.hash)),
    [false, false, true, false, false],
  );
  store.evict(0);
  assert.deepEqual(store.usage(), { chunks: 0, bytes: 0 });
});

test('evict() never removes pinned chunks, even if that leaves the store over budget', (t) => {
  const { store } = setup(t);
  const cs = Array.from({ length: 5 }, (_, i) => chunk(`c${i}`, 1000));
  for (const c of cs) store.put(c.hash, c.data);
  const pinned = new Set([cs[0].hash.toString('hex'), cs[1].hash.toString('hex')]);
  // Skips the two oldest (pinned) and evicts the next oldest.
  assert.deepEqual(store.evict(4000, pinned), { chunks: 1, bytes: 1000 });
  assert.deepEqual(
    cs.map((c) => store.has(c.hash)),
    [true, true, false, true, true],
  );
  // Budget below the pinned bytes: everything else goes, the pinned stay.
  assert.deepEqual(store.evict(500, pinned), { chunks: 2, bytes: 2000 });
  assert.deepEqual(
    cs.map((c) => store.has(c.hash)),
    [true, true, false, false, false],
  );
  assert.deepEqual(store.usage(), { chunks: 2, bytes: 2000 });
});

test('stream() reassembles a track from its chunks in order, and fails on a missing chunk', async (t) => {
  const { store } = setup(t);
  const SMALL = { minSize: 256, avgSize: 1024, maxSize: 4096 };
  const track = pseudoRandomBytes(50_000, 'track');
  const m = manifestOf(track, SMALL);
  assert.ok(m.chunks.length > 10);
  for (const c of m.chunks) store.put(c.hash, track.subarray(c.offset, c.offset + c.size));
  assert.deepEqual(await buffer(store.stream(m.chunks)), track);
  // A track that repeats a chunk gets it twice.
  const twice = [m.chunks[0], m.chunks[1], m.chunks[0]];
  const expected = Buffer.concat(twice.map((c) => track.subarray(c.offset, c.offset + c.size)));
  assert.deepEqual(await buffer(store.stream(twice)), expected);
  assert.deepEqual(await buffer(store.stream([])), Buffer.alloc(0));

  store.evict(0, new Set(m.chunks.slice(0, 3).map((c) => c.hash.toString('hex'))));
  await assert.rejects(buffer(store.stream(m.chunks)), /chunk 3 .* not in the store/);
});

test('reopening keeps the index, and the use order', async (t) => {
  const first = setup(t);
  const cs = Array.from({ length: 4 }, (_, i) => chunk(`c${i}`, 1000 + i));
  for (const c of cs) first.store.put(c.hash, c.data);
  first.store.touch([cs[0].hash]);
  first.db.close();

  const { store } = setup(t, first.dir);
  assert.deepEqual(store.usage(), { chunks: 4, bytes: 4006 });
  // Uses after the reopen come after the uses before it. Order so far: c1, c2, c3, c0.
  const fresh = chunk('fresh', 500);
  store.put(fresh.hash, fresh.data);
  store.touch([cs[2].hash]); // c1, c3, c0, fresh, c2
  assert.deepEqual(store.evict(1502), { chunks: 3, bytes: 1000 + 1001 + 1003 });
  assert.deepEqual(
    [...cs, fresh].map((c) => store.has(c.hash)),
    [false, false, true, false, true],
  );
  assert.deepEqual(await store.get(cs[2].hash), cs[2].data);
  assert.deepEqual(await store.get(fresh.hash), fresh.data);
});

test('the chunk store tables, the library mirror and the cached track starts live in the node database, in WAL mode', (t) => {
  const { db, dir } = setup(t);
  assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  assert.ok(existsSync(join(dir, 'node.sqlite')));
  const tables = (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`).all() as { name: string }[]).map((r) => r.name);
  assert.deepEqual(tables, ['chunks', 'entries', 'intros', 'manifests', 'state']);
});
