/**
 * The real output path end to end: a hub and a node process, the node's output chosen
 * automatically against a real PulseAudio daemon (null sink, started here), a tone played
 * by a group command, and the sink's monitor recorded with parec: the recording must
 * hold that tone.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { makeTone, toneOf } from './helpers/audio.js';
import { ctl, embeddedBroker, startControlHub, startControlNode } from './helpers/control-plane.js';
import { cleanup, ctlLibrary, tempDir } from './helpers/processes.js';
import { pulseInstalled, startPulse } from './helpers/pulse.js';

const RATE = 48000;
const TONE_HZ = 660;

after(cleanup);

test('a node plays a tone through PulseAudio: the null sink\'s monitor records it', { skip: pulseInstalled() ? false : 'pulseaudio or parec is not installed (apt-get install pulseaudio pulseaudio-utils)' }, async (t) => {
  const pa = await startPulse(await tempDir('firefly-pulse-'));
  t.after(() => pa.daemon.kill('SIGTERM'));

  const library = await tempDir('firefly-music-');
  await makeTone(join(library, 'tone.flac'), { format: 'flac', frequency: TONE_HZ, seconds: 4, sampleRate: 44100 });
  const broker = await embeddedBroker();
  const hub = await startControlHub(broker, { library });
  await hub.proc.waitForLog('library indexed', 60_000);
  const [entry] = await ctlLibrary(hub.grpc);

  // The node finds the daemon the way libpulse would: PULSE_RUNTIME_PATH and PULSE_COOKIE.
  const saved = { run: process.env.PULSE_RUNTIME_PATH, cookie: process.env.PULSE_COOKIE };
  process.env.PULSE_RUNTIME_PATH = pa.env.PULSE_RUNTIME_PATH;
  process.env.PULSE_COOKIE = pa.env.PULSE_COOKIE;
  const { proc: node } = await startControlNode(broker, hub, { name: 'speaker', extraArgs: ['--serve-host', '127.0.0.1', '--serve-port', '0', '--output', 'auto'] });
  process.env.PULSE_RUNTIME_PATH = saved.run;
  process.env.PULSE_COOKIE = saved.cookie;
  if (saved.run === undefined) delete process.env.PULSE_RUNTIME_PATH;
  if (saved.cookie === undefined) delete process.env.PULSE_COOKIE;

  const chosen = await node.waitForLog('audio output', 30_000);
  assert.equal(chosen.output, 'pulse', `the node chose ${String(chosen.output)}: ${String(chosen.reason)}`);
  await node.waitForLog('sync complete', 30_000);

  const recorder = spawn('parec', ['-d', 'ff1.monitor', `--rate=${RATE}`, '--channels=2', '--format=s16le', '--raw', '--latency-msec=20'], { env: pa.env, stdio: ['ignore', 'pipe', 'ignore'] });
  const recorded: Buffer[] = [];
  recorder.stdout.on('data', (d: Buffer) => recorded.push(d));
  t.after(() => recorder.kill('SIGKILL'));
  await new Promise((r) => setTimeout(r, 300));

  await ctl(broker, ['group', 'create', 'Room', 'speaker']);
  await ctl(broker, ['play', 'Room', String(entry.id)]);
  await new Promise((r) => setTimeout(r, 5500));
  recorder.kill('SIGTERM');

  const all = Buffer.concat(recorded);
  const pcm = new Int16Array(all.buffer, all.byteOffset, Math.floor(all.length / 2));
  // Find the loud part: the tone, between silence before the play and after the track.
  const window = RATE / 10;
  const loud: number[] = [];
  for (let f = 0; f + window <= pcm.length / 2; f += window) {
    const { rms } = toneOf(pcm.subarray(f * 2, (f + window) * 2), 2, RATE);
    if (rms > 0.05) loud.push(f);
  }
  assert.ok(loud.length >= 30, `only ${loud.length} loud tenths of a second were recorded (expected about 40)`);
  const start = loud[2];
  const tone = toneOf(pcm.subarray(start * 2, (start + RATE) * 2), 2, RATE);
  assert.ok(Math.abs(tone.frequency - TONE_HZ) < 2, `the recording holds ${tone.frequency.toFixed(1)} Hz, not ${TONE_HZ} Hz`);
  assert.equal(node.child.exitCode, null, 'the node still runs');
});
