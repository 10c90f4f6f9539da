import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { DEFAULT_CHUNKING, FastCdc, GEAR, validateParams, type ChunkingParams } from '../src/chunking/fastcdc.js';
import { contentIdOf, manifestOf, sha256, StreamingChunker, type Manifest } from '../src/chunking/manifest.js';
import { pseudoRandomBytes } from './helpers/bytes.js';

const SMALL: ChunkingParams = { minSize: 256, avgSize: 1024, maxSize: 4096 };

const MB4 = pseudoRandomBytes(4 * 1024 * 1024, 'fastcdc-4mb');

function assertBounds(lengths: number[], p: ChunkingParams, total: number): void {
  assert.ok(lengths.length > 0);
  assert.equal(
    lengths.reduce((a, b) => a + b, 0),
    total,
    'chunk lengths must add up to the input length',
  );
  lengths.forEach((n, i) => {
    assert.ok(n > 0, `chunk ${i} is empty`);
    assert.ok(n <= p.maxSize, `chunk ${i} is ${n} bytes, above max ${p.maxSize}`);
    if (i < lengths.length - 1) assert.ok(n >= p.minSize, `chunk ${i} is ${n} bytes, below min ${p.minSize}`);
  });
}

/** Every structural property a manifest must have, checked against the bytes. */
function assertManifestOf(m: Manifest, data: Buffer): void {
  assert.equal(m.size, data.length);
  let offset = 0;
  for (const c of m.chunks) {
    assert.equal(c.offset, offset, 'chunks must be contiguous');
    assert.ok(c.hash.equals(sha256(data.subarray(c.offset, c.offset + c.size))), `chunk at ${c.offset} has the wrong hash`);
    offset += c.size;
  }
  assert.equal(offset, data.length);
  assert.ok(m.contentId.equals(contentIdOf(m.chunks.map((c) => c.hash))));
}

test('every chunk but the last lies within min..max and the lengths sum to the input (default params)', () => {
  const lengths = new FastCdc().lengths(MB4);
  assertBounds(lengths, DEFAULT_CHUNKING, MB4.length);
  // 4 MiB at ~64 KiB average: dozens of chunks, not a handful and not thousands.
  assert.ok(lengths.length > 30 && lengths.length < 200, `${lengths.length} chunks`);
});

test('every chunk but the last lies within min..max (small params, many chunks, odd length)', () => {
  const data = MB4.subarray(0, 1_000_003);
  const lengths = new FastCdc(SMALL).lengths(data);
  assertBounds(lengths, SMALL, data.length);
  assert.ok(lengths.length > 500);
});

test('input with no cut points is cut at exactly maxSize', () => {
  // A run of one byte value drives the gear hash to a constant that never matches the mask.
  for (const byte of [0x00, 0x41, 0xff]) {
    const lengths = new FastCdc().lengths(Buffer.alloc(600_000, byte));
    assert.deepEqual(lengths, [262144, 262144, 600_000 - 2 * 262144], `byte 0x${byte.toString(16)}`);
  }
});

test('inputs no larger than minSize are a single chunk; empty input has none', () => {
  assert.deepEqual(new FastCdc().lengths(new Uint8Array(0)), []);
  assert.deepEqual(new FastCdc().lengths(MB4.subarray(0, 1)), [1]);
  assert.deepEqual(new FastCdc().lengths(MB4.subarray(0, DEFAULT_CHUNKING.minSize)), [DEFAULT_CHUNKING.minSize]);
  const empty = manifestOf(new Uint8Array(0));
  assert.equal(empty.size, 0);
  assert.deepEqual(empty.chunks, []);
  assert.ok(empty.contentId.equals(createHash('sha256').digest()));
});

test('cut() asks for more data instead of cutting early when the input is not final', () => {
  const cdc = new FastCdc();
  const full = cdc.cut(MB4, 0, MB4.length, true);
  assert.ok(full > DEFAULT_CHUNKING.minSize);
  // Up to but excluding the cut point: no decision possible yet.
  assert.equal(cdc.cut(MB4, 0, full - 1, false), 0);
  assert.equal(cdc.cut(MB4, 0, DEFAULT_CHUNKING.minSize, false), 0);
  // With the cut point in view, the same answer as with everything.
  assert.equal(cdc.cut(MB4, 0, full, false), full);
  assert.equal(cdc.cut(MB4, 0, full + 10, false), full);
  // A cut relative to a non-zero start matches lengths().
  const lengths = cdc.lengths(MB4);
  assert.equal(cdc.cut(MB4, lengths[0], MB4.length, false), lengths[1]);
});

test('chunking is deterministic, and the manifest hashes are those of the bytes', () => {
  const a = manifestOf(MB4);
  const b = manifestOf(Buffer.from(MB4));
  assert.deepEqual(
    b.chunks.map((c) => [c.offset, c.size, c.hash.toString('hex')]),
    a.chunks.map((c) => [c.offset, c.size, c.hash.toString('hex')]),
  );
  assert.ok(a.contentId.equals(b.contentId));
  assertManifestOf(a, MB4);
  // One byte flipped: a different content id.
  const flipped = Buffer.from(MB4);
  flipped[2_000_000] ^= 1;
  assert.ok(!manifestOf(flipped).contentId.equals(a.contentId));
});

test('chunk boundaries re-synchronise after an insertion near the start', () => {
  const original = manifestOf(MB4);
  const originalHashes = new Set(original.chunks.map((c) => c.hash.toString('hex')));
  for (const n of [1, 100, 5000, 40_000]) {
    const edited = Buffer.concat([MB4.subarray(0, 1000), pseudoRandomBytes(n, `insert-${n}`), MB4.subarray(1000)]);
    const m = manifestOf(edited);
    const fresh = m.chunks.filter((c) => !originalHashes.has(c.hash.toString('hex')));
    assert.ok(fresh.length >= 1, `inserting ${n} bytes must change at least the first chunk`);
    // Up to ~2 chunks around the edit change, plus whatever new chunks the inserted bytes themselves make.
    const allowed = 2 + Math.floor(n / DEFAULT_CHUNKING.minSize);
    assert.ok(fresh.length <= allowed, `inserting ${n} bytes at offset 1000 changed ${fresh.length} chunks (allowed ${allowed})`);
    // The changed chunks are a prefix: everything after them is shared with the original.
    assert.deepEqual(fresh, m.chunks.slice(0, fresh.length), `changed chunks at ${fresh.map((c) => c.offset)}`);
    const shared = m.chunks.length - fresh.length;
    assert.ok(shared >= original.chunks.length - 2, `only ${shared} of ${original.chunks.length} chunks shared after inserting ${n} bytes`);
    // The shared tail is the original's tail, byte for byte.
    assert.deepEqual(
      m.chunks.slice(fresh.length).map((c) => c.hash.toString('hex')),
      original.chunks.slice(original.chunks.length - shared).map((c) => c.hash.toString('hex')),
    );
    assert.ok(!m.contentId.equals(original.contentId));
  }
});

test('StreamingChunker gives the same manifest as manifestOf whatever the block size', () => {
  const expected = manifestOf(MB4);
  for (const block of [1024, 100 * 1024, 3 * 1024 * 1024, 65_537]) {
    const chunker = new StreamingChunker();
    for (let i = 0; i < MB4.length; i += block) chunker.push(MB4.subarray(i, i + block));
    const got = chunker.finish();
    assert.equal(got.size, expected.size, `block ${block}`);
    assert.deepEqual(
      got.chunks.map((c) => [c.offset, c.size, c.hash.toString('hex')]),
      expected.chunks.map((c) => [c.offset, c.size, c.hash.toString('hex')]),
      `block ${block}`,
    );
    assert.ok(got.contentId.equals(expected.contentId), `block ${block}`);
  }
  // Small params, where the 1 KiB blocks are smaller than a max chunk.
  const data = MB4.subarray(0, 300_001);
  const small = manifestOf(data, SMALL);
  const chunker = new StreamingChunker(SMALL);
  for (let i = 0; i < data.length; i += 1024) chunker.push(data.subarray(i, i + 1024));
  assert.ok(chunker.finish().contentId.equals(small.contentId));
  // Nothing pushed at all.
  const none = new StreamingChunker().finish();
  assert.equal(none.size, 0);
  assert.deepEqual(none.chunks, []);
});

test('StreamingChunker does not depend on the caller keeping its blocks intact', () => {
  const expected = manifestOf(MB4.subarray(0, 1024 * 1024));
  const chunker = new StreamingChunker();
  const block = Buffer.alloc(8192);
  for (let i = 0; i < 1024 * 1024; i += block.length) {
    MB4.copy(block, 0, i, i + block.length);
    chunker.push(block); // the same buffer, overwritten each time (as a read loop would)
  }
  assert.ok(chunker.finish().contentId.equals(expected.contentId));
});

test('validateParams rejects bad parameters and accepts good ones', () => {
  const bad: ChunkingParams[] = [
    { minSize: 16384, avgSize: 65535, maxSize: 262144 }, // avg not a power of two
    { minSize: 16384, avgSize: 0, maxSize: 262144 },
    { minSize: 16384, avgSize: -65536, maxSize: 262144 },
    { minSize: 16384, avgSize: 65536.5, maxSize: 262144 },
    { minSize: 16384, avgSize: Number.NaN, maxSize: 262144 },
    { minSize: 32, avgSize: 1024, maxSize: 4096 }, // min below 64
    { minSize: 65536, avgSize: 65536, maxSize: 262144 }, // min == avg
    { minSize: 70000, avgSize: 65536, maxSize: 262144 }, // min > avg
    { minSize: 16384, avgSize: 65536, maxSize: 65536 }, // max == avg
    { minSize: 16384, avgSize: 65536, maxSize: 32768 }, // max < avg
    { minSize: 16384, avgSize: 65536, maxSize: 32 * 1024 * 1024 }, // max above 16 MiB
    { minSize: Number.NaN, avgSize: 65536, maxSize: 262144 },
  ];
  for (const p of bad) {
    assert.throws(() => validateParams(p), RangeError, JSON.stringify(p));
    assert.throws(() => new FastCdc(p), RangeError, JSON.stringify(p));
    assert.throws(() => manifestOf(MB4.subarray(0, 10), p), RangeError, JSON.stringify(p));
    assert.throws(() => new StreamingChunker(p), RangeError, JSON.stringify(p));
  }
  for (const p of [DEFAULT_CHUNKING, SMALL, { minSize: 64, avgSize: 128, maxSize: 129 }, { minSize: 1 << 20, avgSize: 1 << 22, maxSize: 16 * 1024 * 1024 }]) {
    assert.doesNotThrow(() => validateParams(p), JSON.stringify(p));
  }
});

test('the FastCdc instance keeps a private copy of its parameters', () => {
  const p = { ...SMALL };
  const cdc = new FastCdc(p);
  p.maxSize = 1 << 20;
  assert.equal(cdc.params.maxSize, SMALL.maxSize);
  assert.ok(Object.isFrozen(cdc.params));
  assert.ok(Object.isFrozen(DEFAULT_CHUNKING));
});

test('average chunk size on random data is close to avgSize', () => {
  const big = pseudoRandomBytes(16 * 1024 * 1024, 'fastcdc-avg');
  for (const [p, data] of [
    [DEFAULT_CHUNKING, big],
    [SMALL, big.subarray(0, 4 * 1024 * 1024)],
  ] as const) {
    const lengths = new FastCdc(p).lengths(data);
    const mean = data.length / lengths.length;
    assert.ok(mean > 0.75 * p.avgSize && mean < 1.5 * p.avgSize, `mean ${mean.toFixed(0)} for avgSize ${p.avgSize}`);
    // Normalized chunking: few chunks end at the hard maximum on random data.
    const atMax = lengths.filter((n) => n === p.maxSize).length;
    assert.ok(atMax / lengths.length < 0.05, `${atMax} of ${lengths.length} chunks hit maxSize`);
  }
});

test('GEAR table is fixed: derived from SHA-256 and pinned', () => {
  assert.equal(GEAR.length, 256);
  assert.deepEqual(Array.from(GEAR.subarray(0, 4)), [1174443392, 1483213163, 733648883, -252810809]);
  for (let i = 0; i < 256; i++) {
    assert.equal(GEAR[i], createHash('sha256').update(`firefly-gear-${i}`).digest().readInt32LE(0), `GEAR[${i}]`);
  }
  assert.equal(new Set(GEAR).size, 256, 'gear values must be distinct');
});

test('chunking of a fixed pseudo-random buffer is pinned (content addressing must never change)', () => {
  const data = pseudoRandomBytes(1 << 20, 'pin');
  // The generator itself is pinned, so a failure below is the chunker's.
  assert.equal(data.subarray(0, 16).toString('hex'), 'e5fd9adaf16c8445cc16aacc92bdf282');
  assert.equal(sha256(data).toString('hex'), '094ba5565b0d22ceb5cb170cf03093d4bf7f8682fc0e738c52090741d69bf2ca');
  const m = manifestOf(data);
  assert.deepEqual(
    m.chunks.map((c) => c.size),
    [40278, 68950, 69939, 119334, 94980, 68939, 105124, 94820, 23495, 85464, 59428, 75161, 68705, 73959],
  );
  assert.equal(m.contentId.toString('hex'), '69329b4f11d27beed127ab4af9ad98b7ec2fb2e7d8d92ac283a47b5172ded110');
});
