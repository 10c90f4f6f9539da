import type { HubClock } from './hub-clock.js';

/**
 * One four-timestamp exchange: the node sends at t1 (its LocalClock), the hub receives
 * at t2 and replies at t3 (the hub's clock), the node receives the reply at t4. All ms.
 */
export interface ClockSample {
  t1: number;
  t2: number;
  t3: number;
  t4: number;
}

/** How good the current estimate is; what a node reports in its heartbeats. */
export interface ClockEstimate {
  synced: boolean;
  /** hub − local (ms) at the local time asked for; null before the first usable sample. */
  offsetMs: number | null;
  /** How much faster (+) the hub's clock runs than the local one, in parts per million. */
  driftPpm: number | null;
  /** The smallest round trip in the window (ms): the best path to the hub. */
  rttMs: number | null;
  /** Error bound of the offset (ms): half the width left between the two envelopes. */
  errorMs: number | null;
  /** Median round trip (of the last 600) minus the smallest (ms): how noisy the path is. */
  jitterMs: number | null;
  /** Samples in the window. */
  samples: number;
}

export interface ClockEstimatorOptions {
  /** Samples older than this (local ms before the newest) leave the window. */
  windowMs: number;
  /** At most this many samples are kept (the oldest go first). */
  maxSamples: number;
  /** Slopes searched: the clocks never disagree by more than this (ppm). */
  maxDriftPpm: number;
  /** Samples with a longer round trip are dropped outright (ms). */
  maxRttMs: number;
  /**
   * Synced once this many samples are in, they span syncSpanMs (the drift is read, not
   * assumed: before that a node 100 ppm off was still 300 µs out) and the error bound is
   * at most syncErrorMs. A node's player says ready only once its clock is synced.
   */
  minSamples: number;
  syncSpanMs: number;
  syncErrorMs: number;
  /**
   * Once synced, a change of the estimate is applied gradually at this rate (ppm of
   * elapsed local time), so the mapping never jumps under a playing schedule...
   */
  slewPpm: number;
  /** ...unless it is larger than this (ms): then it is stepped, and the player re-syncs. */
  stepMs: number;
  /**
   * A sample that contradicts the estimate by more than this (ms) beyond its own round
   * trip is an outlier and is left out; this many in a row mean the hub's clock changed
   * (another machine, a restart) and the estimator starts over.
   */
  outlierMs: number;
  resetAfterOutliers: number;
  /**
   * Once synced, the fit is redone at most this often (ms of local time): it reads the
   * whole window (12,000 samples at 20 a second), about a millisecond of CPU each time.
   */
  refitMs: number;
  /** How the drift is read from the exchanges (fitOffsetLine). */
  fit: FitTuning;
}

/** The drift's two readings in fitOffsetLine: the channel's, with its cost, and the fast exchanges' least-squares slope. */
export interface FitTuning {
  /** Width (ms) a drift costs per unit of slope, so an undetermined drift stays near zero. */
  driftCostMs: number;
  /** Points this close (ms) to their envelope count as fast exchanges for the drift... */
  tailMs: number;
  /** ...and the drift is taken from them once this many each way span this long (ms). */
  tailMinPoints: number;
  tailMinSpanMs: number;
}

/**
 * driftCostMs was 3000 while nodes exchanged 40 times a second: it held the drift at zero
 * for the first 5–7 s, during which a node 100 ppm off ramped 300–450 µs away. At 200
 * exchanges a second the channel reads the drift within 2.5 s, and 300 lets it (replayed
 * on recorded exchanges: nodes within 86 µs of each other from 2.5 s on, against 389 µs
 * with 3000).
 */
export const DEFAULT_FIT: FitTuning = { driftCostMs: 300, tailMs: 0.5, tailMinPoints: 10, tailMinSpanMs: 10_000 };

export const DEFAULT_ESTIMATOR_OPTIONS: ClockEstimatorOptions = {
  windowMs: 10 * 60_000,
  maxSamples: 12_000,
  maxDriftPpm: 500,
  maxRttMs: 1000,
  minSamples: 10,
  syncSpanMs: 2500,
  syncErrorMs: 1,
  slewPpm: 500,
  stepMs: 5,
  outlierMs: 50,
  resetAfterOutliers: 5,
  refitMs: 250,
  fit: DEFAULT_FIT,
};

/** hub − local as a line in local time: offset(L) = a + b · (L − ref). */
interface Line {
  ref: number;
  a: number;
  b: number;
}

/** What the envelopes give for one slope: the offset line and the width left between them. */
interface Fit {
  line: Line;
  width: number;
}

/**
 * Estimates the mapping from a node's LocalClock to the hub's clock (offset and drift)
 * from four-timestamp exchanges kept in a sliding window; see fitOffsetLine for how.
 * Pure: no I/O, no timers; time only comes in with the samples.
 *
 * Implements HubClock: the served mapping follows the estimate continuously. Once
 * synced, a change of the estimate becomes a correction that slews away at a bounded
 * rate, so the player, which corrects by single frames, never sees a jump; only an
 * error beyond stepMs is stepped (the player then re-syncs hard).
 */
export class ClockEstimator implements HubClock {
  readonly options: ClockEstimatorOptions;
  private samples: ClockSample[] = [];
  private fit?: Fit;
  private isSynced = false;
  private outliersInARow = 0;
  /** The served mapping: the estimate plus a correction that decays to zero. */
  private served?: { line: Line; correction: number; since: number };
  private counts = { accepted: 0, outliers: 0, resets: 0 };

  constructor(options: Partial<ClockEstimatorOptions> = {}) {
    this.options = { ...DEFAULT_ESTIMATOR_OPTIONS, ...options, fit: { ...DEFAULT_FIT, ...options.fit } };
  }

  /** Feeds one exchange; returns false if it was refused (malformed, too slow, outlier). */
  add(sample: ClockSample): boolean {
    const { t1, t2, t3, t4 } = sample;
    if (![t1, t2, t3, t4].every(Number.isFinite)) return false;
    const rtt = t4 - t1 - (t3 - t2);
    if (t4 < t1 || t3 < t2 || rtt < 0 || rtt > this.options.maxRttMs) return false;
    if (this.fit && this.violation(sample) > this.options.outlierMs) {
      this.counts.outliers++;
      if (++this.outliersInARow < this.options.resetAfterOutliers) return false;
      this.reset();
      this.counts.resets++;
    }
    this.outliersInARow = 0;
    this.counts.accepted++;
    this.samples.push(sample);
    this.trim(t4);
    if (!this.isSynced || this.served === undefined || t4 - this.served.since >= this.options.refitMs) this.refit(t4);
    return true;
  }

  /** Forgets everything (e.g. the hub's clock changed). */
  reset(): void {
    this.samples = [];
    this.fit = undefined;
    this.served = undefined;
    this.isSynced = false;
    this.outliersInARow = 0;
  }

  get synced(): boolean {
    return this.isSynced;
  }

  get errorMs(): number {
    return this.isSynced && this.fit ? this.fit.width / 2 : Infinity;
  }

  /** Counters since construction: accepted samples, outliers left out, resets. */
  stats(): { accepted: number; outliers: number; resets: number } {
    return { ...this.counts };
  }

  toHub(localMs: number): number {
    const s = this.served;
    if (!s) return localMs;
    return localMs + s.line.a + s.line.b * (localMs - s.line.ref) + this.correctionAt(localMs);
  }

  toLocal(hubMs: number): number {
    const s = this.served;
    if (!s) return hubMs;
    const { ref, a, b } = s.line;
    // hub = ref + x + a + b·x + c(ref + x), with x = local − ref; c is piecewise linear
    // (constant, then slewing to zero, then zero) and the whole is increasing: exactly
    // one piece holds the answer.
    const h = hubMs - ref - a;
    const c0 = s.correction;
    const rate = this.options.slewPpm * 1e-6 * Math.sign(c0);
    const xEnd = c0 === 0 ? s.since - ref : s.since - ref + Math.abs(c0) / (this.options.slewPpm * 1e-6);
    const xZero = h / (1 + b);
    if (xZero >= xEnd) return ref + xZero;
    const xConst = (h - c0) / (1 + b);
    if (xConst <= s.since - ref) return ref + xConst;
    // c(x) = c0 − rate·(x − (since − ref))
    return ref + (h - c0 - rate * (s.since - ref)) / (1 + b - rate);
  }

  /** The estimate as reported, with the offset (hub − local) at `localMs`. */
  quality(localMs: number): ClockEstimate {
    const fit = this.fit;
    const rtt = (s: ClockSample) => s.t4 - s.t1 - (s.t3 - s.t2);
    let minRtt = Infinity;
    for (const s of this.samples) minRtt = Math.min(minRtt, rtt(s));
    // The median of the last 600 (half a minute): asked every heartbeat, it need not sort the whole window.
    const recent = this.samples.slice(-600).map(rtt).sort((x, y) => x - y);
    return {
      synced: this.isSynced,
      offsetMs: this.served ? this.toHub(localMs) - localMs : null,
      driftPpm: fit ? fit.line.b * 1e6 : null,
      rttMs: recent.length ? minRtt : null,
      errorMs: fit ? fit.width / 2 : null,
      jitterMs: recent.length ? recent[recent.length >> 1] - minRtt : null,
      samples: this.samples.length,
    };
  }

  private correctionAt(localMs: number): number {
    const s = this.served!;
    const c0 = s.correction;
    if (c0 === 0 || localMs <= s.since) return c0;
    const decayed = Math.abs(c0) - this.options.slewPpm * 1e-6 * (localMs - s.since);
    return decayed <= 0 ? 0 : Math.sign(c0) * decayed;
  }

  /** How far (ms) a sample falls on the wrong side of the current estimate's envelopes. */
  private violation(s: ClockSample): number {
    const { line } = this.fit!;
    const up = s.t2 - s.t1 - (line.a + line.b * (s.t1 - line.ref));
    const down = line.a + line.b * (s.t4 - line.ref) - (s.t3 - s.t4);
    const margin = this.fit!.width / 2;
    return Math.max(-up - margin, -down - margin, 0);
  }

  private trim(now: number): void {
    const { windowMs, maxSamples } = this.options;
    let drop = Math.max(0, this.samples.length - maxSamples);
    while (drop < this.samples.length && this.samples[drop].t4 < now - windowMs) drop++;
    if (drop) this.samples.splice(0, drop);
  }

  private refit(now: number): void {
    const fit = fitOffsetLine(this.samples, now, this.options.maxDriftPpm * 1e-6, this.options.fit);
    this.fit = fit;
    const wasSynced = this.isSynced;
    const span = this.samples.length > 0 ? now - this.samples[0].t1 : 0;
    if (!wasSynced && this.samples.length >= this.options.minSamples && span >= this.options.syncSpanMs && fit.width / 2 <= this.options.syncErrorMs) this.isSynced = true;

    // Keep the served mapping continuous at `now`: the difference to the new estimate
    // becomes a correction that slews away, unless it is too big to wait for.
    const previous = this.served;
    let correction = 0;
    if (previous && wasSynced) {
      const before = this.toHub(now) - now;
      const after = fit.line.a + fit.line.b * (now - fit.line.ref);
      if (Math.abs(before - after) <= this.options.stepMs) correction = before - after;
    }
    this.served = { line: fit.line, correction, since: now };
  }
}

/**
 * The offset line (hub − local against local time, relative to `ref`) for samples.
 *
 * Every exchange bounds the line from both sides, since a delay is never negative: the
 * "up" point (t1, t2 − t1) lies above it by the delay up, the "down" point (t4, t3 − t4)
 * below it by the delay down. For a candidate drift (slope), the tightest bounds leave a
 * channel; the line is the middle of the widest channel. Only the fastest exchanges
 * touch the bounds, so slow packets cost nothing, and the channel closes like 1/N (an
 * average would only like 1/√N).
 *
 * While the window is short the drift is poorly determined (a 10 s window with 20 ms of
 * jitter cannot tell 0 from 100 ppm), so a drift costs a little width (driftCostMs per
 * unit of slope): an undetermined drift stays near zero instead of running to the edge.
 * The width is concave in the slope (a minimum of lines minus a maximum of lines, minus
 * |slope|·cost), so a golden-section search finds its maximum.
 *
 * That slope rests on the one or two fastest exchanges each way, and moves whenever a new
 * record-fast one arrives; between those, a slope a few ppm off ramps the offset away by
 * tens of µs (seen replaying the sync benchmark's recorded exchanges: errors of
 * 30–130 µs in ramps). So the drift is then taken from all the fast exchanges (tailSlope)
 * and the offset is the middle of the channel at that slope; replayed on the same
 * recording, the nodes' clocks agreed within 54 µs (p99) 30–60 s after the start instead
 * of 134 µs, and within 36 µs instead of 58 µs in the next minute.
 */
export function fitOffsetLine(samples: readonly ClockSample[], ref: number, maxSlope: number, tuning: FitTuning = DEFAULT_FIT): Fit {
  const { driftCostMs } = tuning;
  const n = samples.length;
  const ux = new Float64Array(n);
  const uy = new Float64Array(n);
  const dx = new Float64Array(n);
  const dy = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const s = samples[i];
    ux[i] = s.t1 - ref;
    uy[i] = s.t2 - s.t1;
    dx[i] = s.t4 - ref;
    dy[i] = s.t3 - s.t4;
  }
  // Only points on the hulls can be the tightest bound for some slope: the top envelope
  // is the lower hull of the up points, the bottom one the upper hull of the down points.
  // The window may hold thousands of samples; the hulls, a few dozen.
  const up = hull(ux, uy, -1);
  const down = hull(dx, dy, 1);
  const envelopes = (b: number): { top: number; bottom: number } => {
    let top = Infinity;
    let bottom = -Infinity;
    for (let k = 0; k < up.length; k++) {
      const i = up[k];
      const u = uy[i] - b * ux[i];
      if (u < top) top = u;
    }
    for (let k = 0; k < down.length; k++) {
      const i = down[k];
      const d = dy[i] - b * dx[i];
      if (d > bottom) bottom = d;
    }
    return { top, bottom };
  };
  const b0 = maximise((slope) => {
    const e = envelopes(slope);
    return e.top - e.bottom - driftCostMs * Math.abs(slope);
  }, -maxSlope, maxSlope);
  // The envelopes rest on the one or two fastest exchanges each way, so their slope
  // moves with every new record-fast exchange. The drift is better measured by all the
  // fast ones: a least-squares slope through the points near either envelope (each set
  // with its own intercept). The offset is then still the middle of the channel.
  const tail = tailSlope(ux, uy, dx, dy, b0, envelopes(b0), maxSlope, tuning);
  let b = b0;
  let e = envelopes(b0);
  if (tail !== undefined) {
    const t = envelopes(tail);
    // A slope the fast exchanges contradict (no channel left) is not taken.
    if (t.top >= t.bottom) {
      b = tail;
      e = t;
    }
  }
  return { line: { ref, a: (e.top + e.bottom) / 2, b }, width: Math.max(0, e.top - e.bottom) };
}

/**
 * Indices of the points ordered by x (then y). The samples come nearly in order (replies
 * overtake each other by at most a round trip), so an insertion sort does it in about
 * one pass; a window in another order is sorted the general way.
 */
function sortedIndices(x: Float64Array, y: Float64Array): Uint32Array {
  const n = x.length;
  const order = new Uint32Array(n);
  const before = (i: number, j: number) => x[i] < x[j] || (x[i] === x[j] && y[i] < y[j]);
  let shifts = 0;
  for (let k = 0; k < n; k++) {
    let m = k;
    while (m > 0 && before(k, order[m - 1])) {
      order[m] = order[m - 1];
      m--;
      if (++shifts > 8 * n) return Uint32Array.from(Array.from(x.keys()).sort((i, j) => x[i] - x[j] || y[i] - y[j]));
    }
    order[m] = k;
  }
  return order;
}

/**
 * The least-squares slope through the up points within tailMs of the top envelope and
 * the down points within tailMs of the bottom one (slope `b0`), each set with its own
 * intercept; undefined while there are too few of them or they span too short a time.
 */
function tailSlope(ux: Float64Array, uy: Float64Array, dx: Float64Array, dy: Float64Array, b0: number, e: { top: number; bottom: number }, maxSlope: number, tuning: FitTuning): number | undefined {
  const { tailMs, tailMinPoints, tailMinSpanMs } = tuning;
  let num = 0;
  let den = 0;
  const side = (x: Float64Array, y: Float64Array, near: (i: number) => boolean): boolean => {
    let n = 0;
    let sx = 0;
    let sy = 0;
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < x.length; i++) {
      if (!near(i)) continue;
      n++;
      sx += x[i];
      sy += y[i];
      lo = Math.min(lo, x[i]);
      hi = Math.max(hi, x[i]);
    }
    if (n < tailMinPoints || hi - lo < tailMinSpanMs) return false;
    const mx = sx / n;
    const my = sy / n;
    for (let i = 0; i < x.length; i++) {
      if (!near(i)) continue;
      num += (x[i] - mx) * (y[i] - my);
      den += (x[i] - mx) ** 2;
    }
    return true;
  };
  const up = side(ux, uy, (i) => uy[i] - b0 * ux[i] - e.top < tailMs);
  const down = side(dx, dy, (i) => e.bottom - (dy[i] - b0 * dx[i]) < tailMs);
  if (!up || !down || den <= 0) return undefined;
  return Math.max(-maxSlope, Math.min(maxSlope, num / den));
}

/**
 * Indices of the lower (side −1) or upper (side 1) convex hull of the points (x[i], y[i])
 * (Andrew's monotone chain; the points need not be sorted: samples arrive in order of
 * their send time, the down points' order can differ by a round trip).
 */
function hull(x: Float64Array, y: Float64Array, side: 1 | -1): number[] {
  const order = sortedIndices(x, y);
  const out: number[] = [];
  for (const i of order) {
    while (out.length >= 2) {
      const a = out[out.length - 2];
      const b = out[out.length - 1];
      // Cross product of (b − a) and (i − a): for the lower hull b must lie strictly below the chord a→i.
      const cross = (x[b] - x[a]) * (y[i] - y[a]) - (y[b] - y[a]) * (x[i] - x[a]);
      if (side * cross >= 0) out.pop();
      else break;
    }
    out.push(i);
  }
  return out;
}

/** The maximum of a concave function on [lo, hi] (golden-section search, to 1e-9). */
function maximise(f: (x: number) => number, lo: number, hi: number): number {
  const g = (Math.sqrt(5) - 1) / 2;
  let x1 = hi - g * (hi - lo);
  let x2 = lo + g * (hi - lo);
  let f1 = f(x1);
  let f2 = f(x2);
  while (hi - lo > 1e-9) {
    if (f1 < f2) {
      lo = x1;
      x1 = x2;
      f1 = f2;
      x2 = lo + g * (hi - lo);
      f2 = f(x2);
    } else {
      hi = x2;
      x2 = x1;
      f2 = f1;
      x1 = hi - g * (hi - lo);
      f1 = f(x1);
    }
  }
  return (lo + hi) / 2;
}
