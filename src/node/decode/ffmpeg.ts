import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { getPriority, setPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { mp3Length } from './mp3-gapless.js';
import type { DecodeOptions, OpenDecoder, PcmReader } from './pcm.js';

/**
 * Decoding with Debian's ffmpeg as a subprocess, for every format (see docs/decoding.md
 * for why one path rather than the wasm decoders): the track's bytes go to its stdin,
 * s16le at the asked rate and channel count comes back on stdout, resampled by soxr.
 *
 * The decoder runs in its own process, so a slow or broken file never blocks the node's
 * event loop (which schedules output) and a crash in a codec cannot take the node down.
 */

/** A track that cannot be decoded: names the format and what failed. */
export class DecodeError extends Error {
  constructor(
    readonly format: string,
    readonly reason: string,
  ) {
    super(`cannot decode ${format}: ${reason}`);
    this.name = 'DecodeError';
  }
}

/** The ffmpeg demuxer for each catalogue format; forced, so a misnamed file fails clearly. */
const DEMUXER: Record<string, string> = {
  mp3: 'mp3',
  flac: 'flac',
  wav: 'wav',
  ogg: 'ogg',
  opus: 'ogg',
  m4a: 'mov',
};

/** Formats whose index may sit at the end of the file (MP4's moov): ffmpeg must be able to seek. */
const NEEDS_SEEKABLE_INPUT = new Set(['m4a']);

/** Decoded audio held ahead of the reader before ffmpeg is paused: about 2 s at 48 kHz stereo. */
const HIGH_WATER_BYTES = 384 * 1024;
const STDERR_KEEP = 4096;

export interface FfmpegDecoderOptions {
  /** The ffmpeg binary (default: `ffmpeg` on PATH). */
  ffmpeg?: string;
  /** Where m4a tracks are spooled for ffmpeg to seek (default: the OS temp folder). */
  spoolDir?: string;
}

export function ffmpegDecoder(settings: FfmpegDecoderOptions = {}): OpenDecoder {
  return (bytes, options) => new FfmpegPcmReader(bytes, options, settings);
}

/** The node's decoder: Debian's ffmpeg for every format. */
export const openDecoder: OpenDecoder = ffmpegDecoder();

type Child = ChildProcessByStdio<Writable, Readable, Readable>;

/**
 * Decoders run at this niceness, below the node itself: they work seconds ahead, while
 * the node's writes to the output and its control messages are due on the millisecond.
 * On a busy machine (a small box, or 8 nodes and a hub on 2 cores) the ffmpeg bursts
 * after a play or a stop then wait for the node instead of the other way round.
 */
const DECODER_NICE = 10;

function spawnFfmpeg(bin: string, args: string[]): Child {
  const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  try {
    if (child.pid !== undefined) setPriority(child.pid, Math.min(19, getPriority() + DECODER_NICE));
  } catch {
    // Not allowed here (some sandboxes): the decoder runs at the node's own priority.
  }
  return child;
}

/**
 * Spares are replaced this long after one was taken: late enough that the replacement's
 * start-up does not compete with the start of playback it was taken for.
 */
const SPARE_REFILL_MS = 1000;
/** After a decoder closes, its spare is started this much later (ms). */
const SPARE_IDLE_REFILL_MS = 1000;
/**
 * Spares kept per argument list. Two, because a stop parks a decode of the track it
 * stopped (which takes one): with a single spare, a play of another track soon after
 * found none and every node loaded ffmpeg cold at once, 350–690 ms to ready on 8 nodes
 * of 2 cores instead of 27–92. An idle ffmpeg costs about 9 MiB of private memory.
 */
const SPARES_PER_KIND = 2;

/**
 * Idle ffmpeg processes per argument list, started ahead of need. Loading ffmpeg costs
 * about 40 ms of CPU; a play that finds a spare waiting on its stdin starts decoding at
 * once, which is most of a node's share of command-to-sound. A spare only reads stdin, so
 * it ends by itself when the node does (its pipe closes).
 */
class SpareDecoders {
  private readonly spares = new Map<string, Child[]>();

  take(bin: string, args: string[]): Child {
    const key = JSON.stringify([bin, args]);
    const waiting = this.spares.get(key) ?? [];
    setTimeout(() => this.refill(bin, args), SPARE_REFILL_MS).unref();
    for (let spare = waiting.shift(); spare; spare = waiting.shift()) {
      if (spare.exitCode !== null || spare.signalCode !== null) continue;
      spare.ref();
      for (const s of [spare.stdin, spare.stdout, spare.stderr] as unknown as { ref?: () => void }[]) s.ref?.();
      return spare;
    }
    return spawnFfmpeg(bin, args);
  }

  /** Makes sure the spares for these arguments are waiting. */
  refill(bin: string, args: string[]): void {
    const key = JSON.stringify([bin, args]);
    let waiting = this.spares.get(key);
    if (!waiting) this.spares.set(key, (waiting = []));
    const list = waiting;
    while (list.length < SPARES_PER_KIND) {
      const child = spawnFfmpeg(bin, args);
      const gone = () => {
        const i = list.indexOf(child);
        if (i >= 0) list.splice(i, 1);
      };
      child.on('error', gone);
      child.on('exit', gone);
      // An idle spare must not keep the node running.
      child.unref();
      for (const s of [child.stdin, child.stdout, child.stderr] as unknown as { unref?: () => void }[]) s.unref?.();
      list.push(child);
    }
  }
}

const spares = new SpareDecoders();

/** ffmpeg's arguments for one decode: forced demuxer, first audio stream, s16le at the asked rate and channels on stdout. */
function ffmpegArgs(format: string, input: string, sampleRate: number, channels: number): string[] {
  return [
    '-hide_banner', '-nostdin', '-loglevel', 'error',
    // Stop at the first broken frame instead of concealing it: a bad track is reported, not played.
    '-xerror',
    '-f', DEMUXER[format], '-i', input,
    '-map', '0:a:0', '-vn', '-sn', '-dn',
    '-af', `aresample=${sampleRate}:resampler=soxr:precision=28:internal_sample_fmt=fltp`,
    '-ac', String(channels),
    '-f', 's16le', '-c:a', 'pcm_s16le', 'pipe:1',
  ];
}

/**
 * Starts a spare ffmpeg for tracks of this format at this output rate, if none is
 * waiting, so the next play of such a track does not pay for loading ffmpeg (tens of ms
 * of CPU, hundreds when every node of a group starts one at once on a small machine).
 * Formats read from a spooled file (m4a) get none: their input is not a pipe.
 */
export function warmDecoder(format: string, sampleRate: number, channels: number, settings: FfmpegDecoderOptions = {}): void {
  if (!(format in DEMUXER) || NEEDS_SEEKABLE_INPUT.has(format)) return;
  spares.refill(settings.ffmpeg ?? 'ffmpeg', ffmpegArgs(format, 'pipe:0', sampleRate, channels));
}

class FfmpegPcmReader implements PcmReader {
  readonly sampleRate: number;
  readonly channels: number;
  private readonly format: string;
  private readonly frameBytes: number;
  private child?: Child;
  private spool?: string;
  private queue: Buffer[] = [];
  private queued = 0;
  /** Bytes still to drop before the first frame the caller asked for. */
  private skipBytes: number;
  /** Length of the whole decode in bytes as the file declares it (an MP3's LAME tag), or Infinity. */
  private limitBytes = Number.POSITIVE_INFINITY;
  /** Bytes ffmpeg has produced, from the start of the track. */
  private decodedBytes = 0;
  /** Frames the catalogue says the track has at the output rate; a decode well short of it is truncated. */
  private readonly expectedFrames?: number;
  private stdoutEnded = false;
  private exited = false;
  private failure?: Error;
  private closed = false;
  private stderr = '';
  private wake?: () => void;
  /** What this reader's ffmpeg was started with, so closing it can leave a spare behind. */
  private spareArgs?: { bin: string; args: string[] };
  private readonly background: boolean;

  constructor(
    private readonly bytes: Readable,
    options: DecodeOptions,
    private readonly settings: FfmpegDecoderOptions,
  ) {
    this.format = options.format;
    this.background = options.background ?? false;
    this.sampleRate = options.sampleRate;
    this.channels = options.channels;
    this.frameBytes = 2 * options.channels;
    this.skipBytes = Math.max(0, Math.floor(options.startFrame)) * this.frameBytes;
    if (options.durationSeconds !== undefined && options.durationSeconds > 0) this.expectedFrames = options.durationSeconds * options.sampleRate;
    // Never leave an error on the input stream unhandled, whatever happens below.
    bytes.on('error', (err) => this.fail(`reading the track's bytes failed: ${err.message}`));
    const problem = this.check(options);
    if (problem) {
      this.fail(problem);
      bytes.destroy();
      return;
    }
    void this.start().catch((err: Error) => this.fail(err.message));
  }

  private check(o: DecodeOptions): string | undefined {
    if (!(o.format in DEMUXER)) return `unknown format (expected one of ${Object.keys(DEMUXER).join(', ')})`;
    if (!Number.isInteger(o.sampleRate) || o.sampleRate < 8000 || o.sampleRate > 384000) return `bad output rate ${o.sampleRate}`;
    if (!Number.isInteger(o.channels) || o.channels < 1 || o.channels > 8) return `bad channel count ${o.channels}`;
    if (!Number.isFinite(o.startFrame) || o.startFrame < 0) return `bad start frame ${o.startFrame}`;
    return undefined;
  }

  private async start(): Promise<void> {
    let input = 'pipe:0';
    if (NEEDS_SEEKABLE_INPUT.has(this.format)) {
      const dir = await mkdtemp(join(this.settings.spoolDir ?? tmpdir(), 'firefly-decode-'));
      this.spool = dir;
      input = join(dir, `track.${this.format}`);
      await pipeline(this.bytes, createWriteStream(input));
      if (this.closed) return;
    }
    const args = ffmpegArgs(this.format, input, this.sampleRate, this.channels);
    const bin = this.settings.ffmpeg ?? 'ffmpeg';
    const spare = input === 'pipe:0' && !this.background;
    if (spare) this.spareArgs = { bin, args };
    const child = spare ? spares.take(bin, args) : spawnFfmpeg(bin, args);
    this.child = child;
    child.on('error', (err) => this.fail(`could not run ffmpeg (${err.message}); install Debian's ffmpeg package`));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s: string) => {
      this.stderr = (this.stderr + s).slice(-STDERR_KEEP);
    });
    child.stdout.on('data', (b: Buffer) => this.take(b));
    child.stdout.on('end', () => {
      this.stdoutEnded = true;
      this.settle();
    });
    child.on('close', (code, signal) => {
      this.exited = true;
      if (!this.closed && (code !== 0 || this.stderr.trim() !== '')) {
        this.fail(this.stderr.trim() ? lastLines(this.stderr) : `ffmpeg exited with ${signal ?? `code ${code}`}`);
      } else if (!this.closed) {
        this.checkLength();
      }
      this.settle();
    });
    // ffmpeg may stop reading early (a broken file): that is its error to report, not EPIPE's.
    child.stdin.on('error', () => {});
    if (input === 'pipe:0') this.feed(child.stdin);
    else child.stdin.end();
  }

  /** Pipes the track into ffmpeg, peeking at the head of an MP3 for its exact length. */
  private feed(stdin: Writable): void {
    let head: Buffer | undefined = this.format === 'mp3' ? Buffer.alloc(0) : undefined;
    this.bytes.on('data', (b: Buffer) => {
      if (head) {
        head = Buffer.concat([head, b]);
        if (head.length >= 64 * 1024) this.learnLength(head), (head = undefined);
      }
      if (!stdin.write(b)) {
        this.bytes.pause();
        stdin.once('drain', () => this.bytes.resume());
      }
    });
    this.bytes.on('end', () => {
      if (head) this.learnLength(head);
      stdin.end();
    });
  }

  private learnLength(head: Buffer): void {
    const len = mp3Length(head);
    if (len) this.limitBytes = Math.round((len.samples * this.sampleRate) / len.sampleRate) * this.frameBytes;
  }

  private take(b: Buffer): void {
    if (this.closed || this.failure) return;
    // Counted from the start of the track, before the skip to startFrame.
    if (this.decodedBytes + b.length > this.limitBytes) b = b.subarray(0, Math.max(0, this.limitBytes - this.decodedBytes));
    this.decodedBytes += b.length;
    if (this.skipBytes > 0) {
      const drop = Math.min(this.skipBytes, b.length);
      this.skipBytes -= drop;
      b = b.subarray(drop);
    }
    if (b.length === 0) return;
    this.queue.push(b);
    this.queued += b.length;
    if (this.queued >= HIGH_WATER_BYTES) this.child?.stdout.pause();
    this.notify();
  }

  /** A file cut short often decodes "cleanly" up to the cut: compare with the length it declares. */
  private checkLength(): void {
    const decoded = this.decodedBytes / this.frameBytes;
    const declared = this.limitBytes !== Number.POSITIVE_INFINITY ? this.limitBytes / this.frameBytes : this.expectedFrames;
    if (declared === undefined) return;
    const slack = Math.max(0.25 * this.sampleRate, 0.01 * declared);
    if (decoded < declared - slack) {
      const s = (f: number) => (f / this.sampleRate).toFixed(2);
      this.fail(`truncated: the data ends after ${s(decoded)} s of ${s(declared)} s`);
    }
  }

  private fail(reason: string): void {
    if (this.failure || this.closed) return;
    this.failure = new DecodeError(this.format, reason);
    this.queue = [];
    this.queued = 0;
    this.kill();
    this.notify();
  }

  private settle(): void {
    if (this.stdoutEnded && this.exited) this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private get done(): boolean {
    return this.stdoutEnded && this.exited;
  }

  async read(frames: number): Promise<Int16Array | null> {
    if (this.closed) return null;
    const want = Math.max(1, Math.floor(frames)) * this.frameBytes;
    for (;;) {
      if (this.failure) throw this.failure;
      if (this.queued >= want || (this.done && this.queued > 0)) break;
      if (this.done) return null;
      this.child?.stdout.resume();
      await new Promise<void>((resolve) => (this.wake = resolve));
      if (this.closed) return null;
    }
    // Whole frames only; a trailing partial frame (never expected from ffmpeg) is dropped.
    const n = Math.min(want, this.queued - (this.queued % this.frameBytes));
    if (n === 0) return null;
    const out = new Int16Array(n / 2);
    const view = Buffer.from(out.buffer);
    let filled = 0;
    while (filled < n) {
      const head = this.queue[0];
      const part = Math.min(head.length, n - filled);
      head.copy(view, filled, 0, part);
      filled += part;
      if (part === head.length) this.queue.shift();
      else this.queue[0] = head.subarray(part);
    }
    this.queued -= n;
    if (this.queued < HIGH_WATER_BYTES / 2 && !this.done) this.child?.stdout.resume();
    return out;
  }

  private kill(): void {
    const c = this.child;
    if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    if (!this.bytes.destroyed) this.bytes.destroy();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    this.queued = 0;
    const c = this.child;
    const exited = c && c.exitCode === null && c.signalCode === null ? new Promise<void>((r) => c.once('close', () => r())) : undefined;
    this.kill();
    this.notify();
    await exited;
    // A little later, so the spare's start-up does not compete with whatever comes next (a play's start).
    const spare = this.spareArgs;
    if (spare) setTimeout(() => spares.refill(spare.bin, spare.args), SPARE_IDLE_REFILL_MS).unref();
    if (this.spool) await rm(this.spool, { recursive: true, force: true });
  }
}

function lastLines(s: string): string {
  const lines = s.trim().split('\n').map((l) => l.replace(/^\[[^\]]*@ 0x[0-9a-f]+\]\s*/, '').trim()).filter(Boolean);
  return [...new Set(lines)].slice(-3).join('; ');
}
