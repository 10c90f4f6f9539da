/**
 * Which chunks the hub is sending to which node right now (or sent moments ago, before
 * the node's holdings say so). Downloaders learn it through Library.Sources and wait
 * for such a chunk from that peer instead of asking the hub for it again: that is what
 * makes each chunk leave a capped hub about once.
 */
export class TransitLog {
  /** chunk hash (hex) → node uuid → until when (ms) the chunk counts as on its way; Infinity while the call runs. */
  private readonly byChunk = new Map<string, Map<string, number>>();
  private timer?: NodeJS.Timeout;

  constructor(
    /** How long a sent chunk counts as "coming" while the node's holdings catch up. */
    private readonly graceMs = 15_000,
    private readonly now: () => number = Date.now,
  ) {}

  start(): Promise<void> {
    this.timer = setInterval(() => this.purge(), 5000);
    this.timer.unref();
    return Promise.resolve();
  }

  stop(): Promise<void> {
    clearInterval(this.timer);
    this.byChunk.clear();
    return Promise.resolve();
  }

  /** A Fetch call from `node` for `hashes` begins. */
  begin(node: string, hashes: readonly Buffer[]): { sent(hash: Buffer): void; skipped(hash: Buffer): void; end(): void } {
    const pending = new Set<string>();
    for (const h of hashes) {
      const key = h.toString('hex');
      pending.add(key);
      let nodes = this.byChunk.get(key);
      if (!nodes) this.byChunk.set(key, (nodes = new Map()));
      nodes.set(node, Infinity);
    }
    return {
      sent: (hash) => {
        const key = hash.toString('hex');
        pending.delete(key);
        this.byChunk.get(key)?.set(node, this.now() + this.graceMs);
      },
      skipped: (hash) => {
        const key = hash.toString('hex');
        pending.delete(key);
        const nodes = this.byChunk.get(key);
        if (nodes?.get(node) !== Infinity) return;
        nodes.delete(node);
        if (nodes.size === 0) this.byChunk.delete(key);
      },
      end: () => {
        for (const key of pending) {
          const nodes = this.byChunk.get(key);
          if (nodes?.get(node) !== Infinity) continue;
          nodes.delete(node);
          if (nodes.size === 0) this.byChunk.delete(key);
        }
      },
    };
  }

  /** Is the chunk on its way to `node`? */
  coming(hashHex: string, node: string): boolean {
    const until = this.byChunk.get(hashHex)?.get(node);
    return until !== undefined && until > this.now();
  }

  /**
   * Every node the chunk is on its way to: still being sent, or sent less than
   * `sentWithinMs` ago (default: the whole grace).
   */
  comingTo(hashHex: string, sentWithinMs = this.graceMs): string[] {
    const nodes = this.byChunk.get(hashHex);
    if (!nodes) return [];
    const cutoff = this.now() + this.graceMs - sentWithinMs;
    return [...nodes].filter(([, until]) => until > cutoff).map(([node]) => node);
  }

  /** Every chunk on its way somewhere, with the nodes it is going to. */
  *active(): IterableIterator<[hashHex: string, nodes: string[]]> {
    const now = this.now();
    for (const [key, nodes] of this.byChunk) {
      const to = [...nodes].filter(([, until]) => until > now).map(([node]) => node);
      if (to.length > 0) yield [key, to];
    }
  }

  /** A node went away: nothing is on its way to it any more. */
  forget(node: string): void {
    for (const [key, nodes] of this.byChunk) {
      nodes.delete(node);
      if (nodes.size === 0) this.byChunk.delete(key);
    }
  }

  private purge(): void {
    const now = this.now();
    for (const [key, nodes] of this.byChunk) {
      for (const [node, until] of nodes) if (until <= now) nodes.delete(node);
      if (nodes.size === 0) this.byChunk.delete(key);
    }
  }
}

/**
 * How often the hub answered one downloader `elsewhere` for one chunk. A downloader told
 * so `max` times gets the chunk from the hub the next time it asks: it evidently cannot
 * reach (or does not trust) the peer that has it, and must not wait on it for ever.
 * Counts are forgotten `keepMs` after the last deflection.
 */
export class DeflectionLimiter {
  private readonly counts = new Map<string, { count: number; at: number }>();

  constructor(
    private readonly max: number,
    private readonly keepMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** May the hub answer `elsewhere` to `node` for this chunk once more? Counts the answer if so. */
  take(node: string, hashHex: string): boolean {
    const key = `${node} ${hashHex}`;
    const now = this.now();
    const d = this.counts.get(key);
    const count = d && d.at >= now - this.keepMs ? d.count : 0;
    if (count >= this.max) return false;
    this.counts.set(key, { count: count + 1, at: now });
    return true;
  }

  /** Drops counts older than keepMs (call now and then). */
  purge(): void {
    const old = this.now() - this.keepMs;
    for (const [k, d] of this.counts) if (d.at < old) this.counts.delete(k);
  }

  clear(): void {
    this.counts.clear();
  }
}
