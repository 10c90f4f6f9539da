import { status, type ServerWritableStream } from '@grpc/grpc-js';
import { once } from 'node:events';
import type { ChunkData } from '../generated/firefly/v1/ChunkData.js';
import type { FetchRequest__Output } from '../generated/firefly/v1/FetchRequest.js';
import type { ChunksHandlers } from '../generated/firefly/v1/Chunks.js';

/** Where a server finds chunk bytes: the hub reads them from library files, a node from its store. */
export interface ChunkSource {
  /** The verified bytes of a chunk, or undefined if this server does not hold it. */
  read(hash: Buffer): Promise<Buffer | undefined>;
}

export const MAX_HASHES_PER_FETCH = 1024;

export interface ChunkServiceStats {
  chunksSent: number;
  bytesSent: number;
  missing: number;
}

/**
 * The Chunks service, as served by the hub and by every node. Writes respect the
 * stream's back-pressure: when grpc-js reports a full buffer we wait for 'drain'
 * before reading the next chunk from disk.
 */
export function chunkService(source: ChunkSource, stats: ChunkServiceStats): ChunksHandlers {
  return {
    Fetch(call: ServerWritableStream<FetchRequest__Output, ChunkData>) {
      const hashes = call.request.hashes ?? [];
      if (hashes.length > MAX_HASHES_PER_FETCH) {
        call.emit('error', { code: status.INVALID_ARGUMENT, details: `at most ${MAX_HASHES_PER_FETCH} hashes per Fetch, got ${hashes.length}` });
        return;
      }
      const bad = hashes.findIndex((h) => h.length !== 32);
      if (bad >= 0) {
        call.emit('error', { code: status.INVALID_ARGUMENT, details: `hash #${bad} is ${hashes[bad].length} bytes; SHA-256 hashes are 32` });
        return;
      }
      let cancelled = false;
      call.on('cancelled', () => {
        cancelled = true;
      });
      void (async () => {
        for (const hash of hashes) {
          if (cancelled) return;
          const data = await source.read(hash).catch(() => undefined);
          const msg: ChunkData = data ? { hash, data } : { hash, missing: true };
          if (data) {
            stats.chunksSent++;
            stats.bytesSent += data.length;
          } else stats.missing++;
          if (!call.write(msg)) await Promise.race([once(call, 'drain'), once(call, 'cancelled'), once(call, 'close')]);
        }
        call.end();
      })().catch((err: Error) => {
        if (!cancelled) call.emit('error', { code: status.INTERNAL, details: err.message });
      });
    },
  };
}
