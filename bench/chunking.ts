import { hash, randomFillSync } from 'node:crypto';
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_CHUNKING, FastCdc, type ChunkingParams } from '../src/chunking/fastcdc.js';
import { manifestOf } from '../src/chunking/manifest.js';
import { encode, flacHeaderSize, id3v2Size, makeCover } from './audio.js';
import { cpuSnapshot, exec, fmtBytes, KiB, note, now, otherLoad, Table } from './util.js';

export const PARAM_SETS: ChunkingParams[] = [
  { minSize: 4 * KiB, avgSize: 16 * KiB, maxSize: 64 * KiB },
  { minSize: 8 * KiB, avgSize: 32 * KiB, maxSize: 128 * KiB },
  { minSize: 16 * KiB, avgSize: 64 * KiB, maxSize: 256 * KiB },
  { minSize: 32 * KiB, avgSize: 128 * KiB, maxSize: 512 * KiB },
  { minSize: 64 * KiB, avgSize: 256 * KiB, maxSize: 1024 * KiB },
];

export function label(p: ChunkingParams): string {
  const k = (n: number) => `${n / KiB}`;
  const isDefault = p.minSize === DEFAULT_CHUNKING.minSize && p.avgSize === DEFAULT_CHUNKING.avgSize && p.maxSize === DEFAULT_CHUNKING.maxSize;
  return `${k(p.minSize)}/${k(p.avgSize)}/${k(p.maxSize)} KiB${isDefault ? ' (default)' : ''}`;
}

function best(runs: number, fn: () => void): number {
  let min = Infinity;
  for (let r = 0; r < runs; r++) {
    const t = now();
    fn();
    min = Math.min(min, now() - t);
  }
  return min;
}

/** FastCDC alone, FastCDC + SHA-256 per chunk, and SHA-256 alone, over one buffer in memory. */
export function runCdcThroughput(sizeBytes: number, runs: number): Table {
  note(`FastCDC throughput over ${fmtBytes(sizeBytes)} of random bytes in memory…`);
  const data = randomFillSync(Buffer.allocUnsafe(sizeBytes));
  const cpu0 = cpuSnapshot();
  const MBs = (ms: number) => (sizeBytes / 1e6 / (ms / 1000)).toFixed(0);
  const table = new Table(
    `FastCDC throughput in memory (${fmtBytes(sizeBytes)} random bytes, one thread, best of ${runs}) vs SHA-256 alone`,
    ['min/avg/max', 'chunks', 'mean chunk', 'sd', 'at max', 'boundaries MB/s', '+SHA-256 MB/s (manifestOf)'],
  );
  const tSha = best(runs, () => hash('sha256', data, 'buffer'));
  const tSha64 = best(runs, () => {
    for (let o = 0; o < data.length; o += 64 * KiB) hash('sha256', data.subarray(o, o + 64 * KiB), 'buffer');
  });
  for (const p of PARAM_SETS) {
    const cdc = new FastCdc(p);
    let lengths: number[] = [];
    const tCut = best(runs, () => {
      lengths = cdc.lengths(data);
    });
    const tMan = best(runs, () => manifestOf(data, p));
    const mean = sizeBytes / lengths.length;
    const sd = Math.sqrt(lengths.reduce((s, n) => s + (n - mean) ** 2, 0) / lengths.length);
    const atMax = lengths.filter((n) => n === p.maxSize).length / lengths.length;
    table.row(label(p), lengths.length, fmtBytes(mean), fmtBytes(sd), `${(atMax * 100).toFixed(1)}%`, MBs(tCut), MBs(tMan));
  }
  table.row('SHA-256 alone, one call over the buffer', '', '', '', '', '', MBs(tSha));
  table.row('SHA-256 alone, 64 KiB pieces', '', '', '', '', '', MBs(tSha64));
  table.note('"at max": chunks cut at maxSize (no content-defined boundary found). SHA-256 is Node\'s (OpenSSL, SHA-NI).');
  table.note(`During the runs ${otherLoad(cpu0, cpuSnapshot())}.`);
  return table;
}

function commonPrefix(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

function commonSuffix(a: Buffer, b: Buffer, limit: number): number {
  let i = 0;
  while (i < limit && a[a.length - 1 - i] === b[b.length - 1 - i]) i++;
  return i;
}

async function rsyncLiteral(dir: string, oldFile: string, newFile: string): Promise<{ literal: number; matched: number }> {
  const dest = join(dir, 'rsync-dest');
  await mkdir(dest, { recursive: true });
  const target = join(dest, 'old');
  await copyFile(oldFile, target);
  const { stdout } = await exec('rsync', ['--stats', '--no-whole-file', '--ignore-times', newFile, target]);
  const num = (re: RegExp) => Number((re.exec(stdout)?.[1] ?? 'NaN').replace(/,/g, ''));
  return { literal: num(/Literal data: ([\d,]+) bytes/), matched: num(/Matched data: ([\d,]+) bytes/) };
}

interface Retag {
  name: string;
  oldFile: string;
  newFile: string;
  tagSize: (b: Buffer) => number;
  tagName: string;
}

/**
 * Re-tagging a track: the old and new file differ only in the tag block (whose size
 * changes, so every audio byte after it moves). Bytes a node would have to fetch =
 * the new manifest's chunks whose hash the old manifest lacks.
 */
export async function runRetagDedup(dir: string): Promise<Table[]> {
  const work = join(dir, 'retag');
  await mkdir(work, { recursive: true });
  note('encoding an MP3 and a FLAC and re-tagging them with ffmpeg -c copy…');
  const cover = join(work, 'cover.jpg');
  await makeCover(cover, 0, 500);
  const tags = { title: 'Song', artist: 'Band', album: 'Record', track: '3' };
  const mp3 = join(work, 'old.mp3');
  const flac = join(work, 'old.flac');
  await Promise.all([
    encode(mp3, { format: 'mp3', seconds: 300, seed: 7, bitrate: '192k', tags, cover }),
    encode(flac, { format: 'flac', seconds: 75, seed: 8, tags, cover }),
  ]);
  const retag = async (src: string, dst: string, fmt: string) => {
    const more = {
      title: 'Song (2024 Remaster) [Deluxe Edition] - Extended Version featuring Somebody Else',
      comment: 'Ripped from the original vinyl; replaygain and tags corrected by hand. '.repeat(8),
      genre: 'Progressive Rock',
      date: '1973',
      composer: 'A. Composer; B. Lyricist',
      album_artist: 'Band',
      disc: '1/2',
      publisher: 'Some Label Records',
    };
    const args = ['-hide_banner', '-loglevel', 'error', '-y', '-i', src, '-map', '0', '-c', 'copy', '-map_metadata', '0'];
    for (const [k, v] of Object.entries(more)) args.push('-metadata', `${k}=${v}`);
    if (fmt === 'mp3') args.push('-id3v2_version', '3');
    args.push('-f', fmt, dst);
    await exec('ffmpeg', args);
  };
  const cases: Retag[] = [
    { name: 'MP3 (192k, 300 s, cover)', oldFile: mp3, newFile: join(work, 'new.mp3'), tagSize: id3v2Size, tagName: 'ID3v2 tag' },
    { name: 'FLAC (75 s, cover)', oldFile: flac, newFile: join(work, 'new.flac'), tagSize: flacHeaderSize, tagName: 'FLAC metadata blocks' },
  ];
  await retag(mp3, cases[0].newFile, 'mp3');
  await retag(flac, cases[1].newFile, 'flac');

  const tables: Table[] = [];
  for (const c of cases) {
    const a = await readFile(c.oldFile);
    const b = await readFile(c.newFile);
    const prefix = commonPrefix(a, b);
    const suffix = commonSuffix(a, b, Math.min(a.length, b.length) - prefix);
    const edited = b.length - prefix - suffix; // bytes of the new file outside the common prefix and suffix
    const rs = await rsyncLiteral(work, c.oldFile, c.newFile);
    const t = new Table(
      `Bytes to move after a re-tag, ${c.name}: FastCDC chunk dedup vs rsync vs the edited bytes`,
      ['method', 'bytes to move', 'x edited', 'chunks new/moved', 'goal <= edited + 2 avg'],
    );
    t.row('edited bytes (new file outside common prefix+suffix)', edited, '1.00', '', '');
    t.row('rsync --no-whole-file "Literal data"', rs.literal, (rs.literal / edited).toFixed(2), '', '');
    for (const p of PARAM_SETS) {
      const m0 = manifestOf(a, p);
      const m1 = manifestOf(b, p);
      const old = new Set(m0.chunks.map((x) => x.hash.toString('hex')));
      const moved = m1.chunks.filter((x) => !old.has(x.hash.toString('hex')));
      const bytes = moved.reduce((s, x) => s + x.size, 0);
      const ok = bytes <= edited + 2 * p.avgSize;
      t.row(`FastCDC ${label(p)}`, bytes, (bytes / edited).toFixed(2), `${m1.chunks.length}/${moved.length}`, `${ok ? 'MET' : 'NOT MET'} (${((bytes - edited) / p.avgSize).toFixed(2)} avg)`);
    }
    t.note(
      `old ${a.length} B, new ${b.length} B (size +${b.length - a.length} B); ${c.tagName}: old ${c.tagSize(a)} B, new ${c.tagSize(b)} B; ` +
        `common prefix ${prefix} B, common suffix ${suffix} B.`,
    );
    t.note('"x avg" in the last column = (bytes to move - edited bytes) / average chunk size.');
    tables.push(t);
  }
  return tables;
}
