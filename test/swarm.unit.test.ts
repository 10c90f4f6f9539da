/** The swarm's pure parts: the upload cap's arithmetic, the hub's transit log, chunk bitmaps, rate parsing. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TokenBucket } from '../src/transfer/token-bucket.js';
import { TransitLog } from '../hub/swarm/transit.js';
import { bitmapOf, countBits, hasBit, setBit } from '../src/transfer/chunk-bitmap.js';
import { parseValue } from '../src/config/load.js';

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
