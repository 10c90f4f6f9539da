import { execFile, spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import type { AudioOutput, FrameTag } from './output.js';
import { PlayCursor } from './play-cursor.js';

export interface AlsaOutputOptions {
  sampleRate: number;
  channels: number;
  /** ALSA device (default: `default`), e.g. `hw:0,0` or `plughw:1`. */
  device?: string;
  /** ALSA buffer, in ms. */
  bufferMs?: number;
}

/**
 * Plain ALSA, for a box with no sound server, through `aplay` (alsa-utils) as a
 * subprocess. aplay cannot tell us where the card is, so delayFrames() is an estimate:
 * playback starts once the ALSA buffer is full (aplay's start threshold), then runs at
 * the nominal rate by the local clock (PlayCursor). It is right to within the card's
 * crystal error and the few ms aplay takes to start; the per-node latency offset covers
 * what is constant. PulseAudio or PipeWire is the accurate output where available.
 */
export class AlsaOutput implements AudioOutput {
  readonly kind = 'alsa' as const;
  readonly sampleRate: number;
  readonly channels: number;
  private readonly bufferFrames: number;
  private readonly cursor: PlayCursor;
  private child?: ChildProcessByStdio<Writable, null, Readable>;
  private failure?: Error;
  private stderr = '';

  constructor(private readonly options: AlsaOutputOptions) {
    this.sampleRate = options.sampleRate;
    this.channels = options.channels;
    this.bufferFrames = Math.round(((options.bufferMs ?? 100) * options.sampleRate) / 1000);
    this.cursor = new PlayCursor(options.sampleRate, this.bufferFrames);
  }

  async open(): Promise<void> {
    this.failure = undefined;
    this.stderr = '';
    const device = this.options.device ?? 'default';
    const child = spawn(
      'aplay',
      ['-q', '-t', 'raw', '-f', 'S16_LE', '-r', String(this.sampleRate), '-c', String(this.channels), '-D', device, `--buffer-time=${Math.round((this.bufferFrames * 1e6) / this.sampleRate)}`],
      { stdio: ['pipe', 'ignore', 'pipe'] },
    );
    this.child = child;
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s: string) => (this.stderr = (this.stderr + s).slice(-2000)));
    child.stdin.on('error', () => {});
    child.on('error', (err) => (this.failure ??= new Error(`could not run aplay (${err.message}); install alsa-utils`)));
    child.on('close', (code, signal) => {
      if (this.child === child) this.failure ??= new Error(`aplay on ${device} stopped (${signal ?? `code ${code}`}): ${this.stderr.trim() || 'no message'}`);
    });
    // aplay fails fast on a missing device; give it a moment to say so.
    await new Promise((r) => setTimeout(r, 150));
    if (this.failure) throw this.failure;
  }

  underruns(): number {
    return this.cursor.underruns;
  }

  delayFrames(): number {
    return Math.round(this.cursor.delay(performance.now()));
  }

  async write(pcm: Int16Array, _tag: FrameTag): Promise<void> {
    if (this.failure) throw this.failure;
    const child = this.child;
    if (!child) throw new Error('the ALSA output is not open');
    const frames = Math.floor(pcm.length / this.channels);
    // Keep at most the ALSA buffer plus one write queued, so the estimate stays close.
    for (;;) {
      const wait = this.cursor.waitMs(Math.min(frames, this.bufferFrames), 2 * this.bufferFrames, performance.now());
      if (wait <= 0) break;
      await new Promise((r) => setTimeout(r, Math.max(1, wait)));
    }
    const data = Buffer.from(new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength));
    if (!child.stdin.write(data)) await new Promise<void>((r) => child.stdin.once('drain', r));
    this.cursor.wrote(frames, performance.now());
  }

  /** aplay cannot drop its buffer: restart it. */
  async flush(): Promise<void> {
    await this.stop();
    this.cursor.reset(performance.now());
    await this.open();
  }

  private async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const closed = new Promise<void>((r) => child.once('close', () => r()));
    child.kill('SIGKILL');
    await closed;
  }

  async close(): Promise<void> {
    await this.stop();
    this.cursor.reset(performance.now());
  }
}

/** Whether ALSA has a playback device here (`aplay -l` lists a card). */
export function alsaAvailable(): Promise<{ ok: true } | { ok: false; reason: string }> {
  return new Promise((resolve) => {
    execFile('aplay', ['-l'], { timeout: 3000 }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') return resolve({ ok: false, reason: 'aplay is not installed (alsa-utils)' });
      if (/^card \d+:/m.test(stdout)) return resolve({ ok: true });
      resolve({ ok: false, reason: (stderr || stdout).trim().split('\n')[0] || 'no sound card found' });
    });
  });
}
