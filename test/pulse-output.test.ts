import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDecoder } from '../src/node/decode/ffmpeg.js';
import { NullOutput } from '../src/node/output/null.js';
import { MeasureOutput } from '../src/node/output/measure.js';
import type { AudioOutput } from '../src/node/output/output.js';
import { selectOutput } from '../src/node/output/select.js';
import { makeTone, toneOf } from './helpers/audio.js';
import { pulseInstalled, startPulse } from './helpers/pulse.js';

const RATE = 48000;
const CHANNELS = 2;
const TONE_HZ = 880;
const TONE_SECONDS = 2;

const SETTINGS = {
  output: { kind: 'auto' as const, device: 'ff1', bufferMs: 100 },
  playback: { prerollMs: 200, startCacheTracks: 0, prepareStarts: false },
  sim: { clockOffsetSeconds: 0, clockSkewPpm: 0, outputRateErrorPpm: 0 },
};

const havePulse = pulseInstalled();

test('PulseAudio output: a decoded tone reaches the null sink, with a plausible delay', { skip: havePulse ? false : 'pulseaudio or parec is not installed (apt-get install pulseaudio pulseaudio-utils)' }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ff-pulse-'));
  const pa = await startPulse(dir);
  // The daemon first, then its folder (it writes there as it exits).
  t.after(async () => {
    await pa.stop();
    await rm(dir, { recursive: true, force: true });
  });
  // Our client finds the cookie the way libpulse does.
  const savedCookie = process.env.PULSE_COOKIE;
  process.env.PULSE_COOKIE = pa.env.PULSE_COOKIE;
  t.after(() => {
    if (savedCookie === undefined) delete process.env.PULSE_COOKIE;
    else process.env.PULSE_COOKIE = savedCookie;
  });

  const flac = join(dir, 'tone.flac');
  await makeTone(flac, { format: 'flac', frequency: TONE_HZ, seconds: TONE_SECONDS, sampleRate: 44100 });

  // auto picks PulseAudio because a server answers.
  const { output, reason } = await selectOutput(SETTINGS, { sampleRate: RATE, channels: CHANNELS }, { pulseSocketPath: pa.socket });
  t.after(() => output.close());
  assert.equal(output.kind, 'pulse', reason);

  const recorder = spawn('parec', ['-d', 'ff1.monitor', `--rate=${RATE}`, `--channels=${CHANNELS}`, '--format=s16le', '--raw', '--latency-msec=20'], {
    env: pa.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const recorded: Buffer[] = [];
  recorder.stdout!.on('data', (d: Buffer) => recorded.push(d));
  t.after(() => {
    recorder.kill('SIGKILL');
  });
  await new Promise((r) => setTimeout(r, 300));

  const reader = openDecoder(createReadStream(flac), { format: 'flac', sampleRate: RATE, channels: CHANNELS, startFrame: 0 });
  const delays: number[] = [];
  let frames = 0;
  const started = performance.now();
  for (;;) {
    const pcm = await reader.read(RATE / 50);
    if (!pcm) break;
    await output.write(pcm, { session: 'test', trackFrame: frames });
    frames += pcm.length / CHANNELS;
    delays.push(output.delayFrames());
  }
  await reader.close();
  assert.equal(frames, TONE_SECONDS * RATE);
  // Writes are paced by the server: 2 s of audio cannot be accepted much faster than it plays.
  const writing = (performance.now() - started) / 1000;
  assert.ok(writing > TONE_SECONDS - 0.5, `all written in ${writing.toFixed(2)} s`);

  // While playing, the delay is the server's buffer (about bufferMs) plus the sink's latency.
  const steady = delays.slice(delays.length >> 1).sort((a, b) => a - b);
  const median = steady[steady.length >> 1];
  assert.ok(steady[0] > 0, `delay reached 0 while playing: ${steady.slice(0, 5).join(', ')}`);
  assert.ok(median > 0.05 * RATE && median < 0.6 * RATE, `median delay ${median} frames`);

  // Let it play out, then stop recording.
  const tail = output.delayFrames();
  await new Promise((r) => setTimeout(r, (tail / RATE) * 1000 + 400));
  const afterPlaying = output.delayFrames();
  assert.ok(afterPlaying < 0.05 * RATE, `delay ${afterPlaying} frames once everything played`);
  recorder.kill('SIGTERM');
  await new Promise((r) => recorder.once('close', r));

  const rec = Buffer.concat(recorded);
  const pcm = new Int16Array(rec.buffer, rec.byteOffset, Math.floor(rec.length / 2));
  // Where the tone is: frames above a small threshold.
  let first = -1;
  let last = -1;
  for (let i = 0; i < pcm.length / CHANNELS; i++) {
    if (Math.abs(pcm[i * CHANNELS]) > 500) {
      if (first < 0) first = i;
      last = i;
    }
  }
  assert.ok(first >= 0, `the recording (${(pcm.length / CHANNELS / RATE).toFixed(2)} s) is silent; pulseaudio said:\n${pa.log()}`);
  const heard = (last - first) / RATE;
  assert.ok(Math.abs(heard - TONE_SECONDS) < 0.1, `tone heard for ${heard.toFixed(3)} s`);
  const body = pcm.subarray((first + RATE / 4) * CHANNELS, (last - RATE / 4) * CHANNELS);
  const { frequency, rms } = toneOf(body, CHANNELS, RATE);
  assert.ok(Math.abs(frequency - TONE_HZ) < 1, `recorded ${frequency.toFixed(2)} Hz`);
  assert.ok(rms > 0.05, `recorded rms ${rms}`);
});

test('PulseAudio output: flush drops what is queued', { skip: havePulse ? false : 'pulseaudio is not installed' }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ff-pulse-'));
  const pa = await startPulse(dir);
  // The daemon first, then its folder (it writes there as it exits).
  t.after(async () => {
    await pa.stop();
    await rm(dir, { recursive: true, force: true });
  });
  process.env.PULSE_COOKIE = pa.env.PULSE_COOKIE;
  t.after(() => {
    delete process.env.PULSE_COOKIE;
  });
  // A whole second queued: the sink's own buffer (which a flush cannot reach) grows on a
  // loaded machine, and with 0.5 s queued a CI run once dropped only 146 ms of it.
  const { output } = await selectOutput({ ...SETTINGS, output: { ...SETTINGS.output, kind: 'pulse', bufferMs: 1000 } }, { sampleRate: RATE, channels: CHANNELS }, { pulseSocketPath: pa.socket });
  t.after(() => output.close());
  assert.equal(output.kind, 'pulse');
  const second = new Int16Array(RATE * CHANNELS).fill(1000);
  await output.write(second, { session: 'a', trackFrame: 0 });
  const before = output.delayFrames();
  assert.ok(before > 0.5 * RATE, `delay ${before} before the flush`);
  await output.flush();
  const after = output.delayFrames();
  assert.ok(after < before - 0.15 * RATE, `delay ${after} after the flush (was ${before})`);
});

test('with no sound server and no card, auto selects the null output and says why', async () => {
  const warnings: string[] = [];
  const log = { warn: (_o: unknown, msg: string) => warnings.push(msg), error: () => {} } as unknown as import('../src/log.js').Logger;
  const { output, reason } = await selectOutput(SETTINGS, { sampleRate: RATE, channels: CHANNELS }, {
    log,
    pulseSocketPath: join(tmpdir(), 'no-such-pulse', 'native'),
    factories: { alsa: () => ({ open: async () => Promise.reject(new Error('no card')) }) as unknown as AudioOutput },
  });
  try {
    assert.equal(output.kind, 'null');
    assert.match(reason, /no audio device found \(PulseAudio: .*no-such-pulse.*; ALSA: no card\)/);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /nothing will be heard/);
  } finally {
    await output.close();
  }
});

test('an explicit output that cannot open falls back to null, the node keeps going', async () => {
  const errors: string[] = [];
  const log = { warn: () => {}, error: (_o: unknown, msg: string) => errors.push(msg) } as unknown as import('../src/log.js').Logger;
  const { output, reason } = await selectOutput({ ...SETTINGS, output: { ...SETTINGS.output, kind: 'pulse' } }, { sampleRate: RATE, channels: CHANNELS }, {
    log,
    pulseSocketPath: join(tmpdir(), 'no-such-pulse', 'native'),
  });
  assert.equal(output.kind, 'null');
  assert.match(reason, /pulse failed: no PulseAudio server/);
  assert.equal(errors.length, 1);
  await output.close();
});

test('the null output consumes in real time', async () => {
  const out = new NullOutput({ sampleRate: RATE, channels: CHANNELS, bufferMs: 100, reason: 'test', log: { warn() {} } as unknown as import('../src/log.js').Logger });
  await out.open();
  const block = new Int16Array((RATE / 100) * CHANNELS);
  const t0 = performance.now();
  for (let i = 0; i < 60; i++) await out.write(block, { session: 's', trackFrame: i * (RATE / 100) }); // 0.6 s
  const took = (performance.now() - t0) / 1000;
  // 0.6 s written into a 0.1 s buffer: about 0.5 s of waiting.
  assert.ok(took > 0.42 && took < 0.8, `took ${took.toFixed(3)} s`);
  const d = out.delayFrames();
  assert.ok(d > 0.05 * RATE && d <= 0.1 * RATE + RATE / 100, `delay ${d}`);
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(out.delayFrames(), 0);
  await out.close();
});

test('the measurement and null outputs count underruns: a writer that stalls past the buffer', async () => {
  const measure = new MeasureOutput({ sampleRate: RATE, channels: CHANNELS, bufferMs: 50, rateErrorPpm: 0 });
  const nul = new NullOutput({ sampleRate: RATE, channels: CHANNELS, bufferMs: 50, reason: 'test', log: { warn() {} } as unknown as import('../src/log.js').Logger });
  for (const out of [measure, nul]) {
    await out.open();
    const block = new Int16Array((RATE / 100) * CHANNELS);
    for (let i = 0; i < 10; i++) await out.write(block, { session: 's', trackFrame: i * (RATE / 100) });
    const before = out.underruns();
    // Kept fed: no underrun.
    for (let i = 0; i < 10; i++) await out.write(block, { session: 's', trackFrame: i * (RATE / 100) });
    assert.equal(out.underruns(), before, `${out.kind}: an underrun while fed`);
    // The writer stalls for 120 ms with 50 ms queued: the device runs dry.
    await new Promise((r) => setTimeout(r, 120));
    await out.write(block, { session: 's', trackFrame: 0 });
    assert.ok(out.underruns() > before, `${out.kind}: no underrun counted after a stall`);
    await out.close();
  }
});

