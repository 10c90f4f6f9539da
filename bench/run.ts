/**
 * Firefly benchmarks: `npm run bench` (or `node dist/bench/run.js [options]`).
 *
 *   --size <n>        library size for the indexing benchmark (default 1GiB; env FIREFLY_BENCH_SIZE)
 *   --cdc-size <n>    in-memory buffer for the FastCDC throughput table (default 256MiB; env FIREFLY_BENCH_CDC_SIZE)
 *   --tracks <n>      catalogue benchmark size (default 50000; env FIREFLY_BENCH_TRACKS)
 *   --chunks <n>      chunks per synthetic track (default 80; env FIREFLY_BENCH_CHUNKS)
 *   --runs <n>        timed rounds/runs per measurement (default 5; env FIREFLY_BENCH_RUNS)
 *   --only <list>     comma-separated subset of: index, cdc, dedup, catalogue
 *   --keep            keep the temporary folder
 *
 * Tables go to stdout, progress to stderr. All data lives in one folder under
 * os.tmpdir(), removed at the end.
 */
import { parseArgs } from 'node:util';
import { runCatalogueBench } from './catalogue.js';
import { runCdcThroughput, runRetagDedup } from './chunking.js';
import { runIndexingBench } from './indexing.js';
import { machine, note, parseSize, withTempDir } from './util.js';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: process.env.FIREFLY_BENCH_SIZE ?? '1GiB' },
    'cdc-size': { type: 'string', default: process.env.FIREFLY_BENCH_CDC_SIZE ?? '256MiB' },
    tracks: { type: 'string', default: process.env.FIREFLY_BENCH_TRACKS ?? '50000' },
    chunks: { type: 'string', default: process.env.FIREFLY_BENCH_CHUNKS ?? '80' },
    runs: { type: 'string', default: process.env.FIREFLY_BENCH_RUNS ?? '5' },
    only: { type: 'string', default: 'index,cdc,dedup,catalogue' },
    keep: { type: 'boolean', default: false },
  },
});

const only = new Set(values.only.split(',').map((s) => s.trim()));
const runs = Math.max(1, Number(values.runs));
const started = performance.now();

process.stdout.write(`Firefly benchmarks — ${new Date().toISOString()}\n${machine()}\n\n`);

await withTempDir('firefly-bench-', values.keep, async (dir) => {
  note(`working in ${dir}`);
  if (only.has('cdc')) runCdcThroughput(parseSize(values['cdc-size']), runs).print();
  if (only.has('dedup')) for (const t of await runRetagDedup(dir)) t.print();
  if (only.has('catalogue')) (await runCatalogueBench(dir, Number(values.tracks), Number(values.chunks))).print();
  if (only.has('index')) {
    const { tables } = await runIndexingBench({ dir, sizeBytes: parseSize(values.size), runs });
    for (const t of tables) t.print();
  }
});

process.stdout.write(`total benchmark time ${((performance.now() - started) / 1000).toFixed(0)} s\n`);
