/**
 * Where a device that plays at a steady rate is, estimated from the local clock: for
 * outputs that cannot ask the device (the null output, ALSA through aplay). Playback
 * starts once `startFrames` are queued (as ALSA's start threshold does); running dry is
 * an underrun, after which it waits for `startFrames` again.
 */
export class PlayCursor {
  private written = 0;
  private played = 0;
  private running = false;
  private lastMs = 0;
  /** Underruns seen (the writer fell behind the device). */
  underruns = 0;

  constructor(
    /** Frames per second. */
    private readonly rate: number,
    private readonly startFrames: number,
  ) {}

  private advance(nowMs: number): void {
    if (this.running) {
      this.played += ((nowMs - this.lastMs) * this.rate) / 1000;
      if (this.played >= this.written) {
        this.played = this.written;
        this.running = false;
        this.underruns++;
      }
    }
    this.lastMs = nowMs;
  }

  /** Frames queued and not yet played. */
  delay(nowMs: number): number {
    this.advance(nowMs);
    return this.written - this.played;
  }

  wrote(frames: number, nowMs: number): void {
    this.advance(nowMs);
    this.written += frames;
    if (!this.running && this.written - this.played >= this.startFrames) {
      this.running = true;
      this.lastMs = nowMs;
    }
  }

  /** Milliseconds until `frames` more fit under `capacity` queued frames (0 if they fit now). */
  waitMs(frames: number, capacity: number, nowMs: number): number {
    const over = this.delay(nowMs) + frames - capacity;
    if (over <= 0 || !this.running) return 0;
    return (over * 1000) / this.rate;
  }

  /** Drops what is queued (flush). */
  reset(nowMs: number): void {
    this.advance(nowMs);
    this.played = this.written;
    this.running = false;
  }
}
