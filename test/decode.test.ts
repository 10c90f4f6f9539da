import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { getPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { DecodeError, ffmpegDecoder, openDecoder } from '../src/node/decode/ffmpeg.js';
import type { DecodeOptions, PcmReader } from '../src/node/decode/pcm.js';
import { makeTone, toneOf, type TestFormat } from './helpers/audio.js';

const RATE = 48000;
const SECONDS = 3;
const FORMATS: TestFormat[] = ['mp3', 'flac', 'wav', 'ogg', 'opus', 'm4a'];

/**
 * How far a decode of a 3 s tone may differ from 3 s, in frames at 48 kHz. Lossless
 * formats, Vorbis and Opus (pre-skip and end trim in the container) and MP3 (LAME tag,
 * see mp3-gapless.ts) come out exact. AAC in MP4 keeps its priming and padding because
 * ffmpeg does not apply the encoder's edit list to the last frame: up to two AAC frames
 * (2 × 1024 samples at 44.1 kHz ≈ 2229 frames at 48 kHz) longer.
 */
const LENGTH_SLACK: Record<TestFormat, [number, number]> = {
  mp3: [0, 0],
  flac: [0, 0],
  wav: [0, 0],
  ogg: [0, 0],
  opus: [0, 0],
  m4a: [0, 2229],
};

let dir: string;
const files = new Map<TestFormat, string>();

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ff-decode-'));
  await Promise.all(
    FORMATS.map(async (format) => {
      const file = join(dir, `tone.${format}`);
      await makeTone(file, { format, seconds: SECONDS });
      files.set(format, file);
    }),
  );
});

test.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function open(file: string, options: Partial<DecodeOptions> & { format: string }): PcmReader {
  return openDecoder(createReadStream(file), { sampleRate: RATE, channels: 2, startFrame: 0, ...options });
}

/** Reads the whole decode, in blocks of `block` frames, with a deadline so a hang fails the test. */
async function readAll(reader: PcmReader, block = 4096, deadlineMs = 20_000): Promise<Int16Array> {
  const parts: Int16Array[] = [];
  try {
    const until = Date.now() + deadlineMs;
    for (;;) {
      const pcm = await Promise.race([
        reader.read(block),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error('decoder hung')), Math.max(1, until - Date.now())).unref()),
      ]);
      if (pcm === null) break;
      assert.ok(pcm.length > 0 && pcm.length % reader.channels === 0);
      assert.ok(pcm.length <= block * reader.channels);
      parts.push(pcm);
    }
  } finally {
    await reader.close();
  }
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

for (const format of FORMATS) {
  test(`${format}: a 1 kHz tone at 44.1 kHz decodes to 1 kHz at 48 kHz, 3 s long`, async () => {
    const pcm = await readAll(open(files.get(format)!, { format }));
    const frames = pcm.length / 2;
    const [less, more] = LENGTH_SLACK[format];
    const expected = SECONDS * RATE;
    assert.ok(frames >= expected - less && frames <= expected + more, `${format}: ${frames} frames, expected ${expected} (-${less}/+${more})`);
    // Away from the edges (codec fade-in, priming), the tone is steady.
    const middle = pcm.subarray(0.5 * RATE * 2, 2.5 * RATE * 2);
    const { frequency, rms } = toneOf(middle, 2, RATE);
    assert.ok(Math.abs(frequency - 1000) < 0.5, `${format}: ${frequency.toFixed(3)} Hz`);
    // lavfi's sine is at 1/8 full scale, -3 dB for the mono-to-stereo upmix: RMS 0.125/2 = 0.0625.
    assert.ok(rms > 0.055 && rms < 0.07, `${format}: rms ${rms}`);
    // The right channel carries it too.
    assert.ok(Math.abs(toneOf(middle.subarray(1), 2, RATE).frequency - 1000) < 0.5, `${format}: right channel`);
  });

  test(`${format}: startFrame lands on exactly that frame of the decode from 0`, async () => {
    const whole = await readAll(open(files.get(format)!, { format }));
    for (const start of [1, 12_345, 100_000]) {
      const part = await readAll(open(files.get(format)!, { format, startFrame: start }), 1000);
      assert.equal(part.length, whole.length - start * 2, `${format} from ${start}: length`);
      const want = whole.subarray(start * 2);
      // Deterministic decoders + a skip on our side: identical, lossy formats included.
      assert.ok(Buffer.from(part.buffer).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength)), `${format} from ${start}: samples differ`);
    }
  });
}

test('other rates and channel counts: 48 kHz FLAC to 44.1 kHz, 22.05 kHz WAV to 48 kHz mono', async () => {
  const flac48 = join(dir, 'tone48.flac');
  await makeTone(flac48, { format: 'flac', sampleRate: 48000, frequency: 440, seconds: 2 });
  const a = await readAll(openDecoder(createReadStream(flac48), { format: 'flac', sampleRate: 44100, channels: 2, startFrame: 0 }));
  assert.equal(a.length / 2, 2 * 44100);
  assert.ok(Math.abs(toneOf(a.subarray(44100, 3 * 44100), 2, 44100).frequency - 440) < 0.5);

  const wav22 = join(dir, 'tone22.wav');
  await makeTone(wav22, { format: 'wav', sampleRate: 22050, frequency: 3000, seconds: 2 });
  const b = await readAll(openDecoder(createReadStream(wav22), { format: 'wav', sampleRate: RATE, channels: 1, startFrame: 0 }));
  assert.equal(b.length, 2 * RATE);
  assert.ok(Math.abs(toneOf(b.subarray(RATE / 2, (3 * RATE) / 2), 1, RATE).frequency - 3000) < 0.5);
});

test('a startFrame past the end gives no audio', async () => {
  const pcm = await readAll(open(files.get('flac')!, { format: 'flac', startFrame: 10 * RATE }));
  assert.equal(pcm.length, 0);
});

/** Expects the decode to be refused with a DecodeError naming the format; returns its message. */
async function refused(reader: PcmReader, format: string): Promise<string> {
  try {
    await readAll(reader, 4096, 15_000);
  } catch (err) {
    assert.ok(err instanceof DecodeError, `expected a DecodeError, got ${String(err)}`);
    assert.equal(err.format, format);
    assert.match(err.message, new RegExp(`^cannot decode ${format}: .+`));
    return err.message;
  }
  assert.fail(`a bad ${format} decoded without an error`);
}

test('bad input: truncated files are reported, never played as if whole', async () => {
  for (const format of ['flac', 'mp3', 'ogg', 'm4a'] as const) {
    const data = await readFile(files.get(format)!);
    const cut = data.subarray(0, Math.floor(data.length * 0.4));
    // The catalogue's duration lets formats that end "cleanly" at a cut be caught too.
    const msg = await refused(openDecoder(Readable.from([cut]), { format, sampleRate: RATE, channels: 2, startFrame: 0, durationSeconds: SECONDS }), format);
    assert.ok(msg.length < 400, msg);
  }
  // MP3 needs no catalogue duration: its LAME tag says how long it is.
  const mp3 = await readFile(files.get('mp3')!);
  const msg = await refused(openDecoder(Readable.from([mp3.subarray(0, mp3.length >> 1)]), { format: 'mp3', sampleRate: RATE, channels: 2, startFrame: 0 }), 'mp3');
  assert.match(msg, /truncated/);
});

test('bad input: corrupt frames are reported', async () => {
  for (const format of ['flac', 'mp3', 'ogg', 'opus', 'm4a'] as const) {
    const data = Buffer.from(await readFile(files.get(format)!));
    // Flipped bytes, and a run of garbage where a frame header was (a damaged block on disk).
    // MP3 frames carry no checksum, so flipped bits in their payload alone go unnoticed:
    // it is the lost frame headers that give it away.
    for (let i = 4000; i < data.length - 2000; i += 997) data[i] ^= 0xff;
    const mid = data.length >> 1;
    for (let i = mid; i < mid + 3000; i++) data[i] = (i * 131) & 0xff;
    await refused(openDecoder(Readable.from([data]), { format, sampleRate: RATE, channels: 2, startFrame: 0, durationSeconds: SECONDS }), format);
  }
});

test('bad input: wrong format, garbage, empty, unknown format', async () => {
  const flac = await readFile(files.get('flac')!);
  await refused(openDecoder(Readable.from([flac]), { format: 'mp3', sampleRate: RATE, channels: 2, startFrame: 0 }), 'mp3');
  await refused(openDecoder(Readable.from([flac]), { format: 'm4a', sampleRate: RATE, channels: 2, startFrame: 0 }), 'm4a');
  const garbage = Buffer.alloc(50_000);
  for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 7919) & 0xff;
  for (const format of ['flac', 'ogg', 'wav'] as const) {
    await refused(openDecoder(Readable.from([garbage]), { format, sampleRate: RATE, channels: 2, startFrame: 0 }), format);
  }
  await refused(openDecoder(Readable.from([]), { format: 'flac', sampleRate: RATE, channels: 2, startFrame: 0 }), 'flac');
  const msg = await refused(openDecoder(Readable.from([flac]), { format: 'aiff', sampleRate: RATE, channels: 2, startFrame: 0 }), 'aiff');
  assert.match(msg, /unknown format/);
});

test('bad input: a chunk that cannot be read fails the decode with the reason', async () => {
  const flac = await readFile(files.get('flac')!);
  const bytes = Readable.from(
    (async function* () {
      yield flac.subarray(0, 20_000);
      throw new Error('chunk 3 (abcd…) is not in the store');
    })(),
  );
  const msg = await refused(openDecoder(bytes, { format: 'flac', sampleRate: RATE, channels: 2, startFrame: 0 }), 'flac');
  assert.match(msg, /chunk 3 .* is not in the store/);
});

test('close() stops a decode whose input never ends, and reads after it return null', async () => {
  const flac = await readFile(files.get('flac')!);
  const stalled = new Readable({ read() {} });
  stalled.push(flac.subarray(0, 30_000));
  const reader = openDecoder(stalled, { format: 'flac', sampleRate: RATE, channels: 2, startFrame: 0 });
  const first = await reader.read(1000);
  assert.ok(first && first.length === 2000);
  const pending = reader.read(1_000_000);
  const t0 = Date.now();
  await reader.close();
  assert.ok(Date.now() - t0 < 2000);
  assert.equal(await pending, null);
  assert.equal(await reader.read(10), null);
  assert.ok(stalled.destroyed);
});

test('decoders run below the node: every ffmpeg it starts is 10 nicer than the node (or at 19)', async () => {
  const flac = await readFile(files.get('flac')!);
  const stalled = new Readable({ read() {} });
  stalled.push(flac.subarray(0, 30_000));
  const reader = openDecoder(stalled, { format: 'flac', sampleRate: RATE, channels: 2, startFrame: 0 });
  try {
    assert.ok(await reader.read(1000));
    // This process's ffmpeg children (the decode and any spares), from /proc.
    const children: number[] = [];
    for (const name of await readdir('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
      const m = /^\d+ \((.*)\) \S+ (\d+)/.exec(stat);
      if (m && m[1] === 'ffmpeg' && Number(m[2]) === process.pid) children.push(Number(name));
    }
    assert.ok(children.length > 0, 'found the decoding ffmpeg');
    const want = Math.min(19, getPriority() + 10);
    for (const pid of children) assert.equal(getPriority(pid), want, `ffmpeg ${pid} runs at niceness ${want}`);
  } finally {
    await reader.close();
  }
});

test('m4a tracks are spooled to a temp file and it is removed on close', async () => {
  const spoolDir = await mkdtemp(join(tmpdir(), 'ff-spool-'));
  try {
    const reader = ffmpegDecoder({ spoolDir })(createReadStream(files.get('m4a')!), { format: 'm4a', sampleRate: RATE, channels: 2, startFrame: 0 });
    assert.ok(await reader.read(100));
    await reader.close();
    assert.deepEqual(await readdir(spoolDir), []);
  } finally {
    await rm(spoolDir, { recursive: true, force: true });
  }
});
