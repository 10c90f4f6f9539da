import { createCipheriv, createHash } from 'node:crypto';

/**
 * Deterministic pseudo-random bytes: AES-128-CTR keystream under a key derived from
 * `seed`. The same (n, seed) gives the same bytes on every machine and Node version.
 */
export function pseudoRandomBytes(n: number, seed: number | string = 1): Buffer {
  const key = createHash('sha256').update(`firefly-test-${seed}`).digest();
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  return Buffer.concat([cipher.update(Buffer.alloc(n)), cipher.final()]);
}
