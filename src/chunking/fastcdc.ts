import { createHash } from 'node:crypto';

/**
 * FastCDC content-defined chunking (Xia et al., USENIX ATC '16): a gear hash rolled
 * over the bytes, cut-point skipping below the minimum size, and normalized chunking
 * (a stricter mask before the average size, a looser one after it) so chunk sizes
 * cluster around the average.
 *
 * The gear table and the masks are part of the content addressing: changing them
 * changes every chunk hash in every library, so they are fixed here for good.
 */

export interface ChunkingParams {
  minSize: number;
  avgSize: number;
  maxSize: number;
}

/**
 * 16 KiB / 64 KiB / 256 KiB. Chosen from `npm run bench` (see docs/chunking.md): a
 * re-tag costs about one average chunk beyond the edited bytes, a 5 MB track is ~80
 * chunks (small manifests, few catalogue rows), and throughput is within a few per cent
 * of the largest sizes tried.
 */
export const DEFAULT_CHUNKING: Readonly<ChunkingParams> = Object.freeze({
  minSize: 16 * 1024,
  avgSize: 64 * 1024,
  maxSize: 256 * 1024,
});

/** 256 pseudo-random 32-bit values, derived from SHA-256 so anyone can rebuild them. */
export const GEAR: Int32Array = (() => {
  const table = new Int32Array(256);
  for (let i = 0; i < 256; i++) {
    table[i] = createHash('sha256').update(`firefly-gear-${i}`).digest().readInt32LE(0);
  }
  return table;
})();

/** A mask of the top `bits` bits of a 32-bit word: those bits carry the most history. */
function topBits(bits: number): number {
  return bits >= 32 ? -1 : ((0xffffffff << (32 - bits)) | 0);
}

export function validateParams(p: ChunkingParams): void {
  const pow2 = (n: number) => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
  if (!pow2(p.avgSize)) throw new RangeError(`chunk avgSize must be a power of two, got ${p.avgSize}`);
  if (!(p.minSize >= 64 && p.minSize < p.avgSize && p.avgSize < p.maxSize)) {
    throw new RangeError(`chunk sizes must satisfy 64 <= min < avg < max, got ${p.minSize}/${p.avgSize}/${p.maxSize}`);
  }
  if (p.maxSize > 16 * 1024 * 1024) throw new RangeError(`chunk maxSize must be at most 16 MiB, got ${p.maxSize}`);
}

/**
 * Finds chunk boundaries. Feed it the data in order with `cut`; it never needs to see
 * more than `maxSize` bytes past the start of the chunk it is working on.
 */
export class FastCdc {
  readonly params: Readonly<ChunkingParams>;
  private readonly maskS: number;
  private readonly maskL: number;

  constructor(params: ChunkingParams = DEFAULT_CHUNKING) {
    validateParams(params);
    this.params = Object.freeze({ ...params });
    const bits = Math.log2(params.avgSize);
    // Normalization level 2: two bits stricter before the average, two looser after.
    this.maskS = topBits(bits + 2);
    this.maskL = topBits(bits - 2);
  }

  /**
   * Length of the chunk that starts at `start`, looking at `data[start..end)`.
   * When fewer than `maxSize` bytes are available and `final` is false, returns 0 if
   * no cut point was found yet (the caller must supply more data first).
   */
  cut(data: Uint8Array, start: number, end: number, final: boolean): number {
    const { minSize, avgSize, maxSize } = this.params;
    const available = end - start;
    if (available <= minSize) return final ? available : 0;
    const limit = available >= maxSize ? start + maxSize : end;
    let normal = start + avgSize;
    if (normal > limit) normal = limit;
    const gear = GEAR;
    const maskS = this.maskS;
    const maskL = this.maskL;
    let h = 0;
    let i = start + minSize;
    for (; i < normal; i++) {
      h = ((h << 1) + gear[data[i]]) | 0;
      if ((h & maskS) === 0) return i + 1 - start;
    }
    for (; i < limit; i++) {
      h = ((h << 1) + gear[data[i]]) | 0;
      if ((h & maskL) === 0) return i + 1 - start;
    }
    if (limit - start === maxSize || final) return limit - start;
    return 0;
  }

  /** All chunk lengths of a buffer that holds a whole file. */
  lengths(data: Uint8Array): number[] {
    const out: number[] = [];
    let pos = 0;
    while (pos < data.length) {
      const n = this.cut(data, pos, data.length, true);
      out.push(n);
      pos += n;
    }
    return out;
  }
}
