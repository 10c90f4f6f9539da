/**
 * Replays the clock exchanges nodes recorded through the estimator, against the truth:
 * the instrument for estimator work (docs/audio.md, the sync benchmark).
 *
 *   FIREFLY_BENCH_LOGS=/tmp/sync FIREFLY_BENCH_LOG_LEVEL=trace node dist/bench/run.js --only sync
 *   node dist/bench/clock-replay.js /tmp/sync/sync-bench*.log
 *
 * Each log must hold the node's "simulated clock" line (its offset, skew and origin on
 * the machine's clock) and its "clock sample" lines (trace level). The hub of the
 * benchmark has a fresh data folder, so hub time is the machine's monotonic clock. Prints
 * how far apart the nodes' estimates of the hub's clock are, per time span, replayed with
 * the estimator as built (options from FIREFLY_ESTIMATOR, JSON, e.g. '{"slewPpm":200}').
 */
import { readFileSync } from 'node:fs';
import { ClockEstimator, type ClockEstimatorOptions, type ClockSample } from '../src/clock/estimator.js';
import { percentile, Table } from './util.js';

interface LogLine {
  msg?: string;
  offsetSeconds?: number;
  skewPpm?: number;
  originMs?: number;
}

/** [machine ms, estimate − truth in µs] after each exchange of one node. */
function replay(file: string, options: Partial<ClockEstimatorOptions>): [number, number][] {
  const lines = readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as LogLine & Partial<ClockSample>);
  const sim = lines.find((l) => l.msg === 'simulated clock (tests and benchmarks only)');
  if (!sim || sim.originMs === undefined) throw new Error(`${file}: no "simulated clock" line (a node started with --sim-clock-*)`);
  const skew = (sim.skewPpm ?? 0) * 1e-6;
  // SimulatedClock: local = m + (m − origin)·skew + offset; solved for m.
  const machine = (local: number) => (local - (sim.offsetSeconds ?? 0) * 1000 + sim.originMs! * skew) / (1 + skew);
  const estimator = new ClockEstimator(options);
  const out: [number, number][] = [];
  for (const l of lines) {
    if (l.msg !== 'clock sample') continue;
    const s = { t1: l.t1!, t2: l.t2!, t3: l.t3!, t4: l.t4! };
    estimator.add(s);
    out.push([machine(s.t4), (estimator.toHub(s.t4) - machine(s.t4)) * 1000]);
  }
  if (out.length === 0) throw new Error(`${file}: no "clock sample" lines (run the nodes with --log-level trace)`);
  return out;
}

function at(series: [number, number][], t: number): number | undefined {
  if (t < series[0][0] || t > series[series.length - 1][0]) return undefined;
  let lo = 0;
  let hi = series.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (series[mid][0] <= t) lo = mid;
    else hi = mid;
  }
  return series[lo][1];
}

const files = process.argv.slice(2);
if (files.length < 2) {
  process.stderr.write('usage: node dist/bench/clock-replay.js NODE_LOG NODE_LOG [...]\n');
  process.exit(2);
}
const options = JSON.parse(process.env.FIREFLY_ESTIMATOR ?? '{}') as Partial<ClockEstimatorOptions>;
const series = files.map((f) => replay(f, options));
const t0 = Math.min(...series.map((s) => s[0][0]));
const end = Math.max(...series.map((s) => s[s.length - 1][0]));
const table = new Table(`Clock estimates replayed: ${files.length} nodes`, ['from the first exchange', 'p50 spread', 'p99 spread', 'max spread', 'worst node error']);
for (const [from, to] of [[5, 30], [30, 60], [60, 120], [120, 300], [300, Infinity]]) {
  const spreads: number[] = [];
  let worst = 0;
  for (let t = t0 + from * 1000; t < Math.min(end, t0 + to * 1000); t += 250) {
    const v = series.map((s) => at(s, t));
    if (v.some((x) => x === undefined)) continue;
    const xs = v as number[];
    spreads.push(Math.max(...xs) - Math.min(...xs));
    worst = Math.max(worst, ...xs.map(Math.abs));
  }
  if (spreads.length === 0) continue;
  spreads.sort((a, b) => a - b);
  const us = (x: number) => `${x.toFixed(0)} µs`;
  table.row(`${from}–${to === Infinity ? 'end' : to} s`, us(percentile(spreads, 50)), us(percentile(spreads, 99)), us(spreads[spreads.length - 1]), us(worst));
}
table.note('spread: largest difference between the nodes\' estimates of the hub clock at the same instant; error: estimate − truth');
process.stdout.write(table.render() + '\n');
