import { monotonicMs } from '../../src/clock/local-clock.js';

/** A start a double made: position `positionMs` began sounding at machine-clock time `atMs`. */
export interface DoubleStart {
  atMs: number;
  positionMs: number;
  /** Track position 0's instant on the same clock: what the test compares with the group's. */
  originMs: number;
  url: string | null;
}

/**
 * A simulated speaker's playhead, on the machine's monotonic clock (the hub's clock too):
 * told to play (or to seek while playing), it sounds `startDelayMs` later, then advances
 * in real time.
 */
export class Playhead {
  state: 'idle' | 'paused' | 'buffering' | 'playing' = 'idle';
  private basePositionMs = 0;
  private startedAtMs = 0;
  private pending?: NodeJS.Timeout;
  readonly starts: DoubleStart[] = [];
  url: string | null = null;

  constructor(public startDelayMs: number) {}

  load(url: string, positionMs: number): void {
    this.cancel();
    this.url = url;
    this.basePositionMs = positionMs;
    this.state = 'paused';
  }

  positionMs(): number {
    if (this.state !== 'playing') return this.basePositionMs;
    return this.basePositionMs + (monotonicMs() - this.startedAtMs);
  }

  play(): void {
    if (this.state === 'playing' || this.state === 'buffering' || this.state === 'idle') return;
    this.begin(this.basePositionMs);
  }

  pause(): void {
    const p = this.positionMs();
    this.cancel();
    this.basePositionMs = p;
    if (this.state !== 'idle') this.state = 'paused';
  }

  seek(positionMs: number): void {
    const wasRunning = this.state === 'playing' || this.state === 'buffering';
    this.cancel();
    this.basePositionMs = positionMs;
    if (wasRunning) this.begin(positionMs);
  }

  stop(): void {
    this.cancel();
    this.state = 'idle';
    this.basePositionMs = 0;
  }

  private begin(positionMs: number): void {
    this.state = 'buffering';
    const atMs = monotonicMs() + this.startDelayMs;
    this.pending = setTimeout(() => {
      this.pending = undefined;
      this.state = 'playing';
      this.basePositionMs = positionMs;
      this.startedAtMs = atMs;
      this.starts.push({ atMs, positionMs, originMs: atMs - positionMs, url: this.url });
    }, this.startDelayMs);
  }

  private cancel(): void {
    clearTimeout(this.pending);
    this.pending = undefined;
    if (this.state === 'buffering') this.state = 'paused';
  }
}
