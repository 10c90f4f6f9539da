/**
 * Runs one phase of the catalogue benchmark in its own process, so its RSS is the
 * catalogue's alone. Prints one JSON line on stdout.
 *
 *   node dist/bench/catalogue-child.js build <db> <tracks> <chunksPerTrack>
 *   node dist/bench/catalogue-child.js query <db>
 *   node dist/bench/catalogue-child.js baseline
 */
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { statSync } from 'node:fs';
import { Catalogue, type IndexedFile } from '../hub/library/catalogue.js';
import type { Chunk } from '../src/chunking/manifest.js';

const ROOT = '/srv/music';

function syntheticTrack(n: number, chunksPerTrack: number, salt = 0): { path: string; file: IndexedFile } {
  const raw = randomBytes(chunksPerTrack * 32);
  const chunks: Chunk[] = [];
  let offset = 0;
  for (let i = 0; i < chunksPerTrack; i++) {
    const size = 16384 + randomInt(0, 98304); // 16-112 KiB, mean 64 KiB
    chunks.push({ hash: raw.subarray(i * 32, i * 32 + 32), offset, size });
    offset += size;
  }
  const h = createHash('sha256');
  for (const c of chunks) h.update(c.hash);
  const artist = `Artist ${Math.floor(n / 120)}`;
  const album = `Album ${Math.floor(n / 12)}`;
  return {
    path: `${artist}/${album}/${String((n % 12) + 1).padStart(2, '0')} Track ${n}.mp3`,
    file: {
      size: offset,
      mtimeMs: 1_700_000_000_000 + n * 1000 + salt,
      status: 'ok',
      format: 'mp3',
      contentId: h.digest(),
      chunks,
      metadata: {
        title: `Track ${n}${salt ? ` (v${salt})` : ''}`,
        artist,
        album,
        albumArtist: artist,
        trackNo: (n % 12) + 1,
        discNo: 1,
        year: 1960 + (n % 60),
        genre: 'Rock',
        durationSeconds: 240.5,
        sampleRate: 44100,
        channels: 2,
        codec: 'MPEG 1 Layer 3',
        container: 'MPEG',
        bitrate: 320000,
        coverHash: createHash('sha256').update(album).digest('hex'),
        coverMime: 'image/jpeg',
      },
    },
  };
}

function rss(): number {
  return process.memoryUsage().rss;
}

function time<T>(fn: () => T): { ms: number; value: T } {
  const t = performance.now();
  const value = fn();
  return { ms: performance.now() - t, value };
}

function stats(times: number[]): { median: number; p99: number; max: number } {
  const s = [...times].sort((a, b) => a - b);
  return { median: s[s.length >> 1], p99: s[Math.min(s.length - 1, Math.floor(s.length * 0.99))], max: s[s.length - 1] };
}

function fileSize(f: string): number {
  try {
    return statSync(f).size;
  } catch {
    return 0;
  }
}

function build(db: string, tracks: number, chunksPerTrack: number): unknown {
  const cat = new Catalogue(db);
  const rootId = cat.rootId(ROOT);
  const batch = 1000;
  const t0 = performance.now();
  for (let start = 0; start < tracks; start += batch) {
    cat.db.transaction(() => {
      for (let n = start; n < Math.min(tracks, start + batch); n++) {
        const t = syntheticTrack(n, chunksPerTrack);
        cat.upsert(rootId, t.path, t.file);
      }
    })();
    if (start % 10_000 === 0 && start > 0) process.stderr.write(`[bench]   ${start} tracks upserted (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
  }
  const insertMs = performance.now() - t0;
  const rssLoaded = rss();
  const mem = process.memoryUsage();
  cat.close();
  return { insertMs, rssLoaded, heapTotal: mem.heapTotal, external: mem.external, dbBytes: fileSize(db), walBytes: fileSize(`${db}-wal`) };
}

function query(db: string): unknown {
  const rssBefore = rss();
  const open = time(() => new Catalogue(db));
  const cat = open.value;
  const rootId = cat.rootId(ROOT);
  const counts = cat.counts();
  const tracks = counts.live;

  // Samples, taken before any timing.
  const contentIds = (cat.db.prepare('SELECT content_id AS c FROM entries ORDER BY random() LIMIT 1000').all() as { c: Buffer }[]).map((r) => r.c);
  const hashes: Buffer[] = [];
  const pick = cat.db.prepare('SELECT hash FROM chunks WHERE entry_id = ? AND idx = ?');
  const maxId = (cat.db.prepare('SELECT MAX(id) AS m FROM entries').get() as { m: number }).m;
  const chunksPerTrack = (cat.db.prepare('SELECT COUNT(*) AS n FROM chunks WHERE entry_id = ?').get(1) as { n: number }).n;
  while (hashes.length < 1000) {
    const row = pick.get(randomInt(1, maxId + 1), randomInt(0, chunksPerTrack)) as { hash: Buffer } | undefined;
    if (row) hashes.push(row.hash);
  }

  // A node that is 10 changes behind: 10 files re-tagged (new content, new chunks).
  const since = cat.version();
  const upsertTimes: number[] = [];
  for (let i = 0; i < 10; i++) {
    const n = randomInt(0, tracks);
    const t = syntheticTrack(n, chunksPerTrack, i + 1);
    upsertTimes.push(time(() => cat.upsert(rootId, t.path, t.file)).ms);
  }
  const deltaTimes: number[] = [];
  let deltaRows = 0;
  for (let r = 0; r < 200; r++) {
    const q = time(() => cat.changesSince(since, 501));
    deltaTimes.push(q.ms);
    deltaRows = q.value.length;
  }
  const manifestTimes: number[] = [];
  let manifestChunks = 0;
  for (const c of contentIds) {
    const q = time(() => cat.manifest(c));
    manifestTimes.push(q.ms);
    manifestChunks = q.value?.chunks.length ?? manifestChunks;
  }
  const locateTimes: number[] = [];
  let located = 0;
  for (const h of hashes) {
    const q = time(() => cat.locate(h));
    locateTimes.push(q.ms);
    located += q.value.length > 0 ? 1 : 0;
  }
  const rssPoint = rss();
  const missTimes: number[] = [];
  for (let i = 0; i < 1000; i++) missTimes.push(time(() => cat.locate(randomBytes(32))).ms);
  // A new node: the whole library in pages of 500, as LibrarySync asks for it.
  const full = time(() => {
    let v = 0;
    let rows = 0;
    for (;;) {
      const page = cat.changesSince(v, 501);
      rows += Math.min(page.length, 500);
      if (page.length <= 500) break;
      v = page[499].version;
    }
    return rows;
  });
  // What Library.start does to reconcile: every live entry of the root.
  const live = time(() => cat.liveEntries(rootId).length);
  const rssAfter = rss();
  const mem = process.memoryUsage();
  // Serving chunks calls locate() once per chunk: does memory stay flat over many calls?
  for (let i = 0; i < 20_000; i++) cat.locate(hashes[i % hashes.length]);
  const rssServing = rss();
  const cacheSize = cat.db.pragma('cache_size', { simple: true });
  cat.close();
  return {
    tracks,
    chunksPerTrack,
    rssBefore,
    rssPoint,
    rssAfter,
    rssServing,
    heapUsed: mem.heapUsed,
    heapTotal: mem.heapTotal,
    external: mem.external,
    cacheSize,
    openMs: open.ms,
    upsert: stats(upsertTimes),
    delta: { ...stats(deltaTimes), rows: deltaRows },
    manifest: { ...stats(manifestTimes), chunks: manifestChunks },
    locate: { ...stats(locateTimes), found: located },
    locateMiss: stats(missTimes),
    fullDelta: { ms: full.ms, rows: full.value },
    liveEntries: { ms: live.ms, rows: live.value },
    dbBytes: fileSize(db),
  };
}

const [mode, db, a, b] = process.argv.slice(2);
let out: unknown;
if (mode === 'build') out = build(db, Number(a), Number(b));
else if (mode === 'query') out = query(db);
else if (mode === 'baseline') out = { rss: rss() };
else throw new Error(`unknown mode ${mode}`);
process.stdout.write(`${JSON.stringify(out)}\n`);
