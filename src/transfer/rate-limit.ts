/**
 * Per-client rate limits: one token bucket per key (an MQTT client, a peer address),
 * `perSecond` sustained with bursts up to `burst`. Over the limit a request is refused,
 * never queued: a flooding client must not make the hub buffer its flood.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    readonly perSecond: number,
    readonly burst: number = Math.max(1, perSecond * 2),
    /** Most keys tracked at once: past it the stalest are forgotten (a spoofed-key flood cannot grow memory). */
    private readonly maxKeys = 10_000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Takes one token for `key`; false when the key is over its rate. A perSecond of 0 means no limit. */
  allow(key: string, cost = 1): boolean {
    if (this.perSecond <= 0) return true;
    const now = this.now();
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
      b = { tokens: this.burst, at: now };
    } else {
      this.buckets.delete(key);
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond);
      b.at = now;
    }
    // Re-inserted: the map's order is least recently seen first.
    this.buckets.set(key, b);
    if (b.tokens < cost) return false;
    b.tokens -= cost;
    return true;
  }

  forget(key: string): void {
    this.buckets.delete(key);
  }
}
