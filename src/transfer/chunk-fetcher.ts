import type { ChunksClient } from '../protocol/data-plane.js';
import type { ChunkData__Output } from '../generated/firefly/v1/ChunkData.js';
import { BadChunkError, type ChunkStore } from '../node/chunk-store.js';

export interface FetchStats {
  /** Chunk payload bytes that arrived, good or bad. */
  bytesReceived: number;
  chunksStored: number;
  /** Chunks whose bytes did not match their hash: thrown away and asked for again. */
  chunksRejected: number;
  /** Chunks the source said it does not hold. */
  missing: number;
}

export function emptyFetchStats(): FetchStats {
  return { bytesReceived: 0, chunksStored: 0, chunksRejected: 0, missing: 0 };
}

export interface FetchOptions {
  batchChunks: number;
  /** Fetch calls open at once. */
  inFlight: number;
  /** How often one chunk is asked for before giving up on it in this round. */
  maxAttempts: number;
  deadlineMs: number;
}

export const DEFAULT_FETCH: FetchOptions = { batchChunks: 32, inFlight: 4, maxAttempts: 4, deadlineMs: 120_000 };

/**
 * Fetches chunks into the store, verifying each on arrival. Chunks that arrive damaged,
 * or not at all (a dropped stream), are asked for again up to maxAttempts times.
 * Returns the hashes that could not be had.
 */
export async function fetchChunks(
  client: ChunksClient,
  wanted: readonly Buffer[],
  store: ChunkStore,
  stats: FetchStats,
  options: FetchOptions = DEFAULT_FETCH,
  onError: (err: Error) => void = () => {},
): Promise<Buffer[]> {
  const attempts = new Map<string, number>();
  const failed: Buffer[] = [];
  let queue = [...wanted];
  while (queue.length > 0) {
    const retry: Buffer[] = [];
    const batches: Buffer[][] = [];
    for (let i = 0; i < queue.length; i += options.batchChunks) batches.push(queue.slice(i, i + options.batchChunks));
    const worker = async () => {
      for (let batch = batches.shift(); batch; batch = batches.shift()) {
        const pending = new Map(batch.map((h) => [h.toString('hex'), h]));
        try {
          const call = client.Fetch({ hashes: batch }, { deadline: Date.now() + options.deadlineMs });
          for await (const msg of call as AsyncIterable<ChunkData__Output>) {
            const key = msg.hash.toString('hex');
            const hash = pending.get(key);
            if (!hash) continue; // not something we asked for
            if (msg.missing) {
              stats.missing++;
              continue; // stays pending: counted as a failed attempt below
            }
            stats.bytesReceived += msg.data.length;
            try {
              store.put(hash, msg.data);
              stats.chunksStored++;
              pending.delete(key);
            } catch (err) {
              if (!(err instanceof BadChunkError)) throw err;
              stats.chunksRejected++;
              onError(err);
            }
          }
        } catch (err) {
          onError(err as Error);
        }
        for (const [key, hash] of pending) {
          const n = (attempts.get(key) ?? 0) + 1;
          attempts.set(key, n);
          (n >= options.maxAttempts ? failed : retry).push(hash);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(options.inFlight, batches.length) }, worker));
    queue = retry;
  }
  return failed;
}
