/**
 * The pure parts of uploads and library browsing: how an uploaded file's name is cleaned,
 * how its content is recognised, and the catalogue's search and paging.
 */
import { strict as assert } from 'node:assert';
import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { Catalogue } from '../hub/library/catalogue.js';
import { ApiError } from '../hub/http/errors.js';
import { sanitizeUploadName, sniffAudio, storeUpload } from '../hub/http/uploads.js';
import { cleanup, tempDir } from './helpers/processes.js';

after(cleanup);

function refused(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => err instanceof ApiError && err.code === code);
}

describe('upload names', () => {
  it('keeps only the last path segment, without traversal or hidden names', () => {
    assert.equal(sanitizeUploadName('song.flac'), 'song.flac');
    assert.equal(sanitizeUploadName('../../etc/song.mp3'), 'song.mp3');
    assert.equal(sanitizeUploadName('..\\..\\windows\\song.mp3'), 'song.mp3');
    assert.equal(sanitizeUploadName('/abs/path/Song Name.FLAC'), 'Song Name.FLAC');
    assert.equal(sanitizeUploadName('...hidden.mp3'), 'hidden.mp3');
    assert.equal(sanitizeUploadName('a<b>c:d"e|f?g*h.ogg'), 'abcdefgh.ogg');
    assert.equal(sanitizeUploadName('tab\there\u0000.wav'), 'tabhere.wav');
    assert.equal(sanitizeUploadName('Café.m4a'.normalize('NFD')), 'Café.m4a'.normalize('NFC'));
  });

  it('refuses names with nothing left or no audio extension', () => {
    refused(() => sanitizeUploadName('..'), 'invalid');
    refused(() => sanitizeUploadName('../'), 'invalid');
    refused(() => sanitizeUploadName('   '), 'invalid');
    refused(() => sanitizeUploadName('run.sh'), 'unsupported-type');
    refused(() => sanitizeUploadName('flac'), 'unsupported-type');
    refused(() => sanitizeUploadName('song.mp3.exe'), 'unsupported-type');
  });

  it('cuts long names to 200 bytes, keeping the extension', () => {
    const name = sanitizeUploadName(`${'é'.repeat(300)}.flac`);
    assert.ok(Buffer.byteLength(name) <= 200);
    assert.ok(name.endsWith('.flac'));
  });
});

describe('audio by content', () => {
  it('recognises the formats Firefly plays by their first bytes', () => {
    assert.equal(sniffAudio(Buffer.from('fLaC\0\0\0\x22')), 'flac');
    assert.equal(sniffAudio(Buffer.from('OggS\0\x02')), 'ogg');
    assert.equal(sniffAudio(Buffer.concat([Buffer.from('RIFF'), Buffer.alloc(4), Buffer.from('WAVEfmt ')])), 'wav');
    assert.equal(sniffAudio(Buffer.concat([Buffer.from([0, 0, 0, 0x20]), Buffer.from('ftypM4A ')])), 'm4a');
    assert.equal(sniffAudio(Buffer.from('ID3\x03\0')), 'mp3');
    assert.equal(sniffAudio(Buffer.from([0xff, 0xfb, 0x90, 0x64])), 'mp3');
    assert.equal(sniffAudio(Buffer.from([0xff, 0xf1, 0x50, 0x80])), 'aac');
  });

  it('refuses what is not audio, whatever the name', () => {
    assert.equal(sniffAudio(Buffer.from('hello world')), undefined);
    assert.equal(sniffAudio(Buffer.from('RIFF\0\0\0\0AVI LIST')), undefined);
    assert.equal(sniffAudio(Buffer.from('\x89PNG\r\n\x1a\n')), undefined);
    assert.equal(sniffAudio(Buffer.from('%PDF-1.7')), undefined);
    assert.equal(sniffAudio(Buffer.alloc(0)), undefined);
  });
});

describe('storing an upload', () => {
  it('writes into the folder and never replaces a file', async () => {
    const root = await tempDir('firefly-up-');
    const data = Buffer.concat([Buffer.from('fLaC'), Buffer.alloc(1000, 1)]);
    const stored = await storeUpload(root, 'Uploads', '../x.flac', Readable.from([data]), 10_000);
    assert.equal(stored.libraryPath, 'Uploads/x.flac');
    assert.ok((await readFile(join(root, 'Uploads', 'x.flac'))).equals(data));
    await assert.rejects(storeUpload(root, 'Uploads', 'x.flac', Readable.from([Buffer.from('fLaC-other')]), 10_000), (e: ApiError) => e.code === 'conflict');
    assert.ok((await readFile(join(root, 'Uploads', 'x.flac'))).equals(data));
    await assert.rejects(storeUpload(root, 'Uploads', 'big.flac', Readable.from([data, data]), 1500), (e: ApiError) => e.code === 'too-large');
    await assert.rejects(storeUpload(root, 'Uploads', 'text.flac', Readable.from([Buffer.from('plain text')]), 1500), (e: ApiError) => e.code === 'unsupported-type');
    assert.deepEqual(await readdir(join(root, 'Uploads')), ['x.flac'], 'no temporary file left behind');
  });

  it('refuses an upload folder that leads outside the library through a symlink', async () => {
    const root = await tempDir('firefly-up-');
    const elsewhere = await tempDir('firefly-elsewhere-');
    await symlink(elsewhere, join(root, 'Uploads'));
    await assert.rejects(storeUpload(root, 'Uploads', 'x.flac', Readable.from([Buffer.from('fLaC....')]), 10_000), (e: ApiError) => e.code === 'internal' && /outside the library/.test(e.message));
    assert.deepEqual(await readdir(elsewhere), []);
  });
});

describe('catalogue browsing', () => {
  it('searches title, artist, album and path; filters; pages in artist/album/track order', async () => {
    const dir = await tempDir('firefly-cat-');
    await mkdir(dir, { recursive: true });
    const cat = Catalogue.inDataDir(dir);
    try {
      const root = cat.rootId('/music');
      const add = (path: string, status: 'ok' | 'failed', metadata: Record<string, unknown>) =>
        cat.upsert(root, path, { size: 1, mtimeMs: 1, status, error: status === 'failed' ? 'truncated' : undefined, format: 'flac', metadata, contentId: Buffer.alloc(32, path.length), chunks: [] });
      add('b/2.flac', 'ok', { title: 'Second', artist: 'Bob', album: 'B-Sides', trackNo: 2 });
      add('b/1.flac', 'ok', { title: 'First', artist: 'Bob', album: 'B-Sides', trackNo: 1 });
      add('a/x.flac', 'ok', { title: '100% Pure', artist: 'Ann', album: 'Alpha', coverHash: 'ab'.repeat(32) });
      add('bad.flac', 'failed', {});
      const all = cat.browse({ offset: 0, limit: 10 });
      assert.equal(all.total, 4);
      assert.deepEqual(all.entries.map((e) => e.path), ['bad.flac', 'a/x.flac', 'b/1.flac', 'b/2.flac']);
      assert.deepEqual(cat.browse({ q: 'bob', offset: 0, limit: 10 }).entries.map((e) => e.path), ['b/1.flac', 'b/2.flac']);
      assert.deepEqual(cat.browse({ q: 'sides', offset: 0, limit: 10 }).total, 2);
      assert.deepEqual(cat.browse({ q: 'a/x', offset: 0, limit: 10 }).entries.map((e) => e.path), ['a/x.flac']);
      // % and _ are literal characters, not wildcards.
      assert.deepEqual(cat.browse({ q: '100%', offset: 0, limit: 10 }).entries.map((e) => e.path), ['a/x.flac']);
      assert.equal(cat.browse({ q: '%', offset: 0, limit: 10 }).total, 1);
      assert.equal(cat.browse({ q: '_', offset: 0, limit: 10 }).total, 0);
      assert.deepEqual(cat.browse({ artist: 'Bob', album: 'B-Sides', offset: 1, limit: 1 }).entries.map((e) => e.path), ['b/2.flac']);
      assert.deepEqual(cat.browse({ status: 'failed', offset: 0, limit: 10 }).entries.map((e) => e.error), ['truncated']);
      cat.remove(root, 'b/2.flac');
      assert.equal(cat.browse({ offset: 0, limit: 10 }).total, 3, 'removed files are not listed');
      const albums = cat.albums();
      assert.deepEqual(albums.map((a) => [a.artist, a.album, a.tracks]), [['Ann', 'Alpha', 1], ['Bob', 'B-Sides', 1]]);
      assert.equal(albums[0].coverEntryId, cat.browse({ q: 'Pure', offset: 0, limit: 1 }).entries[0].id);
    } finally {
      cat.close();
    }
  });
});

describe('download progress in heartbeats', () => {
  it('is optional, and checked when present', async () => {
    const { heartbeatSchema } = await import('../src/protocol/schemas.js');
    const beat = {
      seq: 1, at: 1, nodeId: 1, libraryVersion: 0, volume: 100,
      store: { chunks: 0, bytes: 0, budgetBytes: 1 },
      playback: { state: 'idle', trackId: null, positionMs: null },
      clock: { synced: false, offsetMs: null, errorMs: null, rttMs: null },
    };
    assert.ok(heartbeatSchema.safeParse(beat).success, 'older nodes send none');
    assert.ok(heartbeatSchema.safeParse({ ...beat, downloads: { active: true, chunksWanted: 4, chunksDone: 1, bytesWanted: 1000, bytesDone: 250 } }).success);
    assert.ok(!heartbeatSchema.safeParse({ ...beat, downloads: { active: 'yes', chunksWanted: 4, chunksDone: 1, bytesWanted: 1000, bytesDone: 250 } }).success);
    assert.ok(!heartbeatSchema.safeParse({ ...beat, downloads: { active: true, chunksWanted: -1, chunksDone: 0, bytesWanted: 0, bytesDone: 0 } }).success);
  });
});
