import { status, type sendUnaryData, type ServerUnaryCall, type ServerWritableStream } from '@grpc/grpc-js';
import { once } from 'node:events';
import type { ChunkData } from '../generated/firefly/v1/ChunkData.js';
import type { FetchRequest__Output } from '../generated/firefly/v1/FetchRequest.js';
import type { ChunksHandlers } from '../generated/firefly/v1/Chunks.js';
import type { ServingStats } from '../generated/firefly/v1/ServingStats.js';
import type { StatsRequest__Output } from '../generated/firefly/v1/StatsRequest.js';
import type { TokenBucket } from './token-bucket.js';

/** Where a server finds chunk bytes: the hub reads them from library files, a node from its store. */
export interface ChunkSource {
  /** The verified bytes of a chunk, or undefined if this server does not hold it. */
  read(hash: Buffer): Promise<Buffer | undefined>;
}

export const MAX_HASHES_PER_FETCH = 1024;

/** Call metadata key naming the downloading node (its uuid), so the hub can track what is on its way to whom. */
export const NODE_METADATA_KEY = 'firefly-node';
/** Call metadata: "1" when the chunks are needed now (playback), so the hub must not answer `elsewhere`. */
export const URGENT_METADATA_KEY = 'firefly-urgent';

export interface ChunkServiceStats {
  chunksSent: number;
  bytesSent: number;
  missing: number;
  /** Chunks answered `elsewhere` (hub): on their way to a peer already. */
  deflected: number;
  /** Hub: chunks sent again after they had already been sent to some node (the swarm's waste). */
  resent?: number;
}

/** A chunk the hub sent again: to whom, whether the call was urgent, and how long after it first left. */
export interface Resend {
  node: string;
  hash: Buffer;
  urgent: boolean;
  firstSentMsAgo: number;
}

/** One Fetch call as the hub's transit log sees it: which chunks go to which node. */
export interface TransitCall {
  sent(hash: Buffer): void;
  /** Not sent after all (answered `elsewhere`): not on its way to this node. */
  skipped(hash: Buffer): void;
  /** The call ended (completed, cancelled or failed): chunks not sent are no longer on their way. */
  end(): void;
}

export interface ChunkServiceOptions {
  /** The upload cap, shared by every call (setting grpc.uploadLimitBytesPerSecond). */
  uploadLimit?: TokenBucket;
  /** Told which chunks a named node asked for, and which were sent (hub only). */
  transit?: (node: string, hashes: readonly Buffer[]) => TransitCall;
  /** Hub only: is this chunk already on its way to another node that serves peers? Then it is not sent again. */
  elsewhere?: (node: string, hash: Buffer) => boolean;
  /** Tests only (node flag --sim-corrupt-serving): flip one byte of every chunk served. */
  corrupt?: boolean;
  /** Hub: told of every chunk sent again (counted in stats.resent): the instrument for a swarm that wastes the uplink. */
  onResend?: (resend: Resend) => void;
}

/**
 * The Chunks service, as served by the hub and by every node. Writes respect the
 * stream's back-pressure: when grpc-js reports a full buffer we wait for 'drain'
 * before reading the next chunk from disk. With an upload cap, each chunk waits for its
 * share of the bucket before it is written.
 */
export function chunkService(source: ChunkSource, stats: ChunkServiceStats, options: ChunkServiceOptions = {}): ChunksHandlers {
  /** When each chunk first left (hub only: named downloaders). */
  const firstSent = options.transit ? new Map<string, number>() : undefined;
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
      const node = call.metadata.get(NODE_METADATA_KEY)[0];
      const named = typeof node === 'string' && node.length > 0 ? node : undefined;
      const urgent = call.metadata.get(URGENT_METADATA_KEY)[0] === '1';
      const deflect = named && !urgent ? options.elsewhere : undefined;
      const transit = options.transit && named ? options.transit(named, hashes) : undefined;
      let cancelled = false;
      call.on('cancelled', () => {
        cancelled = true;
      });
      void (async () => {
        for (const hash of hashes) {
          if (cancelled) return;
          if (deflect?.(named!, hash)) {
            stats.deflected++;
            transit?.skipped(hash);
            if (!call.write({ hash, elsewhere: true })) await Promise.race([once(call, 'drain'), once(call, 'cancelled'), once(call, 'close')]);
            continue;
          }
          let data = await source.read(hash).catch(() => undefined);
          if (data && options.uploadLimit) {
            await options.uploadLimit.take(data.length);
            if (cancelled) return;
          }
          if (data && options.corrupt) {
            data = Buffer.from(data);
            data[data.length >> 1] ^= 0x5a;
          }
          const msg: ChunkData = data ? { hash, data } : { hash, missing: true };
          if (data) {
            stats.chunksSent++;
            stats.bytesSent += data.length;
            transit?.sent(hash);
            if (firstSent && named) {
              const key = hash.toString('hex');
              const first = firstSent.get(key);
              if (first === undefined) firstSent.set(key, Date.now());
              else {
                stats.resent = (stats.resent ?? 0) + 1;
                options.onResend?.({ node: named, hash, urgent, firstSentMsAgo: Date.now() - first });
              }
            }
          } else stats.missing++;
          if (!call.write(msg)) await Promise.race([once(call, 'drain'), once(call, 'cancelled'), once(call, 'close')]);
        }
        call.end();
      })()
        .catch((err: Error) => {
          if (!cancelled) call.emit('error', { code: status.INTERNAL, details: err.message });
        })
        .finally(() => transit?.end());
    },
    Stats(_call: ServerUnaryCall<StatsRequest__Output, ServingStats>, callback: sendUnaryData<ServingStats>) {
      callback(null, {
        chunksSent: String(stats.chunksSent),
        bytesSent: String(stats.bytesSent),
        missing: String(stats.missing),
        deflected: String(stats.deflected),
        uploadLimitBytesPerSecond: String(options.uploadLimit?.bytesPerSecond ?? 0),
      });
    },
  };
}
