import { randomFillSync } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { exec, fmtBytes, note, parallel } from './util.js';

/**
 * Test audio for the benchmarks, made with the system's ffmpeg: real encodes of seeded
 * pink noise, and cheap derived copies for bulk.
 */

export type Format = 'mp3' | 'flac' | 'wav';

export interface EncodeSpec {
  format: Format;
  seconds: number;
  seed: number;
  /** MP3 only, e.g. '320k'. */
  bitrate?: string;
  tags?: Record<string, string>;
  /** A JPEG to embed as the front cover (MP3 and FLAC). */
  cover?: string;
  /** MP3 only: leave out the ID3v2 tag (the caller writes its own). */
  noId3?: boolean;
}

export async function encode(file: string, spec: EncodeSpec): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const args = ['-hide_banner', '-loglevel', 'error', '-y'];
  args.push('-f', 'lavfi', '-i', `anoisesrc=color=pink:amplitude=0.3:seed=${spec.seed}:sample_rate=44100:duration=${spec.seconds}`);
  const withCover = spec.cover !== undefined && spec.format !== 'wav';
  if (withCover) args.push('-i', spec.cover!);
  args.push('-map', '0:a');
  if (withCover) args.push('-map', '1:v', '-c:v', 'copy', '-disposition:v', 'attached_pic', '-metadata:s:v', 'comment=Cover (front)');
  args.push('-ac', '2', '-ar', '44100');
  for (const [k, v] of Object.entries(spec.tags ?? {})) args.push('-metadata', `${k}=${v}`);
  if (spec.format === 'mp3') {
    args.push('-c:a', 'libmp3lame', '-b:a', spec.bitrate ?? '320k');
    args.push('-id3v2_version', spec.noId3 ? '0' : '3');
  } else if (spec.format === 'flac') {
    args.push('-c:a', 'flac');
  } else {
    args.push('-c:a', 'pcm_s16le');
  }
  args.push('-f', spec.format, file);
  await exec('ffmpeg', args, { maxBuffer: 16 * 1024 * 1024 });
}

/** A JPEG cover (ffmpeg test pattern), roughly the size of real album art. */
export async function makeCover(file: string, variant: number, size = 600): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const sources = ['testsrc2', 'smptehdbars', 'mandelbrot', 'rgbtestsrc', 'yuvtestsrc'];
  const src = `${sources[variant % sources.length]}=size=${size}x${size}:rate=1`;
  await exec('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', src, '-frames:v', '1', '-q:v', '2', '-f', 'image2', '-c:v', 'mjpeg', file]);
}

/** Size of the ID3v2 tag at the start of an MP3 (header + frames + padding), 0 if none. */
export function id3v2Size(data: Uint8Array): number {
  if (data.length < 10 || data[0] !== 0x49 || data[1] !== 0x44 || data[2] !== 0x33) return 0;
  const size = ((data[6] & 0x7f) << 21) | ((data[7] & 0x7f) << 14) | ((data[8] & 0x7f) << 7) | (data[9] & 0x7f);
  const footer = data[5] & 0x10 ? 10 : 0;
  return 10 + size + footer;
}

/** Size of the FLAC header: "fLaC" plus every metadata block, i.e. the offset of the first audio frame. */
export function flacHeaderSize(data: Uint8Array): number {
  if (data[0] !== 0x66 || data[1] !== 0x4c || data[2] !== 0x61 || data[3] !== 0x43) return 0;
  let pos = 4;
  for (;;) {
    const last = (data[pos] & 0x80) !== 0;
    const len = (data[pos + 1] << 16) | (data[pos + 2] << 8) | data[pos + 3];
    pos += 4 + len;
    if (last || pos >= data.length) return pos;
  }
}

/** An ID3v2.3 tag: Latin-1 text frames, an optional front cover, and some padding. */
export function id3v23(text: Record<string, string>, cover?: Buffer, padding = 1024): Buffer {
  const frames: Buffer[] = [];
  const frame = (id: string, body: Buffer) => {
    const h = Buffer.alloc(10);
    h.write(id, 0, 'latin1');
    h.writeUInt32BE(body.length, 4);
    frames.push(h, body);
  };
  for (const [id, value] of Object.entries(text)) frame(id, Buffer.concat([Buffer.from([0]), Buffer.from(value, 'latin1')]));
  if (cover) frame('APIC', Buffer.concat([Buffer.from([0]), Buffer.from('image/jpeg\0', 'latin1'), Buffer.from([3, 0]), cover]));
  const body = Buffer.concat([...frames, Buffer.alloc(padding)]);
  const n = body.length;
  const header = Buffer.from([0x49, 0x44, 0x33, 3, 0, 0, (n >> 21) & 0x7f, (n >> 14) & 0x7f, (n >> 7) & 0x7f, n & 0x7f]);
  return Buffer.concat([header, body]);
}

const MPEG1_L3_KBPS = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320];
const MPEG1_RATES = [44100, 48000, 32000];

/**
 * The MPEG-1 Layer III frames of a bare MP3 stream: for each, where it starts, how many
 * leading bytes are structure (header, CRC, side info) and how long it is.
 */
export function mp3Frames(audio: Uint8Array): { start: number; keep: number; length: number }[] {
  const frames: { start: number; keep: number; length: number }[] = [];
  let pos = 0;
  while (pos + 4 <= audio.length) {
    const b1 = audio[pos + 1];
    const b2 = audio[pos + 2];
    if (audio[pos] !== 0xff || (b1 & 0xe0) !== 0xe0 || (b1 & 0x18) !== 0x18 || (b1 & 0x06) !== 0x02) break;
    const kbps = MPEG1_L3_KBPS[b2 >> 4];
    const rate = MPEG1_RATES[(b2 >> 2) & 3];
    if (!kbps || !rate) break;
    const length = Math.floor((144000 * kbps) / rate) + ((b2 >> 1) & 1);
    const crc = b1 & 1 ? 0 : 2;
    const side = audio[pos + 3] >> 6 === 3 ? 17 : 32;
    frames.push({ start: pos, keep: 4 + crc + side, length });
    pos += length;
  }
  return frames;
}

/**
 * A distinct copy of an MP3 stream: every frame's main data (the Huffman-coded audio) is
 * overwritten with random bytes; headers, CRC and side info stay, and so does the first
 * frame (the LAME/Xing "Info" frame that carries the duration). Parsers see the same
 * stream; a decoder would play noise.
 */
export function scrambleMp3(audio: Buffer, frames: { start: number; keep: number; length: number }[]): Buffer {
  const out = Buffer.allocUnsafe(audio.length);
  randomFillSync(out);
  if (frames.length === 0) return out;
  audio.copy(out, 0, 0, frames[0].start + frames[0].length); // anything before + the Info frame
  for (let i = 1; i < frames.length; i++) {
    const f = frames[i];
    audio.copy(out, f.start, f.start, f.start + f.keep);
  }
  const end = frames[frames.length - 1].start + frames[frames.length - 1].length;
  if (end < audio.length) audio.copy(out, end, end); // trailing bytes (ID3v1 etc.) unchanged
  return out;
}

export interface LibraryComposition {
  files: string[];
  bytes: number;
  rows: { kind: string; files: number; bytes: number; how: string }[];
  seconds: number;
}

const GENRES = ['Rock', 'Jazz', 'Classical', 'Electronic', 'Folk', 'Hip-Hop', 'Ambient', 'Pop'];

/**
 * A music library of about `target` bytes in Artist/Album/NN Title.ext folders. Every
 * file is distinct content and parses with music-metadata:
 * - FLAC (~40%): real ffmpeg encodes of pink noise, each with its own seed, with cover art;
 * - WAV (~25%): real ffmpeg PCM encodes, each with its own seed;
 * - MP3 (the rest): three LAME encodes (320/256/192 kbit/s), copied; each copy gets its own
 *   ID3v2.3 tag (title, artist, album, track, cover) and random bytes in every frame's main
 *   data (frame headers intact).
 */
export async function generateLibrary(root: string, target: number): Promise<LibraryComposition> {
  const started = performance.now();
  const work = join(root, '..', 'gen-work');
  await mkdir(work, { recursive: true });
  const covers = await Promise.all([0, 1, 2, 3].map(async (v) => {
    const f = join(work, `cover${v}.jpg`);
    await makeCover(f, v);
    return f;
  }));
  const files: string[] = [];
  const rows: LibraryComposition['rows'] = [];
  let seed = 1000;
  let trackNo = 0;
  const place = (ext: string) => {
    const n = trackNo++;
    const artist = `Artist ${String(Math.floor(n / 24)).padStart(3, '0')}`;
    const album = `Album ${String(Math.floor(n / 12)).padStart(3, '0')}`;
    const track = (n % 12) + 1;
    return { file: join(root, artist, album, `${String(track).padStart(2, '0')} Track ${n}.${ext}`), artist, album, track, n };
  };
  const cores = availableParallelism();

  // FLAC: ~109 KB/s of pink noise; WAV: 176.4 KB/s.
  const plan = (share: number, bytesPerSecond: number, ext: Format) => {
    const specs: { file: string; spec: EncodeSpec }[] = [];
    let planned = 0;
    let i = 0;
    while (planned < target * share) {
      const seconds = [180, 300, 210, 270, 240, 150][i++ % 6];
      const p = place(ext);
      specs.push({
        file: p.file,
        spec: {
          format: ext,
          seconds,
          seed: seed++,
          cover: ext === 'flac' ? covers[p.n % covers.length] : undefined,
          tags: { title: `Track ${p.n}`, artist: p.artist, album: p.album, track: String(p.track), genre: GENRES[p.n % GENRES.length], date: String(1960 + (p.n % 60)) },
        },
      });
      planned += seconds * bytesPerSecond;
    }
    return specs;
  };
  for (const [ext, share, bps] of [['flac', 0.4, 109_000], ['wav', 0.25, 176_400]] as const) {
    const specs = plan(share, bps, ext);
    note(`encoding ${specs.length} ${ext.toUpperCase()} files with ffmpeg…`);
    let bytes = 0;
    await parallel(specs, cores, async ({ file, spec }) => {
      await encode(file, spec);
      bytes += (await stat(file)).size;
      files.push(file);
    });
    rows.push({
      kind: ext.toUpperCase(),
      files: specs.length,
      bytes,
      how:
        ext === 'flac'
          ? 'real ffmpeg FLAC encodes, pink noise, distinct seed each, 150-300 s, 600x600 JPEG cover'
          : 'real ffmpeg PCM 16-bit encodes, pink noise, distinct seed each, 150-300 s',
    });
  }

  // MP3: three real encodes, then distinct derived copies until the target is reached.
  const bases = await Promise.all(
    [['320k', 300], ['256k', 240], ['192k', 200]].map(async ([bitrate, seconds], i) => {
      const f = join(work, `base${i}.mp3`);
      await encode(f, { format: 'mp3', seconds: Number(seconds), seed: 90 + i, bitrate: String(bitrate), noId3: true });
      const audio = await readFile(f);
      const skip = id3v2Size(audio);
      const stream = audio.subarray(skip);
      return { audio: stream, frames: mp3Frames(stream) };
    }),
  );
  const coverBytes = await Promise.all(covers.map((c) => readFile(c)));
  let total = rows.reduce((s, r) => s + r.bytes, 0);
  let mp3Files = 0;
  let mp3Bytes = 0;
  note(`deriving MP3 copies up to ${fmtBytes(target)}…`);
  while (total < target) {
    const base = bases[mp3Files % bases.length];
    const p = place('mp3');
    const tag = id3v23(
      { TIT2: `Track ${p.n}`, TPE1: p.artist, TALB: p.album, TRCK: String(p.track), TYER: String(1960 + (p.n % 60)), TCON: GENRES[p.n % GENRES.length] },
      coverBytes[p.n % coverBytes.length],
    );
    const data = Buffer.concat([tag, scrambleMp3(base.audio, base.frames)]);
    await mkdir(dirname(p.file), { recursive: true });
    await writeFile(p.file, data);
    files.push(p.file);
    mp3Files++;
    mp3Bytes += data.length;
    total += data.length;
  }
  rows.push({
    kind: 'MP3',
    files: mp3Files,
    bytes: mp3Bytes,
    how: '3 LAME encodes (320/256/192k, 200-300 s) copied; each copy: own ID3v2.3 tag + cover, random bytes in every frame\'s main data (headers kept)',
  });
  files.sort();
  return { files, bytes: total, rows, seconds: (performance.now() - started) / 1000 };
}
