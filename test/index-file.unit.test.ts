import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { indexFile, type IndexOptions } from '../hub/library/index-file.js';
import type { IndexedFile } from '../hub/library/catalogue.js';
import { manifestOf, sha256 } from '../src/chunking/manifest.js';
import { makeTrack, type TestFormat } from './helpers/audio.js';
import { pseudoRandomBytes } from './helpers/bytes.js';

const run = promisify(execFile);
const FORMATS: TestFormat[] = ['mp3', 'flac', 'wav', 'ogg', 'opus', 'm4a'];
const SECONDS = 3;
const OPTS: IndexOptions = { inMemoryLimitBytes: 64 * 1024 * 1024 };
const SMALL = { minSize: 256, avgSize: 1024, maxSize: 4096 };

let dir = '';
const track = (f: TestFormat) => join(dir, `track.${f}`);

async function ffmpeg(...args: string[]): Promise<void> {
  await run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', ...args]);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ff-index-'));
  mkdirSync(join(dir, 'sub'));
  await Promise.all([
    ...FORMATS.map((format) => makeTrack(track(format), { format, seconds: SECONDS, title: `Title ${format}`, artist: 'The Artist', album: 'The Album', seed: 7 })),
    makeTrack(join(dir, 'rate.wav'), { format: 'wav', seconds: 2, sampleRate: 22050, title: 'Slow' }),
    makeTrack(join(dir, 'rate.flac'), { format: 'flac', seconds: 2, sampleRate: 48000 }),
    ffmpeg('-f', 'lavfi', '-i', 'color=red:s=64x64', '-frames:v', '1', join(dir, 'cover.png')),
  ]);
  await ffmpeg(
    '-i', track('mp3'), '-i', join(dir, 'cover.png'),
    '-map', '0:a', '-map', '1', '-c:a', 'copy', '-c:v', 'png', '-disposition:v', 'attached_pic', '-id3v2_version', '3',
    join(dir, 'cover.mp3'),
  );
  // The picture exactly as it sits in the file, pulled out by ffmpeg (not by the code under test).
  await ffmpeg('-i', join(dir, 'cover.mp3'), '-map', '0:v', '-c', 'copy', '-f', 'image2', join(dir, 'extracted.png'));
  // The same audio frames under different tags.
  await ffmpeg('-i', track('flac'), '-map', '0:a', '-c', 'copy', '-metadata', 'title=Retagged', join(dir, 'retagged.flac'));
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The properties every indexed file must have: its size, and chunks that are those of its bytes. */
function assertChunkedLikeBytes(r: IndexedFile, file: string): void {
  const data = readFileSync(file);
  assert.equal(r.size, data.length);
  const m = manifestOf(data);
  assert.ok(r.contentId?.equals(m.contentId), 'content id must be that of the bytes');
  assert.deepEqual(
    r.chunks!.map((c) => [c.offset, c.size, c.hash.toString('hex')]),
    m.chunks.map((c) => [c.offset, c.size, c.hash.toString('hex')]),
  );
}

for (const format of FORMATS) {
  test(`a real ${format} file indexes as ok ${format}, with its tags and stream facts`, async () => {
    const r = await indexFile(track(format), OPTS);
    assert.equal(r.status, 'ok', r.error ?? '');
    assert.equal(r.error, undefined);
    assert.equal(r.format, format);
    const m = r.metadata!;
    assert.equal(m.title, `Title ${format}`);
    assert.equal(m.artist, 'The Artist');
    assert.equal(m.album, 'The Album');
    assert.ok(Math.abs(m.durationSeconds! - SECONDS) < 0.1, `duration ${m.durationSeconds}`);
    assert.equal(m.sampleRate, format === 'opus' ? 48000 : 44100);
    assert.equal(m.channels, 2);
    assert.ok(typeof m.codec === 'string' && m.codec.length > 0);
    assert.equal(m.coverHash, undefined);
    assert.equal(r.cover, undefined);
    assert.ok(r.mtimeMs > 0);
    assertChunkedLikeBytes(r, track(format));
  });
}

test('sample rate and duration are read from the file, not assumed', async () => {
  const wav = await indexFile(join(dir, 'rate.wav'), OPTS);
  assert.equal(wav.status, 'ok');
  assert.equal(wav.metadata!.sampleRate, 22050);
  assert.equal(wav.metadata!.bitsPerSample, 16);
  assert.ok(Math.abs(wav.metadata!.durationSeconds! - 2) < 0.05, `${wav.metadata!.durationSeconds}`);
  assert.equal(wav.metadata!.title, 'Slow');
  const flac = await indexFile(join(dir, 'rate.flac'), OPTS);
  assert.equal(flac.status, 'ok');
  assert.equal(flac.metadata!.sampleRate, 48000);
  assert.equal(flac.metadata!.title, undefined, 'absent tags are left out, not empty');
});

test('files above the in-memory limit are streamed, with the same result', async () => {
  for (const format of ['flac', 'mp3', 'm4a'] as const) {
    const inMemory = await indexFile(track(format), OPTS);
    const streamed = await indexFile(track(format), { inMemoryLimitBytes: 1000 });
    assert.equal(streamed.status, 'ok', streamed.error ?? '');
    assert.equal(streamed.format, format);
    assert.deepEqual(streamed.metadata, inMemory.metadata);
    assertChunkedLikeBytes(streamed, track(format));
  }
});

test('the chunking parameters are honoured', async () => {
  const r = await indexFile(track('wav'), { ...OPTS, chunking: SMALL });
  const m = manifestOf(readFileSync(track('wav')), SMALL);
  assert.ok(r.contentId!.equals(m.contentId));
  assert.equal(r.chunks!.length, m.chunks.length);
  assert.ok(r.chunks!.length > 100);
});

test('a re-tag shares all audio chunks but the first few', async () => {
  const a = await indexFile(track('flac'), OPTS);
  const b = await indexFile(join(dir, 'retagged.flac'), { ...OPTS, chunking: SMALL });
  const aSmall = await indexFile(track('flac'), { ...OPTS, chunking: SMALL });
  assert.equal(b.metadata!.title, 'Retagged');
  assert.ok(!b.contentId!.equals(a.contentId!));
  const before = new Set(aSmall.chunks!.map((c) => c.hash.toString('hex')));
  const fresh = b.chunks!.filter((c) => !before.has(c.hash.toString('hex')));
  assert.ok(fresh.length <= 3, `${fresh.length} of ${b.chunks!.length} chunks changed`);
});

test('an empty file is failed, with a reason and no content id', async () => {
  const file = join(dir, 'empty.mp3');
  writeFileSync(file, '');
  const r = await indexFile(file, OPTS);
  assert.equal(r.status, 'failed');
  assert.match(r.error!, /empty/);
  assert.equal(r.size, 0);
  assert.equal(r.contentId, undefined);
  assert.equal(r.chunks, undefined);
});

test('random bytes are unsupported or failed, with a reason, whatever the name', async () => {
  for (const name of ['noise.mp3', 'noise.flac', 'noise.m4a', 'noise.ogg']) {
    const file = join(dir, name);
    writeFileSync(file, pseudoRandomBytes(100_000, name));
    const r = await indexFile(file, OPTS);
    assert.ok(r.status === 'unsupported' || r.status === 'failed', `${name}: ${r.status}`);
    assert.ok(r.error && r.error.length > 10, `${name}: reason ${r.error}`);
    assert.equal(r.cover, undefined);
    // Still fingerprinted: the catalogue can tell when the bytes change.
    assertChunkedLikeBytes(r, file);
  }
  const text = join(dir, 'notes.mp3');
  writeFileSync(text, 'These are my notes about this album, not audio at all.\n'.repeat(200));
  const r = await indexFile(text, OPTS);
  assert.ok(r.status === 'unsupported' || r.status === 'failed', r.status);
  assert.ok(r.error);
});

test('a truncated file is failed with a reason', async () => {
  for (const [format, keep] of [
    ['mp3', 0.3],
    ['m4a', 0.3],
    ['ogg', 0.2],
    ['opus', 0.2],
  ] as const) {
    const data = readFileSync(track(format));
    const file = join(dir, `truncated.${format}`);
    writeFileSync(file, data.subarray(0, Math.floor(data.length * keep)));
    const r = await indexFile(file, OPTS);
    assert.equal(r.status, 'failed', `truncated ${format}: ${r.status} ${JSON.stringify(r.metadata)}`);
    assert.ok(r.error && r.error.length > 10, `truncated ${format}: reason ${r.error}`);
    assertChunkedLikeBytes(r, file);
  }
  const mp3 = await indexFile(join(dir, 'truncated.mp3'), OPTS);
  assert.equal(mp3.format, 'mp3');
  assert.match(mp3.error!, /truncated/);
});

test('a FLAC file named .mp3 is indexed as the FLAC it is', async () => {
  const file = join(dir, 'sub', 'actually-flac.mp3');
  copyFileSync(track('flac'), file);
  const r = await indexFile(file, OPTS);
  assert.equal(r.status, 'ok', r.error ?? '');
  assert.equal(r.format, 'flac');
  assert.equal(r.metadata!.title, 'Title flac');
  const real = await indexFile(track('flac'), OPTS);
  assert.ok(r.contentId!.equals(real.contentId!), 'same bytes, same content id, whatever the name');
  // And an MP3 named .flac.
  const other = join(dir, 'sub', 'actually-mp3.flac');
  copyFileSync(track('mp3'), other);
  const r2 = await indexFile(other, OPTS);
  assert.equal(r2.status, 'ok', r2.error ?? '');
  assert.equal(r2.format, 'mp3');
});

test('an embedded cover is returned and its hash recorded in the metadata', async () => {
  const r = await indexFile(join(dir, 'cover.mp3'), OPTS);
  assert.equal(r.status, 'ok', r.error ?? '');
  assert.equal(r.format, 'mp3');
  assert.ok(r.cover, 'cover returned');
  const png = readFileSync(join(dir, 'extracted.png'));
  assert.ok(r.cover.data.equals(png), 'the cover bytes are the embedded picture');
  assert.ok(r.cover.data.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])), 'a PNG');
  assert.ok(r.cover.hash.equals(sha256(png)));
  assert.equal(r.cover.mime, 'image/png');
  assert.equal(r.metadata!.coverHash, sha256(png).toString('hex'));
  assert.equal(r.metadata!.coverMime, 'image/png');
  // The audio stream facts are unaffected by the picture.
  assert.equal(r.metadata!.title, 'Title mp3');
  assert.ok(Math.abs(r.metadata!.durationSeconds! - SECONDS) < 0.1);
  assertChunkedLikeBytes(r, join(dir, 'cover.mp3'));
});

test('a folder or a missing file is an error, not a result', async () => {
  await assert.rejects(indexFile(join(dir, 'sub'), OPTS), /not a regular file/);
  await assert.rejects(indexFile(join(dir, 'no-such-file.mp3'), OPTS), { code: 'ENOENT' });
});

