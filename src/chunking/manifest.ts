import { createHash, hash as oneShotHash } from 'node:crypto';
import { FastCdc, DEFAULT_CHUNKING, type ChunkingParams } from './fastcdc.js';

/** One chunk of a file: where it is and what it hashes to. */
export interface Chunk {
  hash: Buffer; // SHA-256, 32 bytes
  offset: number;
  size: number;
}

export interface Manifest {
  /** SHA-256 over the concatenated chunk hashes: the file's identity. */
  contentId: Buffer;
  size: number;
  chunks: Chunk[];
}

export function sha256(data: Uint8Array): Buffer {
  return oneShotHash('sha256', data, 'buffer');
}

export function contentIdOf(chunkHashes: readonly Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const c of chunkHashes) h.update(c);
  return h.digest();
}

/** Chunks and fingerprints a whole file held in memory. */
export function manifestOf(data: Uint8Array, params: ChunkingParams = DEFAULT_CHUNKING): Manifest {
  const cdc = new FastCdc(params);
  const chunks: Chunk[] = [];
  let offset = 0;
  for (const size of cdc.lengths(data)) {
    chunks.push({ hash: sha256(data.subarray(offset, offset + size)), offset, size });
    offset += size;
  }
  return { contentId: contentIdOf(chunks.map((c) => c.hash)), size: data.length, chunks };
}

/**
 * Chunks and fingerprints a stream of blocks (a file too large to hold at once).
 * Keeps at most one maximum chunk plus one block in memory.
 */
export class StreamingChunker {
  private readonly cdc: FastCdc;
  private pending: Buffer = Buffer.alloc(0);
  private offset = 0;
  readonly chunks: Chunk[] = [];

  constructor(params: ChunkingParams = DEFAULT_CHUNKING) {
    this.cdc = new FastCdc(params);
  }

  push(block: Uint8Array): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, block]) : Buffer.from(block);
    this.drain(false);
  }

  finish(): Manifest {
    this.drain(true);
    return { contentId: contentIdOf(this.chunks.map((c) => c.hash)), size: this.offset, chunks: this.chunks };
  }

  private drain(final: boolean): void {
    let pos = 0;
    const buf = this.pending;
    while (pos < buf.length) {
      const n = this.cdc.cut(buf, pos, buf.length, final);
      if (n === 0) break;
      this.chunks.push({ hash: sha256(buf.subarray(pos, pos + n)), offset: this.offset, size: n });
      this.offset += n;
      pos += n;
    }
    this.pending = buf.subarray(pos);
  }
}
