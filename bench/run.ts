/**
 * Firefly benchmarks: `npm run bench` (or `node dist/bench/run.js [options]`).
 *
 *   --size <n>        library size for the indexing benchmark (default 1GiB; env FIREFLY_BENCH_SIZE)
 *   --cdc-size <n>    in-memory buffer for the FastCDC throughput table (default 256MiB; env FIREFLY_BENCH_CDC_SIZE)
 *   --tracks <n>      catalogue benchmark size (default 50000; env FIREFLY_BENCH_TRACKS)
 *   --chunks <n>      chunks per synthetic track (default 80; env FIREFLY_BENCH_CHUNKS)
 *   --runs <n>        timed rounds/runs per measurement (default 5; env FIREFLY_BENCH_RUNS)
 *   --nodes <n>       simulated nodes for the control-plane benchmark (default 500; env FIREFLY_BENCH_NODES)
 *   --sync-minutes <n> length of the sync run (default 2; the soak figure is 10; env FIREFLY_BENCH_SYNC_MINUTES)
 *   --swarm-size <n>  library size for the swarm benchmark (default 500MB; env FIREFLY_BENCH_SWARM_SIZE)
 *                     (env FIREFLY_BENCH_SWARM_BASELINE=0 skips its hub-only round while iterating,
 *                     FIREFLY_BENCH_SWARM_NODES=n runs n nodes instead of 8)
 *   --cold-size <n>   size of the FLAC in the cold-start benchmark (default 40MB; env FIREFLY_BENCH_COLD_SIZE)
 *   --only <list>     comma-separated subset of the sections below (default: all)
 *   --keep            keep the temporary folder
 *
 * Sections, run in this order: cdc, dedup, catalogue, index, control, decode, sync,
 * command-to-sound, swarm, cold-start. A new benchmark is one
 * more entry in SECTIONS (a name, and a function that prints its tables).
 *
 * Tables go to stdout, progress to stderr. All data lives in one folder under
 * os.tmpdir(), removed at the end.
 */
import { parseArgs } from 'node:util';
import { runCatalogueBench } from './catalogue.js';
import { runCdcThroughput, runRetagDedup } from './chunking.js';
import { benchControlPlane, formatControlPlaneBench } from './control-plane.js';
import { runIndexingBench } from './indexing.js';
import { benchDecode } from './decode.js';
import { benchCommandToSound, benchSync } from './sync.js';
import { benchSwarm } from './swarm.js';
import { benchColdStart } from './cold-start.js';
import { machine, note, parseSize, withTempDir } from './util.js';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: process.env.FIREFLY_BENCH_SIZE ?? '1GiB' },
    'cdc-size': { type: 'string', default: process.env.FIREFLY_BENCH_CDC_SIZE ?? '256MiB' },
    tracks: { type: 'string', default: process.env.FIREFLY_BENCH_TRACKS ?? '50000' },
    chunks: { type: 'string', default: process.env.FIREFLY_BENCH_CHUNKS ?? '80' },
    runs: { type: 'string', default: process.env.FIREFLY_BENCH_RUNS ?? '5' },
    nodes: { type: 'string', default: process.env.FIREFLY_BENCH_NODES ?? '500' },
    'sync-minutes': { type: 'string', default: process.env.FIREFLY_BENCH_SYNC_MINUTES ?? '2' },
    'swarm-size': { type: 'string', default: process.env.FIREFLY_BENCH_SWARM_SIZE ?? '500MB' },
    'cold-size': { type: 'string', default: process.env.FIREFLY_BENCH_COLD_SIZE ?? '40MB' },
    only: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});

const runs = Math.max(1, Number(values.runs));

/** What every section gets: the shared temporary folder and the parsed options. */
interface BenchContext {
  dir: string;
  runs: number;
  values: typeof values;
}

/** One benchmark section: `--only NAME` selects it; `run` prints its own tables to stdout. */
interface Section {
  name: string;
  run(ctx: BenchContext): Promise<void> | void;
}

/** Prints a block of text the way Table.print does (a blank line after). */
function printText(text: string): void {
  process.stdout.write(`${text}\n\n`);
}

const SECTIONS: Section[] = [
  { name: 'cdc', run: ({ values: v, runs: n }) => runCdcThroughput(parseSize(v['cdc-size']), n).print() },
  { name: 'dedup', run: async ({ dir }) => (await runRetagDedup(dir)).forEach((t) => t.print()) },
  { name: 'catalogue', run: async ({ dir, values: v }) => (await runCatalogueBench(dir, Number(v.tracks), Number(v.chunks))).print() },
  {
    name: 'index',
    run: async ({ dir, values: v, runs: n }) => (await runIndexingBench({ dir, sizeBytes: parseSize(v.size), runs: n })).tables.forEach((t) => t.print()),
  },
  {
    // A real hub process and N simulated nodes heartbeating once a second (issue 3).
    name: 'control',
    run: async ({ values: v }) => printText(formatControlPlaneBench(await benchControlPlane({ nodes: Math.max(1, Number(v.nodes)) }))),
  },
  // Decode CPU per format, and a node playing FLAC in real time (issue 4).
  { name: 'decode', run: async () => printText(await benchDecode()) },
  // 4 nodes with disagreeing clocks through a 0–20 ms jitter proxy: inter-node offset per minute (issue 4).
  { name: 'sync', run: async ({ values: v }) => printText(await benchSync({ minutes: Math.max(1, Number(v['sync-minutes'])) })) },
  // 8 nodes, track held: play command to first frame at the outputs (issue 4).
  { name: 'command-to-sound', run: async () => printText(await benchCommandToSound()) },
  // 1 hub + 8 nodes, hub uplink capped at 100 Mbit/s: swarm vs hub-only (issue 5).
  { name: 'swarm', run: async ({ values: v }) => printText(await benchSwarm({ bytes: parseSize(v['swarm-size']), nodes: Number(process.env.FIREFLY_BENCH_SWARM_NODES ?? 8), baseline: process.env.FIREFLY_BENCH_SWARM_BASELINE !== '0' })) },
  // 4 members play a 40 MB FLAC none holds, hub uplink capped at 100 Mbit/s: first sound, underruns (issue 5).
  { name: 'cold-start', run: async ({ values: v }) => printText(await benchColdStart({ bytes: parseSize(v['cold-size']) })) },
];

const names = SECTIONS.map((s) => s.name);
const only = new Set((values.only ?? names.join(',')).split(',').map((s) => s.trim()).filter(Boolean));
const unknown = [...only].filter((n) => !names.includes(n));
if (unknown.length) {
  process.stderr.write(`bench: unknown section ${unknown.join(', ')} in --only; choose from ${names.join(', ')}\n`);
  process.exit(2);
}
const started = performance.now();

process.stdout.write(`Firefly benchmarks — ${new Date().toISOString()}\n${machine()}\n\n`);

await withTempDir('firefly-bench-', values.keep, async (dir) => {
  note(`working in ${dir}`);
  for (const section of SECTIONS) {
    if (!only.has(section.name)) continue;
    note(`section ${section.name}`);
    await section.run({ dir, runs, values });
  }
});

process.stdout.write(`total benchmark time ${((performance.now() - started) / 1000).toFixed(0)} s\n`);
