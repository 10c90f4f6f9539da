import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { BadChunkError, ChunkStore } from '../src/node/chunk-store.js';
import { openNodeDb } from '../src/node/node-db.js';
import { manifestOf, sha256 } from '../src/chunking/manifest.js';
import type { Db } from '../src/storage/sqlite.js';
import { pseudoRandomBytes } from './helpers/bytes.js';

type T = { after: (fn: () => void) => void };

function setup(t: T, dir?: string): { store: ChunkStore; db: Db; dir: string } {
  if (!dir) {
    const made = mkdtempSync(join(tmpdir(), 'ff-store-'));
    t.after(() => rmSync(made, { recursive: true, force: true }));
    dir = made;
  }
  const db = openNodeDb(dir);
  t.after(() => {
    if (db.open) db.close();
  });
  return { store: new ChunkStore(db, dir), db, dir };
}

function chunk(seed: string, size = 1000): { hash: Buffer; data: Buffer } {
  const data = pseudoRandomBytes(size, seed);
  return { hash: sha256(data), data };
}

function fileOf(dir: string, hash: Buffer): string {
  const hex = hash.toString('hex');
  return join(dir, 'chunks', hex.slice(0, 2), hex);
}

/** Every file under chunks/, relative, sorted (tmp/ included). */
function filesUnder(dir: string): string[] {
  return (readdirSync(join(dir, 'chunks'), { recursive: true }) as string[])
    .filter((p) => statSync(join(dir, 'chunks', p)).isFile())
    .sort();
}

test('put keeps a verified chunk under its hash; get returns the bytes', async (t) => {
  const { store, dir } = setup(t);
  const c = chunk('a', 5000);
  assert.equal(store.has(c.hash), false);
  store.put(c.hash, c.data);
  assert.equal(store.has(c.hash), true);
  assert.deepEqual(readFileSync(fileOf(dir, c.hash)), c.data);
  assert.deepEqual(await store.get(c.hash), c.data);
  assert.deepEqual(store.usage(), { chunks: 1, bytes: 5000 });
  assert.equal(await store.get(chunk('absent').hash), undefined);
});

test('put refuses bytes that do not match the hash, and stores nothing', async (t) => {
  const { store, dir } = setup(t);
  const c = chunk('a');
  const wrong = Buffer.from(c.data);
  wrong[10] ^= 0xff;
  assert.throws(
    () => store.put(c.hash, wrong),
    (err: unknown) => err instanceof BadChunkError && err.expected.equals(c.hash) && err.actual.equals(sha256(wrong)),
  );
  assert.throws(() => store.put(c.hash, new Uint8Array(0)), BadChunkError);
  assert.equal(store.has(c.hash), false);
  assert.deepEqual(store.usage(), { chunks: 0, bytes: 0 });
  assert.deepEqual(filesUnder(dir), [], 'no file, not even a temporary one');
  // The right bytes are still accepted afterwards.
  store.put(c.hash, c.data);
  assert.equal(store.has(c.hash), true);
});

test('writes are atomic: no temporary files are left behind, and leftovers are cleared on open', (t) => {
  const { store, db, dir } = setup(t);
  const chunks = Array.from({ length: 20 }, (_, i) => chunk(`c${i}`, 100 + i * 50));
  for (const c of chunks) store.put(c.hash, c.data);
  assert.deepEqual(readdirSync(join(dir, 'chunks', 'tmp')), []);
  const expected = chunks.map((c) => join(c.hash.toString('hex').slice(0, 2), c.hash.toString('hex'))).sort();
  assert.deepEqual(filesUnder(dir), expected);

  // A crash mid-write leaves a temporary file that was never renamed or indexed.
  const orphan = join(dir, 'chunks', 'tmp', `${chunk('crashed').hash.toString('hex')}.deadbeef`);
  writeFileSync(orphan, 'half a chunk');
  db.close();
  const again = setup(t, dir);
  assert.equal(existsSync(orphan), false);
  assert.deepEqual(readdirSync(join(dir, 'chunks', 'tmp')), []);
  assert.deepEqual(filesUnder(dir), expected, 'real chunks survive the clean-up');
  assert.equal(again.store.usage().chunks, 20);
});

test('a chunk shared by several tracks is stored once', async (t) => {
  const { store, dir } = setup(t);
  const shared = chunk('shared', 3000);
  const a = chunk('a');
  const b = chunk('b');
  for (const c of [a, shared, b, shared, shared]) store.put(c.hash, c.data);
  assert.deepEqual(store.usage(), { chunks: 3, bytes: 5000 });
  assert.equal(filesUnder(dir).length, 3);
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
  const { store, dir } = setup(t);
  const c = chunk('a', 4096);
  const other = chunk('b');
  store.put(c.hash, c.data);
  store.put(other.hash, other.data);
  const damaged = Buffer.from(c.data);
  damaged[100] ^= 1;
  writeFileSync(fileOf(dir, c.hash), damaged);
  assert.equal(await store.get(c.hash), undefined);
  assert.equal(store.has(c.hash), false);
  assert.equal(existsSync(fileOf(dir, c.hash)), false, 'the damaged file is deleted');
  assert.deepEqual(store.missing([c.hash, other.hash]), [c.hash]);
  assert.deepEqual(store.usage(), { chunks: 1, bytes: other.data.length });
  // It can be fetched again.
  store.put(c.hash, c.data);
  assert.deepEqual(await store.get(c.hash), c.data);
});

test('get() drops a chunk whose file has vanished', async (t) => {
  const { store, dir } = setup(t);
  const c = chunk('a');
  store.put(c.hash, c.data);
  rmSync(fileOf(dir, c.hash));
  assert.equal(await store.get(c.hash), undefined);
  assert.equal(store.has(c.hash), false);
  assert.deepEqual(store.missing([c.hash]), [c.hash], 'so the next sync fetches it again');
  store.put(c.hash, c.data);
  assert.deepEqual(await store.get(c.hash), c.data);
});

test('evict() frees least recently used chunks first and stops within the budget', async (t) => {
  const { store, dir } = setup(t);
  const cs = Array.from({ length: 6 }, (_, i) => chunk(`c${i}`, 1000));
  for (const c of cs) store.put(c.hash, c.data); // put order = use order: c0 oldest
  assert.deepEqual(store.evict(6000), { chunks: 0, bytes: 0 }, 'within budget: nothing to do');
  const freed = store.evict(4000);
  assert.deepEqual(freed, { chunks: 2, bytes: 2000 });
  assert.deepEqual(
    cs.map((c) => store.has(c.hash)),
    [false, false, true, true, true, true],
  );
  assert.equal(existsSync(fileOf(dir, cs[0].hash)), false, 'evicted files are deleted');
  assert.equal(existsSync(fileOf(dir, cs[2].hash)), true);
  assert.deepEqual(store.usage(), { chunks: 4, bytes: 4000 });
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

test('the chunk store tables live in the node database, in WAL mode', (t) => {
  const { db, dir } = setup(t);
  assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  assert.ok(existsSync(join(dir, 'node.sqlite')));
  const tables = (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`).all() as { name: string }[]).map((r) => r.name);
  assert.deepEqual(tables, ['chunks', 'entries', 'manifests', 'state']);
});
