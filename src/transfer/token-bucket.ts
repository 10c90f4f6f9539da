/**
 * An upload cap: a token bucket kept as a virtual send time (GCRA), so concurrent
 * senders are served in the order they asked and the long-run rate never exceeds
 * `bytesPerSecond`. `burstBytes` may go out at once after a quiet spell; it should be at
 * least the largest chunk so a single chunk is never split by the cap.
 */
export class TokenBucket {
  /** When (performance.now() ms) the bytes reserved so far will all have been allowed out. */
  private tat = 0;
  private readonly bytesPerMs: number;
  private readonly burstMs: number;

  constructor(
    readonly bytesPerSecond: number,
    burstBytes: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(bytesPerSecond > 0)) throw new Error(`upload limit must be positive, got ${bytesPerSecond} bytes/s`);
    this.bytesPerMs = bytesPerSecond / 1000;
    this.burstMs = burstBytes / this.bytesPerMs;
  }

  /** Reserves `bytes` and returns how long (ms) the caller must wait before sending them. */
  reserve(bytes: number): number {
    const now = this.now();
    this.tat = Math.max(this.tat, now) + bytes / this.bytesPerMs;
    return Math.max(0, this.tat - now - this.burstMs);
  }

  /** Waits until `bytes` may be sent. */
  async take(bytes: number): Promise<void> {
    const wait = this.reserve(bytes);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
}
