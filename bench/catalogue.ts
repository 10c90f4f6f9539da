import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSnapshot, fmtBytes, fmtMs, note, otherLoad, Table } from './util.js';

const CHILD = fileURLToPath(new URL('./catalogue-child.js', import.meta.url));

function child(args: string[]): Promise<any> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CHILD, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => {
      if (code !== 0) reject(new Error(`catalogue child ${args[0]} exited with ${code}`));
      else resolve(JSON.parse(out.trim().split('\n').pop()!));
    });
  });
}

export async function runCatalogueBench(dir: string, tracks: number, chunksPerTrack: number): Promise<Table> {
  const db = join(dir, 'catalogue-bench.sqlite');
  note(`catalogue: upserting ${tracks} synthetic tracks x ${chunksPerTrack} chunks (child process)…`);
  const cpu0 = cpuSnapshot();
  const built = await child(['build', db, String(tracks), String(chunksPerTrack)]);
  note(`catalogue: built in ${fmtMs(built.insertMs)}; querying in a fresh process…`);
  const q = await child(['query', db]);
  const base = await child(['baseline']);
  const cpu1 = cpuSnapshot();
  const t = new Table(
    `Catalogue at ${tracks} tracks x ${chunksPerTrack} chunks (${tracks * chunksPerTrack} chunk rows), synthetic rows, each phase in its own process`,
    ['measure', 'value', 'detail'],
    ['l', 'r', 'l'],
  );
  const lat = (s: { median: number; p99: number; max: number }) => `median ${fmtMs(s.median)}, p99 ${fmtMs(s.p99)}, max ${fmtMs(s.max)}`;
  t.row('build: upserts (1000 per outer transaction)', fmtMs(built.insertMs), `${((tracks / built.insertMs) * 1000).toFixed(0)} tracks/s via Catalogue.upsert`);
  t.row('DB file size after build', fmtBytes(built.dbBytes), `${(built.dbBytes / (tracks * chunksPerTrack)).toFixed(0)} B per chunk row; WAL after close ${fmtBytes(built.walBytes)}`);
  t.row('open catalogue (fresh process)', fmtMs(q.openMs), 'migrations check, WAL mode');
  t.row('upsert of one changed track (own transaction)', fmtMs(q.upsert.median), lat(q.upsert));
  t.row('delta: changesSince(v) after 10 upserts', fmtMs(q.delta.median), `${lat(q.delta)}; ${q.delta.rows} rows, 200 runs`);
  t.row('manifest(contentId)', fmtMs(q.manifest.median), `${lat(q.manifest)}; ${q.manifest.chunks} chunks, 1000 random ids`);
  t.row('locate(hash), chunk present', fmtMs(q.locate.median), `${lat(q.locate)}; ${q.locate.found}/1000 found`);
  t.row('locate(hash), chunk absent', fmtMs(q.locateMiss.median), lat(q.locateMiss));
  t.row('full delta from 0 (pages of 500)', fmtMs(q.fullDelta.ms), `${q.fullDelta.rows} rows: what a new node asks for`);
  t.row('liveEntries(root) (startup reconcile)', fmtMs(q.liveEntries.ms), `${q.liveEntries.rows} rows`);
  t.row('RSS: bare child (same imports, no DB)', fmtBytes(base.rss), '');
  t.row('RSS: query process before opening the catalogue', fmtBytes(q.rssBefore), '');
  t.row('RSS: after open + 10 upserts + delta/manifest/locate queries', fmtBytes(q.rssPoint), '');
  t.row('RSS: ... + full delta of every row + liveEntries (all above)', fmtBytes(q.rssAfter), `V8 heap used/total ${fmtBytes(q.heapUsed)}/${fmtBytes(q.heapTotal)}, external ${fmtBytes(q.external)}; SQLite cache_size ${q.cacheSize}; catalogue share ~${fmtBytes(q.rssAfter - base.rss)}`);
  t.row('RSS: ... + 20000 more locate() calls (serving ~1.3 GiB of chunks)', fmtBytes(q.rssServing), `+${fmtBytes(q.rssServing - q.rssAfter)}: each Catalogue call runs db.prepare() anew; statements are freed only when V8 collects them`);
  t.row(`RSS: builder process after ${tracks} upserts`, fmtBytes(built.rssLoaded), `V8 heap total ${fmtBytes(built.heapTotal)}, external ${fmtBytes(built.external)} (garbage from building, not the hub's steady state)`);
  t.note(`During the build and queries ${otherLoad(cpu0, cpu1)}.`);
  t.note('Rows are synthetic: random 32-byte chunk hashes, 16-112 KiB chunk sizes, realistic metadata JSON, one root.');
  return t;
}
