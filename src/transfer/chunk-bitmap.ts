/**
 * Which chunks of a content a source holds, as a bitmap over the content's chunk list:
 * chunk i is bit (i & 7) of byte i >> 3. The same layout on MQTT (base64) and gRPC (bytes).
 */

export function bitmapOf(count: number, held: (index: number) => boolean): Buffer {
  const out = Buffer.alloc((count + 7) >> 3);
  for (let i = 0; i < count; i++) if (held(i)) out[i >> 3] |= 1 << (i & 7);
  return out;
}

export function hasBit(bitmap: Uint8Array, index: number): boolean {
  const byte = index >> 3;
  return byte < bitmap.length && (bitmap[byte] & (1 << (index & 7))) !== 0;
}

export function setBit(bitmap: Uint8Array, index: number): void {
  bitmap[index >> 3] |= 1 << (index & 7);
}

export function countBits(bitmap: Uint8Array): number {
  let n = 0;
  for (let b of bitmap) for (; b; b &= b - 1) n++;
  return n;
}
