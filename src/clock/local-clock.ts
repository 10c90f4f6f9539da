/**
 * Time on a node. Everything that schedules audio asks a LocalClock, never Date.now():
 * so a test can give one machine several nodes whose clocks disagree (offset, skew),
 * the way real boxes' crystals do.
 *
 * All times are milliseconds as floating-point numbers.
 */
export interface LocalClock {
  /** This node's idea of the current time (ms). Monotonic; its origin is arbitrary. */
  now(): number;
}

/**
 * The machine's monotonic clock (CLOCK_MONOTONIC through process.hrtime), in ms. Every
 * process on one machine reads the same one, so measurement outputs of several node
 * processes can be compared on it ("true time" in tests and benchmarks).
 */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export const systemClock: LocalClock = { now: monotonicMs };

/**
 * A clock that runs `skewPpm` parts per million fast (negative: slow) and stands
 * `offsetSeconds` ahead of the machine's clock. For tests and benchmarks only
 * (`firefly node --sim-clock-offset/--sim-clock-skew`).
 */
export class SimulatedClock implements LocalClock {
  /** The machine's monotonic time (ms) at construction: where the skew starts to count. */
  readonly origin = monotonicMs();

  constructor(
    readonly offsetSeconds: number,
    readonly skewPpm: number,
  ) {}

  now(): number {
    const t = monotonicMs();
    return t + (t - this.origin) * this.skewPpm * 1e-6 + this.offsetSeconds * 1000;
  }
}
