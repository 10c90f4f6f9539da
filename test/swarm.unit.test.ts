/** The swarm's pure parts: the upload cap's arithmetic, the hub's transit log and deflection limit, chunk bitmaps, rate parsing, the holdings announcer over a real store. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TokenBucket } from '../src/transfer/token-bucket.js';
import { DeflectionLimiter, TransitLog } from '../hub/swarm/transit.js';
import { bitmapOf, countBits, hasBit, setBit } from '../src/transfer/chunk-bitmap.js';
import { parseValue } from '../src/config/load.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sha256 } from '../src/chunking/manifest.js';
import { createLogger } from '../src/log.js';
import { ChunkStore } from '../src/node/chunk-store.js';
import { HoldingsAnnouncer } from '../src/node/holdings-announcer.js';
import { LibraryMirror } from '../src/node/library-mirror.js';
import { openNodeDb } from '../src/node/node-db.js';
import type { Holdings } from '../src/protocol/schemas.js';

test('the token bucket lets a burst through, then holds the long-run rate', () => {
  let now = 0;
  const bucket = new TokenBucket(1_000_000, 256 * 1024, () => now);
  assert.equal(bucket.reserve(200_000), 0, 'within the burst: at once');
  // 10 MB asked for at one instant: the last byte may leave at 10 s minus the burst.
  let wait = 0;
  for (let i = 0; i < 50; i++) wait = bucket.reserve(200_000);
  assert.ok(Math.abs(wait - (10_200 - 262.144)) < 1, `last send waits ${wait} ms`);
  // After a quiet spell the burst is available again, but no more than it.
  now = 60_000;
  assert.ok(bucket.reserve(256 * 1024) < 1e-6);
  assert.ok(bucket.reserve(100_000) > 99);
});

test('the transit log says what is on its way to whom, until the grace ends', () => {
  let now = 0;
  const log = new TransitLog(3000, () => now);
  const a = Buffer.alloc(32, 1);
  const b = Buffer.alloc(32, 2);
  const call = log.begin('n1', [a, b]);
  assert.deepEqual(log.comingTo(a.toString('hex')), ['n1']);
  call.sent(a);
  call.end();
  assert.ok(log.coming(a.toString('hex'), 'n1'), 'sent: coming until the holdings catch up');
  assert.ok(!log.coming(b.toString('hex'), 'n1'), 'never sent: not coming');
  now = 3001;
  assert.ok(!log.coming(a.toString('hex'), 'n1'), 'the grace ended');
  log.begin('n2', [a]);
  log.forget('n2');
  assert.deepEqual(log.comingTo(a.toString('hex')), []);
});

test('the hub answers one downloader `elsewhere` for one chunk at most twice, then sends it', () => {
  let now = 0;
  const limiter = new DeflectionLimiter(2, 60_000, () => now);
  assert.ok(limiter.take('n1', 'aa'));
  assert.ok(limiter.take('n1', 'aa'));
  assert.ok(!limiter.take('n1', 'aa'), 'the third ask is served');
  assert.ok(limiter.take('n2', 'aa'), 'counted per downloader');
  assert.ok(limiter.take('n1', 'bb'), 'and per chunk');
  now = 60_001;
  assert.ok(limiter.take('n1', 'aa'), 'forgotten after keepMs');
  limiter.purge();
  now = 200_000;
  limiter.purge();
  assert.ok(limiter.take('n1', 'aa'));
});

test('chunk bitmaps', () => {
  const bm = bitmapOf(10, (i) => i % 3 === 0);
  assert.deepEqual([...Array(10).keys()].filter((i) => hasBit(bm, i)), [0, 3, 6, 9]);
  setBit(bm, 1);
  assert.equal(countBits(bm), 5);
  assert.ok(!hasBit(bm, 400), 'past the end: not held');
});

test('--upload-limit takes bits per second with decimal prefixes', () => {
  assert.equal(parseValue('100M', 'bitrate', '--upload-limit'), 12_500_000);
  assert.equal(parseValue('1.5Gbit', 'bitrate', '--upload-limit'), 187_500_000);
  assert.equal(parseValue('800kbps', 'bitrate', '--upload-limit'), 100_000);
  assert.equal(parseValue('0', 'bitrate', '--upload-limit'), 0);
  assert.throws(() => parseValue('fast', 'bitrate', '--upload-limit'), /--upload-limit/);
});

test('holdings announced before a chunk list arrived still report the chunks that come later', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ff-holdings-'));
  const db = openNodeDb(dir);
  t.after(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const mirror = new LibraryMirror(db);
  const store = new ChunkStore(db, dir, { fsync: false });
  const chunks = [Buffer.from('first chunk'), Buffer.from('second chunk'), Buffer.from('third chunk')];
  const hashes = chunks.map((c) => sha256(c));
  const contentId = sha256(Buffer.concat(hashes));
  const content = contentId.toString('hex');
  mirror.apply([{ id: '1', version: '1', removed: false, path: 'a.wav', contentId, size: '33', status: 'OK', error: '', metadata: null, format: 'wav', root: 'music' }], 1);
  const sent: Holdings[] = [];
  const announcer = new HoldingsAnnouncer(mirror, store, (h) => (sent.push(h), true), () => '127.0.0.1:7422', createLogger('test', 'silent'), 5);
  t.after(() => announcer.stop());
  const settle = () => new Promise((r) => setTimeout(r, 30));

  // The welcome's snapshot comes while the first sync has the entry but not yet its chunk list.
  announcer.snapshot();
  await settle();
  assert.equal(sent.length, 1);
  assert.deepEqual(sent[0].contents, [], 'nothing held yet');

  mirror.putManifest(contentId, 33, chunks.map((c, i) => ({ hash: hashes[i], size: c.length })));
  await store.putAsync(hashes[1], chunks[1]);
  announcer.changed([{ content, index: 1 }]);
  await settle();
  const bitmap = sent.at(-1)!.contents.find((c) => c.contentId === content)?.bitmap;
  assert.ok(bitmap, `the chunk that arrived is announced: ${JSON.stringify(sent.at(-1))}`);
  assert.deepEqual([0, 1, 2].filter((i) => hasBit(Buffer.from(bitmap, 'base64'), i)), [1]);

  for (const i of [0, 2]) {
    await store.putAsync(hashes[i], chunks[i]);
    announcer.changed([{ content, index: i }]);
  }
  await settle();
  assert.deepEqual(sent.at(-1)!.contents, [{ contentId: content, complete: true }]);
});
