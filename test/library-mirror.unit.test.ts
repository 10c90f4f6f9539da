import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LibraryMirror } from '../src/node/library-mirror.js';
import { openNodeDb } from '../src/node/node-db.js';
import { sha256 } from '../src/chunking/manifest.js';
import type { LibraryEntry__Output } from '../src/generated/firefly/v1/LibraryEntry.js';
import type { TrackMetadata__Output } from '../src/generated/firefly/v1/TrackMetadata.js';
import type { Db } from '../src/storage/sqlite.js';

type T = { after: (fn: () => void) => void };

function setup(t: T, dir?: string): { mirror: LibraryMirror; db: Db; dir: string } {
  if (!dir) {
    const made = mkdtempSync(join(tmpdir(), 'ff-mirror-'));
    t.after(() => rmSync(made, { recursive: true, force: true }));
    dir = made;
  }
  const db = openNodeDb(dir);
  t.after(() => {
    if (db.open) db.close();
  });
  return { mirror: new LibraryMirror(db), db, dir };
}

const cid = (s: string) => sha256(Buffer.from(`content-${s}`));
const hash = (s: string) => sha256(Buffer.from(`chunk-${s}`));

function meta(title: string, coverHash: Buffer = Buffer.alloc(0)): TrackMetadata__Output {
  return {
    title,
    artist: 'Artist',
    album: '',
    albumArtist: '',
    trackNo: 1,
    discNo: 0,
    year: 0,
    genre: '',
    durationSeconds: 5.0,
    sampleRate: 44100,
    channels: 2,
    codec: 'MPEG 1 Layer 3',
    container: 'MPEG',
    bitrate: 128000,
    coverHash,
    coverMime: coverHash.length ? 'image/png' : '',
    bitsPerSample: 0,
  };
}

/** An entry as grpc-js decodes it (longs as strings, defaults filled in). */
function wire(id: number, version: number, path: string, over: Partial<LibraryEntry__Output> = {}): LibraryEntry__Output {
  return {
    id: String(id),
    version: String(version),
    removed: false,
    path,
    contentId: cid(path),
    size: '12345',
    status: 'OK',
    error: '',
    metadata: meta(path),
    format: 'mp3',
    root: 'music',
    ...over,
  };
}

function removal(id: number, version: number): LibraryEntry__Output {
  return wire(id, version, '', { removed: true, contentId: Buffer.alloc(0), status: 'ENTRY_STATUS_UNSPECIFIED', metadata: null, format: '', size: '0' });
}

test('a fresh mirror is at version 0 and empty', (t) => {
  const { mirror } = setup(t);
  assert.equal(mirror.version(), 0);
  assert.deepEqual(mirror.entries(), []);
  assert.deepEqual(mirror.playableContent(), []);
});

test('apply() stores a page of entries and moves the version on', (t) => {
  const { mirror } = setup(t);
  const cover = sha256(Buffer.from('cover'));
  const r = mirror.apply(
    [
      wire(1, 1, 'a.mp3', { metadata: meta('A', cover) }),
      wire(2, 2, 'sub/b.flac', { format: 'flac', size: '9007199254740' }),
      wire(3, 3, 'broken.mp3', { status: 'FAILED', error: 'truncated', contentId: Buffer.alloc(0), metadata: null, format: '' }),
    ],
    3,
  );
  assert.deepEqual(r, { upserted: 3, removed: 0 });
  assert.equal(mirror.version(), 3);
  const entries = mirror.entries();
  assert.deepEqual(
    entries.map((e) => [e.id, e.version, e.root, e.path, e.size, e.status, e.error, e.format]),
    [
      [1, 1, 'music', 'a.mp3', 12345, 'OK', null, 'mp3'],
      [2, 2, 'music', 'sub/b.flac', 9007199254740, 'OK', null, 'flac'],
      [3, 3, 'music', 'broken.mp3', 12345, 'FAILED', 'truncated', null],
    ],
  );
  assert.ok(entries[0].contentId!.equals(cid('a.mp3')));
  assert.equal(entries[2].contentId, null, 'an empty content id is stored as none');
  // Metadata round-trips as JSON, the cover hash as hex.
  assert.equal(entries[0].metadata.title, 'A');
  assert.equal(entries[0].metadata.sampleRate, 44100);
  assert.equal(entries[0].metadata.coverHash, cover.toString('hex'));
  assert.deepEqual(entries[2].metadata, {});
  // Only OK entries with content are playable.
  assert.deepEqual(
    mirror.playableContent().map((c) => c.toString('hex')).sort(),
    [cid('a.mp3'), cid('sub/b.flac')].map((c) => c.toString('hex')).sort(),
  );
});

test('later pages update entries in place and apply removals', (t) => {
  const { mirror } = setup(t);
  mirror.apply([wire(1, 1, 'a.mp3'), wire(2, 2, 'b.mp3'), wire(3, 3, 'c.mp3')], 3);
  // Re-tag of 1 (new content), rename of 2, removal of 3, removal of something never seen.
  const r = mirror.apply(
    [wire(1, 4, 'a.mp3', { contentId: cid('a2'), metadata: meta('A2') }), wire(2, 5, 'renamed/b.mp3', { contentId: cid('b.mp3') }), removal(3, 6), removal(99, 7)],
    7,
  );
  assert.deepEqual(r, { upserted: 2, removed: 1 });
  assert.equal(mirror.version(), 7);
  const entries = mirror.entries();
  assert.deepEqual(
    entries.map((e) => [e.id, e.version, e.path, e.metadata.title]),
    [
      [1, 4, 'a.mp3', 'A2'],
      [2, 5, 'renamed/b.mp3', 'renamed/b.mp3'],
    ],
  );
  assert.ok(entries[0].contentId!.equals(cid('a2')));
  assert.deepEqual(
    mirror.playableContent().map((c) => c.toString('hex')).sort(),
    [cid('a2'), cid('b.mp3')].map((c) => c.toString('hex')).sort(),
  );
});

test('a page with no entries still moves the version on; duplicates in playableContent are folded', (t) => {
  const { mirror } = setup(t);
  mirror.apply([wire(1, 1, 'a.mp3'), wire(2, 2, 'copy.mp3', { contentId: cid('a.mp3') })], 2);
  assert.equal(mirror.playableContent().length, 1);
  assert.deepEqual(mirror.apply([], 9), { upserted: 0, removed: 0 });
  assert.equal(mirror.version(), 9);
  assert.equal(mirror.entries().length, 2);
});

test('fullResync replaces everything with the page', (t) => {
  const { mirror } = setup(t);
  mirror.apply([wire(1, 1, 'a.mp3'), wire(2, 2, 'b.mp3'), wire(3, 3, 'c.mp3')], 3);
  const r = mirror.apply([wire(2, 10, 'b.mp3'), wire(4, 11, 'd.mp3')], 11, true);
  assert.deepEqual(r, { upserted: 2, removed: 0 });
  assert.equal(mirror.version(), 11);
  assert.deepEqual(
    mirror.entries().map((e) => [e.id, e.version]),
    [
      [2, 10],
      [4, 11],
    ],
  );
});

test('a page is applied atomically: a bad entry leaves entries and version as they were', (t) => {
  const { mirror } = setup(t);
  mirror.apply([wire(1, 1, 'a.mp3')], 1);
  const bad = wire(3, 3, 'c.mp3', { path: null as unknown as string }); // violates NOT NULL
  assert.throws(() => mirror.apply([wire(2, 2, 'b.mp3'), bad], 3, true));
  assert.equal(mirror.version(), 1);
  assert.deepEqual(
    mirror.entries().map((e) => e.id),
    [1],
  );
});

test('manifests round-trip, including chunk sizes up to 16 MiB and an empty track', (t) => {
  const { mirror } = setup(t);
  const chunks = [
    { hash: hash('1'), size: 16384 },
    { hash: hash('2'), size: 70000 },
    { hash: hash('3'), size: 16 * 1024 * 1024 },
    { hash: hash('1'), size: 16384 }, // a chunk may repeat within a file
    { hash: hash('4'), size: 1 },
  ];
  const total = chunks.reduce((a, c) => a + c.size, 0);
  assert.equal(mirror.hasManifest(cid('a')), false);
  assert.equal(mirror.manifest(cid('a')), undefined);
  mirror.putManifest(cid('a'), total, chunks);
  assert.equal(mirror.hasManifest(cid('a')), true);
  const m = mirror.manifest(cid('a'))!;
  assert.equal(m.size, total);
  assert.deepEqual(
    m.chunks.map((c) => [c.hash.toString('hex'), c.size]),
    chunks.map((c) => [c.hash.toString('hex'), c.size]),
  );
  assert.ok(m.chunks.every((c) => Buffer.isBuffer(c.hash) && c.hash.length === 32));

  mirror.putManifest(cid('empty'), 0, []);
  assert.deepEqual(mirror.manifest(cid('empty')), { size: 0, chunks: [] });

  // Putting again replaces.
  mirror.putManifest(cid('a'), 5, [{ hash: hash('5'), size: 5 }]);
  assert.deepEqual(mirror.manifest(cid('a'))!.chunks.map((c) => c.size), [5]);
});

test('pruneManifests drops the chunk lists no entry points to', (t) => {
  const { mirror } = setup(t);
  mirror.apply([wire(1, 1, 'a.mp3'), wire(2, 2, 'b.mp3'), wire(3, 3, 'x.mp3', { status: 'FAILED', contentId: Buffer.alloc(0) })], 3);
  for (const c of ['a.mp3', 'b.mp3', 'old']) mirror.putManifest(cid(c), 10, [{ hash: hash(c), size: 10 }]);
  assert.equal(mirror.pruneManifests(), 1, 'the one for content nobody has');
  assert.equal(mirror.hasManifest(cid('old')), false);
  assert.equal(mirror.hasManifest(cid('a.mp3')), true);

  // a.mp3 re-tagged (new content), b.mp3 removed.
  mirror.apply([wire(1, 4, 'a.mp3', { contentId: cid('a-v2') }), removal(2, 5)], 5);
  assert.equal(mirror.pruneManifests(), 2);
  assert.equal(mirror.hasManifest(cid('a.mp3')), false);
  assert.equal(mirror.hasManifest(cid('b.mp3')), false);
  assert.equal(mirror.pruneManifests(), 0);
});

test('the mirror survives a reopen', (t) => {
  const first = setup(t);
  first.mirror.apply([wire(1, 1, 'a.mp3'), wire(2, 2, 'b.mp3')], 2);
  first.mirror.putManifest(cid('a.mp3'), 3, [{ hash: hash('x'), size: 3 }]);
  const entries = first.mirror.entries();
  first.db.close();
  const { mirror } = setup(t, first.dir);
  assert.equal(mirror.version(), 2);
  assert.deepEqual(mirror.entries(), entries);
  assert.deepEqual(mirror.manifest(cid('a.mp3')), { size: 3, chunks: [{ hash: hash('x'), size: 3 }] });
});
