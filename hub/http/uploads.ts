import { randomBytes } from 'node:crypto';
import { constants, createWriteStream } from 'node:fs';
import { copyFile, link, mkdir, open, realpath, unlink } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ApiError } from './errors.js';

/**
 * Uploads from the web page into the library: the name is cleaned, the bytes go to a
 * hidden temporary file beside the target (the library watcher ignores dotfiles), the
 * content is checked to be audio, and the file is linked to its final name, which fails
 * rather than overwrite. The watcher then indexes it like any file copied in by hand.
 */

/** Extensions Firefly plays (what the bytes are is checked separately). */
export const UPLOAD_EXTENSIONS = ['mp3', 'flac', 'wav', 'ogg', 'oga', 'opus', 'm4a', 'mp4', 'aac'] as const;

const MAX_NAME_BYTES = 200;

/**
 * A safe file name from what a browser sent: the last path segment only (both / and \),
 * no control or reserved characters, no leading dots (no hidden files, no `..`), at most
 * 200 bytes, with an audio extension. Throws ApiError('invalid') naming what is wrong.
 */
export function sanitizeUploadName(raw: string): string {
  const last = raw.split(/[\\/]/).pop() ?? '';
  let name = last
    .normalize('NFC')
    .replace(/[\u0000-\u001f\u007f<>:"|?*]/g, '')
    .replace(/^[\s.]+/, '')
    .replace(/[\s.]+$/, '')
    .trim();
  if (name === '') throw new ApiError('invalid', `file name ${JSON.stringify(raw.slice(0, 100))} has nothing left once path parts and reserved characters are removed`);
  const dot = name.lastIndexOf('.');
  const ext = dot > 0 ? name.slice(dot + 1).toLowerCase() : '';
  if (!(UPLOAD_EXTENSIONS as readonly string[]).includes(ext)) {
    throw new ApiError('unsupported-type', `${JSON.stringify(name.slice(0, 100))}: not an audio file name (expected .${UPLOAD_EXTENSIONS.join(', .')})`);
  }
  while (Buffer.byteLength(name) > MAX_NAME_BYTES) {
    const stem = name.slice(0, name.lastIndexOf('.'));
    name = `${stem.slice(0, -1)}.${ext}`;
  }
  return name;
}

/** What the first bytes of a file say it is, or undefined when it is no audio Firefly knows. */
export function sniffAudio(head: Buffer): string | undefined {
  const ascii = (start: number, end: number) => head.subarray(start, end).toString('latin1');
  if (ascii(0, 4) === 'fLaC') return 'flac';
  if (ascii(0, 4) === 'OggS') return 'ogg';
  if (ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WAVE') return 'wav';
  if (ascii(4, 8) === 'ftyp') return 'm4a';
  if (ascii(0, 3) === 'ID3') {
    // An ID3v2 tag may precede FLAC as well as MP3; either way audio follows the tag.
    return 'mp3';
  }
  // An MPEG audio frame (MP3) or an ADTS frame (AAC): 11 set sync bits.
  if (head.length >= 2 && head[0] === 0xff && (head[1] & 0xe0) === 0xe0) return (head[1] & 0x06) === 0 ? 'aac' : 'mp3';
  return undefined;
}

/**
 * Gives the finished temporary file its name, failing with EEXIST if the name is taken.
 * A hard link does it in one step; file systems without hard links (FAT, exFAT, some
 * network shares) get an exclusive copy instead, which the watcher's settle time keeps
 * from being indexed half-written.
 */
async function placeWithoutReplacing(temp: string, target: string): Promise<void> {
  try {
    await link(temp, target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw err;
    await copyFile(temp, target, constants.COPYFILE_EXCL);
  }
}

export interface StoredUpload {
  /** Absolute path of the new file. */
  path: string;
  /** Its path inside the library folder, '/'-separated (as the catalogue names it). */
  libraryPath: string;
  name: string;
  size: number;
  format: string;
}

/**
 * Writes one uploaded file into `folder` (inside `root`) under a cleaned name, atomically,
 * never replacing a file. Throws ApiError for a bad name, a file too large, content that
 * is not audio, or a name already taken; leaves nothing behind when it fails.
 */
export async function storeUpload(root: string, folder: string, rawName: string, data: Readable, maxBytes: number): Promise<StoredUpload> {
  const name = sanitizeUploadName(rawName);
  root = resolve(root);
  const dir = resolve(root, folder);
  await mkdir(dir, { recursive: true });
  // The folder setting or a symlink must not lead outside the library.
  const rootReal = await realpath(root);
  const dirReal = await realpath(dir);
  const rel = relative(rootReal, dirReal);
  if (rel.startsWith('..') || rel.startsWith(sep)) throw new ApiError('internal', `upload folder ${dirReal} is outside the library folder ${rootReal} (setting web.uploadFolder)`);
  const target = join(dir, name);
  const temp = join(dir, `.upload-${randomBytes(6).toString('hex')}.part`);
  let size = 0;
  try {
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        done(null, chunk);
      },
    });
    // The multipart parser stops at the limit and marks the stream truncated (the rest of
    // the request is read and dropped, so the client gets this answer, not a reset).
    await pipeline(data, counter, createWriteStream(temp, { flags: 'wx', mode: 0o644 }));
    if (size > maxBytes) throw new ApiError('too-large', `${name}: larger than the upload limit of ${maxBytes} bytes (setting web.uploadMaxBytes)`);
    if ((data as Readable & { truncated?: boolean }).truncated) throw new ApiError('too-large', `${name}: larger than the upload limit of ${maxBytes} bytes (setting web.uploadMaxBytes)`);
    if (size === 0) throw new ApiError('invalid', `${name}: the file is empty`);
    const handle = await open(temp, 'r');
    const head = Buffer.alloc(64);
    try {
      await handle.read(head, 0, 64, 0);
      await handle.sync();
    } finally {
      await handle.close();
    }
    const format = sniffAudio(head);
    if (!format) throw new ApiError('unsupported-type', `${name}: the content is not audio Firefly plays (MP3, FLAC, WAV, Ogg Vorbis/Opus, M4A/AAC), whatever the name says`);
    // link() fails with EEXIST instead of replacing: an upload never overwrites a file.
    try {
      await placeWithoutReplacing(temp, target);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new ApiError('conflict', `${relative(root, target)} exists already in the library; rename the file or delete the old one first`);
      throw err;
    }
    return { path: target, libraryPath: relative(root, target).split(sep).join('/'), name, size, format };
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}
