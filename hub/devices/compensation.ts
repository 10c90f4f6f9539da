/**
 * Latency compensation for speakers that cannot be told to start at an instant (Cast,
 * Sonos): pure scheduling math, no I/O. A group's timeline says track position
 * `positionMs` plays at hub time `atHubMs`; a device sounds `delay` ms after it is told to
 * play (or to seek while playing), so the hub tells it that much early, and measures how
 * far behind the timeline it really sounds ("lag") to learn the delay and to correct.
 */

/** Track position `positionMs` plays at hub time `atHubMs`. */
export interface Timeline {
  atHubMs: number;
  positionMs: number;
}

export function positionAt(t: Timeline, hubMs: number): number {
  return t.positionMs + (hubMs - t.atHubMs);
}

export function hubTimeOf(t: Timeline, positionMs: number): number {
  return t.atHubMs + (positionMs - t.positionMs);
}

export interface StartPlan {
  /** When to send play (or, while playing, the seek). */
  issueAtMs: number;
  /** The position the device must be at when it is told: where it starts sounding after its delay. */
  positionMs: number;
}

/**
 * When to tell a device to play, and from where, so that after `delayMs` it sounds in step
 * with the timeline. When that instant is still `leadMs` away, the device starts at the
 * timeline's own position; otherwise it starts later, further into the track, at a
 * position its seek can reach (`granularityMs`: Sonos seeks in whole seconds).
 */
export function planStart(t: Timeline, nowMs: number, delayMs: number, options: { leadMs: number; granularityMs: number }): StartPlan {
  const ideal = t.atHubMs - delayMs;
  const aligned = options.granularityMs <= 1 || t.positionMs % options.granularityMs === 0;
  if (ideal >= nowMs + options.leadMs && aligned) return { issueAtMs: ideal, positionMs: t.positionMs };
  const g = Math.max(1, options.granularityMs);
  const earliest = Math.max(ideal, nowMs + options.leadMs);
  const positionMs = Math.max(0, Math.ceil(positionAt(t, earliest + delayMs) / g) * g);
  return { issueAtMs: hubTimeOf(t, positionMs) - delayMs, positionMs };
}

/**
 * One position reading: during the request (sent at `sentMs`, answered at `receivedMs`,
 * hub clock) the device's position was in [loMs, hiMs) — a point for Cast (hi = lo), a
 * whole second for Sonos (its position info has no fractions).
 */
export interface PositionReading {
  sentMs: number;
  receivedMs: number;
  loMs: number;
  hiMs: number;
}

/**
 * How far behind the timeline a playing device sounds (lag, ms; negative: ahead), as an
 * interval narrowed by every reading: a reading bounds the lag to
 * (P(sent) − hi, P(received) − lo], and the device plays at the timeline's rate, so the
 * true lag lies in the intersection. Coarse readings (Sonos' whole seconds) taken at many
 * phases narrow it to about a round trip. A reading that contradicts the others (the device
 * stalled or jumped) starts the interval again.
 */
export class LagBounds {
  private lo = -Infinity;
  private hi = Infinity;
  private count = 0;

  constructor(private timeline: Timeline) {}

  add(r: PositionReading): void {
    const lo = positionAt(this.timeline, r.sentMs) - Math.max(r.hiMs, r.loMs + 0.001);
    const hi = positionAt(this.timeline, r.receivedMs) - r.loMs;
    const nlo = Math.max(this.lo, lo);
    const nhi = Math.min(this.hi, hi);
    if (nlo > nhi) {
      this.lo = lo;
      this.hi = hi;
      this.count = 1;
      return;
    }
    this.lo = nlo;
    this.hi = nhi;
    this.count++;
  }

  /** The middle of the interval, once it is known at all. */
  get estimateMs(): number | null {
    return Number.isFinite(this.lo) && Number.isFinite(this.hi) ? (this.lo + this.hi) / 2 : null;
  }

  get widthMs(): number {
    return this.hi - this.lo;
  }

  get readings(): number {
    return this.count;
  }
}

/**
 * A device's start delay: the median of its recent measurements (robust to one odd start),
 * seeded by a remembered value or a default until it has measured any. Fine measurements
 * (a narrow lag interval) outvote coarse ones: once there is one, coarse ones are ignored.
 */
export class StartDelayEstimate {
  private readonly samples: { ms: number; fine: boolean }[] = [];

  constructor(
    private readonly initialMs: number,
    private readonly keep = 7,
  ) {}

  get valueMs(): number {
    const fine = this.samples.filter((s) => s.fine);
    const use = (fine.length > 0 ? fine : this.samples).map((s) => s.ms).sort((a, b) => a - b);
    if (use.length === 0) return this.initialMs;
    const mid = use.length >> 1;
    return use.length % 2 ? use[mid] : (use[mid - 1] + use[mid]) / 2;
  }

  get measured(): boolean {
    return this.samples.length > 0;
  }

  /** The device was told `assumedMs` early and measured `lagMs` behind: its delay is their sum. */
  observe(assumedMs: number, lagMs: number, fine = true): void {
    this.samples.push({ ms: Math.min(20_000, Math.max(0, assumedMs + lagMs)), fine });
    if (this.samples.length > this.keep) this.samples.shift();
  }
}
