import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Catalogue, type IndexedFile, type TrackMetadata } from '../hub/library/catalogue.js';
import { manifestOf } from '../src/chunking/manifest.js';
import { pseudoRandomBytes } from './helpers/bytes.js';

const SMALL = { minSize: 256, avgSize: 1024, maxSize: 4096 };

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'ff-catalogue-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function open(t: { after: (fn: () => void) => void }, dir = tempDir(t)): { cat: Catalogue; dir: string; file: string } {
  const file = join(dir, 'catalogue.sqlite');
  const cat = new Catalogue(file);
  t.after(() => {
    try {
      cat.close();
    } catch {
      /* already closed */
    }
  });
  return { cat, dir, file };
}

/** An indexed "audio" file made of pseudo-random bytes, chunked for real. */
function track(seed: string, metadata: TrackMetadata = { title: seed }, size = 20_000): IndexedFile & { data: Buffer } {
  const data = pseudoRandomBytes(size, seed);
  const m = manifestOf(data, SMALL);
  return { data, size, mtimeMs: 1000, status: 'ok', format: 'mp3', metadata, contentId: m.contentId, chunks: m.chunks };
}

test('version starts at 0 and goes up by one with each change', (t) => {
  const { cat } = open(t);
  assert.equal(cat.version(), 0);
  const root = cat.rootId('/music');
  const versions: number[] = [];
  versions.push(cat.upsert(root, 'a.mp3', track('a')).version);
  versions.push(cat.upsert(root, 'b.mp3', track('b')).version);
  versions.push(cat.upsert(root, 'a.mp3', track('a', { title: 'A (retagged)' })).version);
  versions.push(cat.remove(root, 'b.mp3')!);
  assert.deepEqual(versions, [1, 2, 3, 4]);
  assert.equal(cat.version(), 4);
  assert.equal(cat.remove(root, 'b.mp3'), undefined, 'removing a file that is not there is no change');
  assert.equal(cat.remove(root, 'never.mp3'), undefined);
  assert.equal(cat.version(), 4);
});

test('rootId is stable per path', (t) => {
  const { cat } = open(t);
  const a = cat.rootId('/music');
  const b = cat.rootId('/other');
  assert.notEqual(a, b);
  assert.equal(cat.rootId('/music'), a);
  assert.deepEqual(cat.roots(), [
    { id: a, path: '/music' },
    { id: b, path: '/other' },
  ]);
});

test('upsert reports added, changed and unchanged; unchanged does not bump the version', (t) => {
  const { cat } = open(t);
  const root = cat.rootId('/music');
  const a = track('a');
  const added = cat.upsert(root, 'x/a.mp3', a);
  assert.equal(added.kind, 'added');
  assert.equal(added.version, 1);

  const e = cat.liveEntry(root, 'x/a.mp3')!;
  assert.equal(e.id, added.entryId);
  assert.equal(e.version, 1);
  assert.equal(e.root, '/music');
  assert.equal(e.status, 'ok');
  assert.equal(e.format, 'mp3');
  assert.equal(e.removed, false);
  assert.ok(e.contentId!.equals(a.contentId!));
  assert.deepEqual(e.metadata, { title: 'a' });
  assert.equal(cat.chunksOf(e.id).length, a.chunks!.length);

  // Same bytes and tags, new mtime (touched, or copied over itself): no new version.
  const same = cat.upsert(root, 'x/a.mp3', { ...a, mtimeMs: 5000 });
  assert.deepEqual(same, { entryId: added.entryId, kind: 'unchanged', version: 1 });
  assert.equal(cat.version(), 1);
  assert.equal(cat.liveEntry(root, 'x/a.mp3')!.mtimeMs, 5000, 'size and time are still refreshed');
  assert.deepEqual(cat.changesSince(1, 100), []);

  // Metadata with keys in the same order but a different value is a change.
  const retag = cat.upsert(root, 'x/a.mp3', { ...a, metadata: { title: 'a', artist: 'Someone' } });
  assert.equal(retag.kind, 'changed');
  assert.equal(retag.entryId, added.entryId);
  assert.equal(retag.version, 2);

  // New content (same tags): a change, with the new chunk list.
  const b = track('b', { title: 'a', artist: 'Someone' }, 30_000);
  const content = cat.upsert(root, 'x/a.mp3', b);
  assert.equal(content.kind, 'changed');
  assert.equal(content.version, 3);
  const now = cat.liveEntry(root, 'x/a.mp3')!;
  assert.ok(now.contentId!.equals(b.contentId!));
  assert.equal(now.size, 30_000);
  assert.deepEqual(
    cat.chunksOf(now.id).map((c) => c.hash.toString('hex')),
    b.chunks!.map((c) => c.hash.toString('hex')),
  );

  // Status change: ok -> failed is a change too, and clears the chunks.
  const failed = cat.upsert(root, 'x/a.mp3', { size: 10, mtimeMs: 1, status: 'failed', error: 'truncated' });
  assert.equal(failed.kind, 'changed');
  assert.equal(cat.liveEntry(root, 'x/a.mp3')!.error, 'truncated');
  assert.equal(cat.liveEntry(root, 'x/a.mp3')!.contentId, null);
  assert.deepEqual(cat.chunksOf(now.id), []);
  // ...and the same failure again is not.
  assert.equal(cat.upsert(root, 'x/a.mp3', { size: 10, mtimeMs: 2, status: 'failed', error: 'truncated' }).kind, 'unchanged');
  // A different reason is.
  assert.equal(cat.upsert(root, 'x/a.mp3', { size: 10, mtimeMs: 2, status: 'failed', error: 'other' }).kind, 'changed');
  assert.equal(cat.version(), 5);
  assert.deepEqual(cat.counts(), { live: 1, ok: 0, failed: 1, unsupported: 0, removed: 0 });
});

test('the same path under two roots is two entries', (t) => {
  const { cat } = open(t);
  const r1 = cat.rootId('/music');
  const r2 = cat.rootId('/more');
  const a = cat.upsert(r1, 'a.mp3', track('a'));
  const b = cat.upsert(r2, 'a.mp3', track('b'));
  assert.equal(b.kind, 'added');
  assert.notEqual(a.entryId, b.entryId);
  assert.equal(cat.liveEntries(r1).length, 1);
  assert.equal(cat.liveEntries(r2).length, 1);
  assert.equal(cat.liveEntries(r2)[0].root, '/more');
});

test('a file removed and then found at a new path with the same content keeps its id (rename)', (t) => {
  const { cat } = open(t);
  const root = cat.rootId('/music');
  const a = track('a');
  const added = cat.upsert(root, 'old/a.mp3', a);
  cat.upsert(root, 'other.mp3', track('other'));
  const removedAt = cat.remove(root, 'old/a.mp3')!;
  assert.equal(cat.entry(added.entryId)!.removed, true);
  assert.deepEqual(cat.chunksOf(added.entryId), [], 'a tombstone keeps no chunks');

  const renamed = cat.upsert(root, 'new/a.mp3', { ...a, mtimeMs: 2000 });
  assert.equal(renamed.kind, 'renamed');
  assert.equal(renamed.entryId, added.entryId);
  assert.ok(renamed.version > removedAt);
  const e = cat.entry(added.entryId)!;
  assert.equal(e.path, 'new/a.mp3');
  assert.equal(e.removed, false);
  assert.equal(e.version, renamed.version);
  assert.equal(cat.liveEntry(root, 'old/a.mp3'), undefined);
  assert.equal(cat.chunksOf(e.id).length, a.chunks!.length, 'chunks written again for the new path');
  assert.deepEqual(
    cat.locate(a.chunks![0].hash).map((l) => l.file),
    [join('/music', 'new/a.mp3')],
  );
  assert.deepEqual(cat.counts(), { live: 2, ok: 2, failed: 0, unsupported: 0, removed: 0 });
  // The delta a node sees: one row for the entry, in its renamed state.
  const delta = cat.changesSince(removedAt - 1, 100);
  assert.deepEqual(
    delta.map((d) => [d.id, d.path, d.removed]),
    [[added.entryId, 'new/a.mp3', false]],
  );
});

test('a copy of a file that is still live is a new entry, not a rename', (t) => {
  const { cat } = open(t);
  const root = cat.rootId('/music');
  const a = track('a');
  const first = cat.upsert(root, 'a.mp3', a);
  const copy = cat.upsert(root, 'copy of a.mp3', a);
  assert.equal(copy.kind, 'added');
  assert.notEqual(copy.entryId, first.entryId);
  // Both hold the chunks.
  assert.equal(cat.locate(a.chunks![1].hash).length, 2);
  // One copy goes away, and the same content turns up elsewhere: the live copy still holds
  // it, so the newcomer is a new file.
  cat.remove(root, 'a.mp3');
  assert.equal(cat.upsert(root, 'third.mp3', a).kind, 'added');
});

test('content that was never seen before is added even if some file was removed', (t) => {
  const { cat } = open(t);
  const root = cat.rootId('/music');
  const a = cat.upsert(root, 'a.mp3', track('a'));
  cat.remove(root, 'a.mp3');
  const b = cat.upsert(root, 'b.mp3', track('b'));
  assert.equal(b.kind, 'added');
  assert.notEqual(b.entryId, a.entryId);
});

test('removeUnder removes every live file below a folder and nothing else', (t) => {
  const { cat } = open(t);
  const root = cat.rootId('/music');
  const other = cat.rootId('/other');
  for (const p of ['album/1.mp3', 'album/2.mp3', 'album/cd2/3.mp3', 'album2/4.mp3', 'albumx.mp3', 'single.mp3']) cat.upsert(root, p, track(p));
  cat.upsert(other, 'album/1.mp3', track('other-root'));
  const before = cat.version();
  const versions = cat.removeUnder(root, 'album');
  assert.equal(versions.length, 3);
  assert.deepEqual(versions, [before + 1, before + 2, before + 3]);
  assert.deepEqual(
    cat.liveEntries(root).map((e) => e.path).sort(),
    ['album2/4.mp3', 'albumx.mp3', 'single.mp3'],
  );
  assert.equal(cat.liveEntries(other).length, 1, 'another root is untouched');
  // A trailing slash means the same folder; nothing left to remove.
  assert.deepEqual(cat.removeUnder(root, 'album/'), []);
  // LIKE wildcards in a folder name are literal.
  cat.upsert(root, 'a_b/x.mp3', track('underscore'));
  cat.upsert(root, 'axb/y.mp3', track('axb'));
  cat.upsert(root, '100%/z.mp3', track('percent'));
  cat.upsert(root, '100x/w.mp3', track('100x'));
  assert.equal(cat.removeUnder(root, 'a_b').length, 1);
  assert.equal(cat.removeUnder(root, '100%').length, 1);
  assert.ok(cat.liveEntry(root, 'axb/y.mp3'));
  assert.ok(cat.liveEntry(root, '100x/w.mp3'));
  // The whole root.
  assert.equal(cat.removeUnder(root, '').length, 5);
  assert.deepEqual(cat.liveEntries(root), []);
  assert.equal(cat.liveEntries(other).length, 1);
});

test('removeUnder works for folder names outside the Basic Multilingual Plane', (t) => {
  // JavaScript counts UTF-16 code units, SQLite counts characters: an emoji is 2 vs 1.
  const { cat } = open(t);
  const root = cat.rootId('/music');
  cat.upsert(root, '🎵 Mix/1.mp3', track('m1'));
  cat.upsert(root, '🎵 Mix/𝄞/2.mp3', track('m2'));
  cat.upsert(root, '🎵 Mixes/3.mp3', track('m3'));
  cat.upsert(root, 'Café/4.mp3', track('m4'));
  assert.equal(cat.removeUnder(root, '🎵 Mix').length, 2);
  assert.equal(cat.removeUnder(root, 'Café').length, 1);
  assert.deepEqual(
    cat.liveEntries(root).map((e) => e.path),
    ['🎵 Mixes/3.mp3'],
  );
});

test('changesSince returns each changed entry once, in version order, honouring the limit', (t) => {
  const { cat } = open(t);
  const root = cat.rootId('/music');
  const ids: Record<string, number> = {};
  for (const p of ['a', 'b', 'c', 'd']) ids[p] = cat.upsert(root, `${p}.mp3`, track(p)).entryId; // v1..4
  const mid = cat.version(); // 4
  cat.upsert(root, 'b.mp3', track('b', { title: 'b2' })); // v5
  cat.upsert(root, 'a.mp3', track('a', { title: 'a2' })); // v6
  cat.upsert(root, 'b.mp3', track('b', { title: 'b3' })); // v7
  cat.remove(root, 'c.mp3'); // v8
  cat.upsert(root, 'e.mp3', track('e')); // v9
  cat.upsert(root, 'd.mp3', { ...track('d'), mtimeMs: 99 }); // unchanged

  const all = cat.changesSince(0, 1000);
  assert.deepEqual(
    all.map((e) => [e.path, e.version]),
    [
      ['d.mp3', 4],
      ['a.mp3', 6],
      ['b.mp3', 7],
      ['c.mp3', 8],
      ['e.mp3', 9],
    ],
  );
  const delta = cat.changesSince(mid, 1000);
  assert.deepEqual(
    delta.map((e) => [e.path, e.version, e.removed]),
    [
      ['a.mp3', 6, false],
      ['b.mp3', 7, false],
      ['c.mp3', 8, true],
      ['e.mp3', 9, false],
    ],
  );
  // Entries in their current state.
  assert.deepEqual(delta[1].metadata, { title: 'b3' });
  assert.equal(delta[2].id, ids.c);
  // Each entry once.
  assert.equal(new Set(all.map((e) => e.id)).size, all.length);
  // Paging with the limit walks the same list without gaps or repeats.
  const paged: string[] = [];
  let since = 0;
  for (;;) {
    const page = cat.changesSince(since, 2);
    assert.ok(page.length <= 2);
    if (page.length === 0) break;
    paged.push(...page.map((e) => e.path));
    since = page[page.length - 1].version;
  }
  assert.deepEqual(paged, all.map((e) => e.path));
  assert.deepEqual(cat.changesSince(cat.version(), 10), []);
  assert.deepEqual(
    cat.changesSince(mid, 1).map((e) => e.path),
    ['a.mp3'],
  );
});

test('manifest and locate find the chunks of live, playable files only', (t) => {
  const { cat } = open(t);
  const root = cat.rootId('/music');
  const a = track('a', { title: 'a' }, 50_000);
  const { entryId } = cat.upsert(root, 'dir/a.flac', a);
  const m = cat.manifest(a.contentId!)!;
  assert.equal(m.size, 50_000);
  assert.deepEqual(
    m.chunks.map((c) => [c.offset, c.size, c.hash.toString('hex')]),
    a.chunks!.map((c) => [c.offset, c.size, c.hash.toString('hex')]),
  );
  // Each chunk is where the manifest says, in the right file.
  for (const c of a.chunks!) {
    const locs = cat.locate(c.hash);
    assert.deepEqual(locs, [{ file: join('/music', 'dir/a.flac'), offset: c.offset, size: c.size, entryId }]);
    assert.ok(a.data.subarray(c.offset, c.offset + c.size).length === c.size);
  }
  assert.equal(cat.manifest(Buffer.alloc(32)), undefined);
  assert.deepEqual(cat.locate(Buffer.alloc(32)), []);

  // A failed file with a content id has no manifest.
  const bad = track('bad');
  cat.upsert(root, 'bad.mp3', { ...bad, status: 'failed', error: 'truncated' });
  assert.equal(cat.manifest(bad.contentId!), undefined);

  // Removed: gone from both.
  cat.remove(root, 'dir/a.flac');
  assert.equal(cat.manifest(a.contentId!), undefined);
  assert.deepEqual(cat.locate(a.chunks![0].hash), []);
});

test('covers are stored once by hash', (t) => {
  const { cat } = open(t);
  const root = cat.rootId('/music');
  const cover = { hash: Buffer.alloc(32, 7), mime: 'image/png', data: Buffer.from('png bytes') };
  cat.upsert(root, 'a.mp3', { ...track('a'), cover });
  cat.upsert(root, 'b.mp3', { ...track('b'), cover });
  assert.deepEqual(cat.cover(cover.hash), { mime: 'image/png', data: Buffer.from('png bytes') });
  assert.equal((cat.db.prepare('SELECT COUNT(*) AS n FROM covers').get() as { n: number }).n, 1);
  assert.equal(cat.cover(Buffer.alloc(32)), undefined);
});

test('reopening the file keeps everything and re-running migrations is harmless', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'catalogue.sqlite');
  let cat = new Catalogue(file);
  const root = cat.rootId('/music');
  const a = track('a');
  const { entryId } = cat.upsert(root, 'a.mp3', a);
  cat.upsert(root, 'b.mp3', track('b'));
  cat.remove(root, 'b.mp3');
  const version = cat.version();
  const entries = cat.changesSince(0, 100);
  cat.close();

  for (let i = 0; i < 2; i++) {
    cat = Catalogue.inDataDir(dir);
    try {
      assert.equal(cat.db.pragma('user_version', { simple: true }), 1);
      assert.equal(cat.version(), version + i);
      assert.deepEqual(cat.changesSince(0, 100).filter((e) => e.version <= version), entries);
      assert.equal(cat.rootId('/music'), root);
      assert.equal(cat.roots().length, 1);
      assert.ok(cat.manifest(a.contentId!));
      assert.equal(cat.liveEntry(root, 'a.mp3')!.id, entryId);
      assert.deepEqual(cat.counts(), { live: 1 + i, ok: 1 + i, failed: 0, unsupported: 0, removed: 1 });
      // The version keeps counting from where it was.
      assert.equal(cat.upsert(root, `c${i}.mp3`, track(`c${i}`)).version, version + i + 1);
    } finally {
      cat.close();
    }
  }
});

test('a catalogue from a newer Firefly is refused', (t) => {
  const { cat, file } = open(t);
  cat.db.pragma('user_version = 99');
  cat.close();
  assert.throws(() => new Catalogue(file), /schema version 99/);
});

test('the catalogue runs in WAL mode', (t) => {
  const { cat, dir } = open(t);
  assert.equal(cat.db.pragma('journal_mode', { simple: true }), 'wal');
  cat.upsert(cat.rootId('/music'), 'a.mp3', track('a'));
  assert.equal(cat.db.pragma('foreign_keys', { simple: true }), 1);
  // A second connection sees the committed data while the first is still open.
  const reader = new Catalogue(join(dir, 'catalogue.sqlite'));
  try {
    assert.equal(reader.version(), 1);
  } finally {
    reader.close();
  }
});
