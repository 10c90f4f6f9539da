import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { parseBuffer, parseFile, selectCover, type IAudioMetadata } from 'music-metadata';
import { manifestOf, sha256, StreamingChunker, type Manifest } from '../../src/chunking/manifest.js';
import type { ChunkingParams } from '../../src/chunking/fastcdc.js';
import type { IndexedFile, TrackMetadata } from './catalogue.js';

/** The formats Firefly plays, by what the bytes are (not what the name says). */
export const PLAYABLE_FORMATS = ['mp3', 'flac', 'wav', 'ogg', 'opus', 'm4a'] as const;
export type PlayableFormat = (typeof PLAYABLE_FORMATS)[number];

/** The file changed while it was read: index it again once it settles. */
export class FileChangedWhileReading extends Error {}

export interface IndexOptions {
  inMemoryLimitBytes: number;
  chunking?: ChunkingParams;
}

/** Decides the playable format from what music-metadata found in the bytes. */
export function classify(meta: IAudioMetadata): PlayableFormat | undefined {
  const container = (meta.format.container ?? '').toLowerCase();
  const codec = (meta.format.codec ?? '').toLowerCase();
  if (container === 'flac' || (container === '' && codec === 'flac')) return 'flac';
  if (container === 'wave' || container === 'wav') return 'wav';
  if (container === 'ogg') {
    if (codec.includes('opus')) return 'opus';
    if (codec.includes('vorbis')) return 'ogg';
    if (codec.includes('flac')) return 'flac';
    return undefined;
  }
  if (container === 'mpeg' && /layer\s*3|mp3/.test(codec)) return 'mp3';
  if (/mpeg-4|m4a|mp4|isom|m4b/.test(container) && /aac|mpeg-4\/aac|alac/.test(codec)) return 'm4a';
  if (container === 'adts' || codec.startsWith('aac')) return 'm4a';
  return undefined;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined;
}

export function metadataOf(meta: IAudioMetadata, coverHash?: Buffer, coverMime?: string): TrackMetadata {
  const c = meta.common;
  const f = meta.format;
  const out: TrackMetadata = {
    title: str(c.title),
    artist: str(c.artist) ?? str(c.artists?.join(', ')),
    album: str(c.album),
    albumArtist: str(c.albumartist),
    trackNo: num(c.track?.no ?? undefined),
    discNo: num(c.disk?.no ?? undefined),
    year: num(c.year),
    genre: str(c.genre?.join(', ')),
    durationSeconds: num(f.duration),
    sampleRate: num(f.sampleRate),
    channels: num(f.numberOfChannels),
    bitsPerSample: num(f.bitsPerSample),
    codec: str(f.codec),
    container: str(f.container),
    bitrate: num(f.bitrate !== undefined ? Math.round(f.bitrate) : undefined),
    coverHash: coverHash?.toString('hex'),
    coverMime: coverMime,
  };
  for (const k of Object.keys(out) as (keyof TrackMetadata)[]) if (out[k] === undefined) delete out[k];
  return out;
}

async function chunkLargeFile(file: string, chunking?: ChunkingParams): Promise<Manifest> {
  const chunker = new StreamingChunker(chunking);
  for await (const block of createReadStream(file, { highWaterMark: 4 * 1024 * 1024 })) chunker.push(block as Buffer);
  return chunker.finish();
}

function describe(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.length > 500 ? `${msg.slice(0, 500)}…` : msg;
}

/**
 * Headers can promise minutes of audio that the file no longer holds (an interrupted
 * copy). Compare what the header implies with the bytes present.
 */
function truncation(meta: IAudioMetadata, size: number): string | undefined {
  const { bitrate, duration } = meta.format;
  if (bitrate === 0) return 'no audio frames found (truncated or corrupt file)';
  if (!bitrate || !duration) return undefined;
  const expected = (bitrate * duration) / 8;
  if (size < expected * 0.5) {
    return `truncated: the header promises ${duration.toFixed(1)} s at ${Math.round(bitrate / 1000)} kbit/s (about ${Math.round(expected / 1024)} KiB) but the file has ${Math.round(size / 1024)} KiB`;
  }
  return undefined;
}

/**
 * Reads a file once: chunks and fingerprints it, and parses its tags, stream facts and
 * cover from the same bytes. A file that is not audio, or that fails to parse, comes back
 * with a status and a reason rather than an exception; only I/O trouble and a file that
 * changes under us throw.
 */
export async function indexFile(file: string, options: IndexOptions): Promise<IndexedFile> {
  const before = await stat(file);
  if (!before.isFile()) throw new Error(`${file} is not a regular file`);
  const base = { size: before.size, mtimeMs: before.mtimeMs };
  if (before.size === 0) return { ...base, status: 'failed', error: 'empty file (0 bytes)' };

  let manifest: Manifest;
  let parsed: Promise<IAudioMetadata>;
  if (before.size <= options.inMemoryLimitBytes) {
    const data = await readFile(file);
    if (data.length !== before.size) throw new FileChangedWhileReading(file);
    manifest = manifestOf(data, options.chunking);
    // Content first: a FLAC file named .mp3 is a FLAC file. The name is only a hint for
    // bytes the detector cannot place (e.g. a bare ADTS stream).
    parsed = parseBuffer(data, { size: data.length }, { duration: true }).catch((err: unknown) =>
      /failed to determine audio format/i.test(describe(err)) ? parseBuffer(data, { path: file, size: data.length }, { duration: true }) : Promise.reject(err),
    );
  } else {
    // Too large to hold: stream it for the chunks and let the parser read what it needs.
    manifest = await chunkLargeFile(file, options.chunking);
    parsed = parseFile(file, { duration: true });
  }
  // The parse may fail while we stat below; mark its rejection handled now (it is awaited
  // further down), or Node treats it as unhandled and kills the worker thread.
  parsed.catch(() => {});
  const after = await stat(file);
  if (after.size !== before.size || after.mtimeMs !== before.mtimeMs) throw new FileChangedWhileReading(file);

  const indexed = { ...base, contentId: manifest.contentId, chunks: manifest.chunks };
  let meta: IAudioMetadata;
  try {
    meta = await parsed;
  } catch (err) {
    const reason = describe(err);
    const unsupported = /failed to determine audio format|unsupported/i.test(reason);
    return unsupported
      ? { ...indexed, status: 'unsupported', error: `not a supported audio format (${reason})` }
      : { ...indexed, status: 'failed', error: `cannot parse audio: ${reason}` };
  }
  const format = classify(meta);
  if (!format) {
    const what = [meta.format.container, meta.format.codec].filter(Boolean).join(' / ') || 'unknown';
    return { ...indexed, status: 'unsupported', error: `format ${what} is not one Firefly plays (${PLAYABLE_FORMATS.join(', ')})`, metadata: metadataOf(meta) };
  }
  // Not just missing: an Ogg Opus file cut before its first audio page has a negative duration.
  if (!(meta.format.duration! > 0) || !meta.format.sampleRate) {
    return { ...indexed, status: 'failed', format, error: 'no audio frames found (truncated or corrupt file)', metadata: metadataOf(meta) };
  }
  const truncated = truncation(meta, before.size);
  if (truncated) return { ...indexed, status: 'failed', format, error: truncated, metadata: metadataOf(meta) };
  const picture = selectCover(meta.common.picture);
  const cover = picture ? { hash: sha256(picture.data), mime: picture.format, data: Buffer.from(picture.data) } : undefined;
  return { ...indexed, status: 'ok', format, metadata: metadataOf(meta, cover?.hash, cover?.mime), cover };
}
