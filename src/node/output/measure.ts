import { createWriteStream, type WriteStream } from 'node:fs';
import { monotonicMs } from '../../clock/local-clock.js';
import type { AudioOutput, FrameTag } from './output.js';

/**
 * The measurement output: a virtual sound card for tests and benchmarks. It consumes
 * frames in real time — sampleRate × (1 + rateErrorPpm·1e-6) frames per true second,
 * true time being the machine's monotonic clock, because a real card's crystal does not
 * follow the node's clock — from a small buffer that pushes back on the writer, reports
 * its delay as a real card does (frames queued), and records when frames play: every
 * frame whose track position is a multiple of `markEvery`, and the first frame after
 * every change of session or track, one JSON line each in `measureFile`:
 *
 *   {"session":"3f2a…","entryId":4,"trackFrame":48000,"trueMs":123456.789}
 *
 * Running out of frames plays silence (an underrun), as a card does.
 */
export interface MeasureOutputOptions {
  sampleRate: number;
  channels: number;
  /** Buffer the writer may fill ahead of the play position (ms). */
  bufferMs: number;
  /** How far the card's crystal is off nominal (ppm); simulation only. */
  rateErrorPpm: number;
  measureFile?: string;
  /** Frames between recorded marks (default a tenth of a second). */
  markEvery?: number;
}

interface Segment {
  /** Stream index of the segment's first frame. */
  start: number;
  frames: number;
  tag: FrameTag;
}

export class MeasureOutput implements AudioOutput {
  readonly kind = 'measure' as const;
  readonly sampleRate: number;
  readonly channels: number;
  /** Frames per true millisecond. */
  private readonly rate: number;
  private readonly capacity: number;
  private readonly markEvery: number;
  /** Stream positions (frames, fractional for the play position). */
  private written = 0;
  private played = 0;
  private lastTrueMs = 0;
  private segments: Segment[] = [];
  private lastKey = '';
  private file?: WriteStream;
  private pending: string[] = [];
  private flushTimer?: NodeJS.Timeout;
  /** Frames of silence played because the writer fell behind. */
  underrunFrames = 0;

  constructor(private readonly options: MeasureOutputOptions) {
    this.sampleRate = options.sampleRate;
    this.channels = options.channels;
    this.rate = (options.sampleRate * (1 + options.rateErrorPpm * 1e-6)) / 1000;
    this.capacity = Math.max(1, Math.round((options.bufferMs * options.sampleRate) / 1000));
    this.markEvery = options.markEvery ?? Math.round(options.sampleRate / 10);
  }

  async open(): Promise<void> {
    this.lastTrueMs = monotonicMs();
    if (this.options.measureFile && !this.file) {
      this.file = createWriteStream(this.options.measureFile, { flags: 'a' });
      this.flushTimer = setInterval(() => this.flushRecords(), 200);
      this.flushTimer.unref();
    }
  }

  /** Whole frames of underrun so far. */
  underruns(): number {
    this.advance(monotonicMs());
    return Math.floor(this.underrunFrames);
  }

  delayFrames(): number {
    this.advance(monotonicMs());
    return this.written - this.played;
  }

  async write(pcm: Int16Array, tag: FrameTag): Promise<void> {
    const frames = Math.floor(pcm.length / this.channels);
    if (frames === 0) return;
    this.advance(monotonicMs());
    this.segments.push({ start: this.written, frames, tag });
    this.written += frames;
    // Back-pressure: resolve once the card has room again, as a blocking write would.
    for (;;) {
      const over = this.written - this.played - this.capacity;
      if (over <= 0) return;
      await new Promise((r) => setTimeout(r, Math.max(1, over / this.rate)));
      this.advance(monotonicMs());
    }
  }

  async flush(): Promise<void> {
    this.advance(monotonicMs());
    this.written = this.played;
    this.segments = [];
  }

  async close(): Promise<void> {
    clearInterval(this.flushTimer);
    this.flushTimer = undefined;
    this.advance(monotonicMs());
    this.flushRecords();
    const file = this.file;
    this.file = undefined;
    if (file) await new Promise<void>((resolve) => file.end(() => resolve()));
  }

  /** Plays frames up to true time `nowMs`, recording the marks that went by. */
  private advance(nowMs: number): void {
    const elapsed = Math.max(0, (nowMs - this.lastTrueMs) * this.rate);
    const from = this.played;
    const available = this.written - from;
    // Compared before adding: from + elapsed − from need not equal elapsed in floating point.
    const to = elapsed >= available ? this.written : from + elapsed;
    if (to > from) this.record(from, to, this.lastTrueMs);
    if (elapsed > available) this.underrunFrames += elapsed - available;
    this.played = to;
    this.lastTrueMs = nowMs;
  }

  /** Frames [from, to) of the stream began playing at `fromMs` and went on at the card's rate. */
  private record(from: number, to: number, fromMs: number): void {
    while (this.segments.length > 0) {
      const seg = this.segments[0];
      const end = seg.start + seg.frames;
      const lo = Math.max(from, seg.start);
      const hi = Math.min(to, end);
      if (hi > lo && this.file && seg.tag.trackFrame >= 0) {
        const { tag } = seg;
        const key = `${tag.session}/${tag.entryId ?? ''}`;
        // Frame i of the segment plays when the play position reaches seg.start + i.
        const iFirst = Math.max(0, Math.ceil(lo - seg.start - 1e-9));
        const iEnd = hi - seg.start;
        const stamp = (i: number) => fromMs + (seg.start + i - from) / this.rate;
        if (iFirst < iEnd) {
          const changed = key !== this.lastKey && iFirst === 0;
          if (changed) this.mark(tag, tag.trackFrame, stamp(0));
          let i = Math.ceil((tag.trackFrame + iFirst) / this.markEvery) * this.markEvery - tag.trackFrame;
          for (; i < iEnd; i += this.markEvery) if (!(changed && i === 0)) this.mark(tag, tag.trackFrame + i, stamp(i));
          this.lastKey = key;
        }
      }
      if (end > to) return;
      this.segments.shift();
    }
  }

  private mark(tag: FrameTag, trackFrame: number, trueMs: number): void {
    this.pending.push(JSON.stringify({ session: tag.session, entryId: tag.entryId, trackFrame, trueMs: Math.round(trueMs * 1000) / 1000 }));
  }

  private flushRecords(): void {
    if (!this.file || this.pending.length === 0) return;
    this.file.write(`${this.pending.join('\n')}\n`);
    this.pending = [];
  }
}
