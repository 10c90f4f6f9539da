/**
 * Reading the measurement output's records (src/node/output/measure.ts): when each
 * marked frame played, in true time (the machine's monotonic clock), per node.
 */
import { readFile } from 'node:fs/promises';

export interface MeasureRecord {
  session: string;
  entryId?: number;
  trackFrame: number;
  trueMs: number;
}

export async function readMeasure(file: string): Promise<MeasureRecord[]> {
  let text = '';
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return [];
  }
  // The last line may be half-written.
  return text
    .split('\n')
    .filter((l) => l.endsWith('}'))
    .map((l) => JSON.parse(l) as MeasureRecord);
}

/** trackFrame → trueMs of one session (and entry) on one node. */
export function framesOf(records: readonly MeasureRecord[], session: string, entryId?: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const r of records) if (r.session === session && (entryId === undefined || r.entryId === entryId)) out.set(r.trackFrame, r.trueMs);
  return out;
}

/**
 * When a track's frame 0 played (ms, true time), from its first recorded frame: a drift
 * correction that drops a single frame can drop frame 0 itself, which then goes
 * unrecorded. Undefined when the track has no frames, or they start later than frame 1.
 */
export function frameZeroMs(records: readonly MeasureRecord[], session: string, entryId: number, rate: number): number | undefined {
  const frames = [...framesOf(records, session, entryId)].sort((x, y) => x[0] - y[0]);
  if (frames.length === 0 || frames[0][0] > 1) return undefined;
  const [frame, trueMs] = frames[0];
  return trueMs - (frame * 1000) / rate;
}

export interface Agreement {
  /** Frames compared (present on every node, after the settle time). */
  compared: number;
  /** Largest difference between any two nodes on when the same frame played (ms). */
  maxSpreadMs: number;
  /** Spreads per compared frame, sorted. */
  spreads: number[];
}

/** How closely nodes agree on when each frame played, ignoring frames before `fromTrueMs`. */
export function agreement(nodes: readonly Map<number, number>[], fromTrueMs = -Infinity): Agreement {
  const spreads: number[] = [];
  for (const [frame, t0] of nodes[0]) {
    if (t0 < fromTrueMs) continue;
    const times = nodes.map((n) => n.get(frame));
    if (times.some((t) => t === undefined)) continue;
    spreads.push(Math.max(...(times as number[])) - Math.min(...(times as number[])));
  }
  spreads.sort((a, b) => a - b);
  return { compared: spreads.length, maxSpreadMs: spreads.at(-1) ?? NaN, spreads };
}

/**
 * How many frames into its start a node's first played frame may lie after a start at
 * once (48 kHz: 50 ms). The hub sends the start with the prepare, 60 ms more than the
 * output delay ahead; on a loaded machine the message sometimes arrives after the output
 * needed the first frames, and the node skips them to stay in sync (a CI run saw 3 ms;
 * the benchmark counts such starts: none in quiet runs). A node that was not ready at
 * once — a decoder to open — begins hundreds of ms in, well past this.
 */
export const START_LATE_FRAMES = 2400;

/**
 * How far a node played off the group's schedule (ms, the worst frame from `fromTrueMs`
 * on): frame f belongs at anchor.hubMs + f / rate − anchor.positionMs, hub time being the
 * machine's (true) time in these tests.
 */
export function scheduleError(frames: ReadonlyMap<number, number>, anchor: { hubMs: number; positionMs: number }, rate: number, fromTrueMs = -Infinity): number {
  let worst = 0;
  for (const [frame, trueMs] of frames) if (trueMs >= fromTrueMs) worst = Math.max(worst, Math.abs(trueMs - (anchor.hubMs + (frame * 1000) / rate - anchor.positionMs)));
  return worst;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}
