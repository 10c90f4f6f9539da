import { Readable } from 'node:stream';
import type { Logger } from '../../log.js';
import type { LibraryClient } from '../../protocol/data-plane.js';
import type { TrackRef } from '../../protocol/schemas.js';
import type { TrackManifest__Output } from '../../generated/firefly/v1/TrackManifest.js';
import type { SwarmFetcher } from '../../transfer/swarm-fetcher.js';
import type { ChunkStore } from '../chunk-store.js';
import type { LibraryMirror } from '../library-mirror.js';

/**
 * Streaming start: a track no member holds opens once its beginning, stored in order,
 * covers this much playing time ahead of the play position (seconds of audio, from the
 * track's bitrate: size / duration)...
 */
export const STREAM_AHEAD_SECONDS = 3;
/** ...and at least this many bytes (the whole track if smaller): a decoder must see its header and first frames. */
export const STREAM_START_MIN_BYTES = 256 * 1024;
/**
 * ...while the download rate measured so far covers the bitrate this many times over. A
 * slower download opens only once what is held lets the rest arrive, at the measured
 * rate, before the play position gets there (see streamStartBytes).
 */
export const STREAM_RATE_HEADROOM = 1.5;
/** Without a known duration (no bitrate): the former fixed rule, max(1 MiB, 10% of the track). */
export const STREAM_START_BYTES = 1024 * 1024;
export const STREAM_START_SHARE = 0.1;

/**
 * How much of a track's beginning must be stored, in order, before it opens for
 * streaming: `heldBytes` of it arrived in `elapsedMs` since its fetch began.
 *
 * With a bitrate b (bytes/s) and a measured download rate r, the margin is playing time:
 * AHEAD seconds of audio. If r falls short of b·HEADROOM, the held head H must also be
 * enough that the rest arrives before playback reaches it: H + r·t >= b·HEADROOM·t up to
 * the end of the track, i.e. H >= size · (1 − r / (b·HEADROOM)). A member that still
 * falls behind (the rate dropped later) drops out and rejoins (player.ts), not the group.
 */
export function streamStartBytes(size: number, durationMs: number | null, heldBytes: number, elapsedMs: number): number {
  if (durationMs === null || durationMs <= 0) return Math.min(size, Math.max(STREAM_START_BYTES, size * STREAM_START_SHARE));
  const bitrate = size / (durationMs / 1000);
  let need = Math.max(STREAM_START_MIN_BYTES, STREAM_AHEAD_SECONDS * bitrate);
  const rate = elapsedMs > 0 ? (heldBytes * 1000) / elapsedMs : 0;
  const wanted = bitrate * STREAM_RATE_HEADROOM;
  if (rate < wanted) need = Math.max(need, size * (1 - rate / wanted));
  return Math.min(size, need);
}

/**
 * A track's bytes for the decoder, from the chunk store. With prefetch-all the node
 * usually holds them already; otherwise the missing chunks are fetched from the swarm
 * in playback order, and the track opens as soon as its beginning is stored: the stream
 * waits for each later chunk as it arrives (and fails if one cannot be had, so this
 * member drops out rather than the group waiting).
 */
export class TrackSource {
  constructor(
    private readonly library: LibraryClient,
    private readonly swarm: SwarmFetcher,
    private readonly mirror: LibraryMirror,
    private readonly store: ChunkStore,
    private readonly log: Logger,
    /** Tests only (sim.streamStallMs): the first streamed track is held back this long just past its beginning. */
    private stallMs = 0,
  ) {}

  /** Whether every chunk of the track is stored here (its chunk list known): playing it waits for no download. */
  readonly holds = (track: TrackRef): boolean => {
    const manifest = this.mirror.manifest(Buffer.from(track.contentId, 'hex'));
    return manifest !== undefined && this.store.missing(manifest.chunks.map((c) => c.hash)).length === 0;
  };

  readonly open = async (track: TrackRef): Promise<Readable> => {
    const contentId = Buffer.from(track.contentId, 'hex');
    let manifest = this.mirror.manifest(contentId);
    if (!manifest) {
      const m = await new Promise<TrackManifest__Output>((resolve, reject) =>
        this.library.Manifest({ contentId }, { deadline: Date.now() + 15_000 }, (err, res) => (err ? reject(err) : resolve(res!))),
      ).catch((err: Error) => {
        throw new Error(`entry ${track.entryId}: the hub did not give its chunk list: ${err.message}`);
      });
      manifest = { size: Number(m.size), chunks: m.chunks.map((c) => ({ hash: c.hash, size: c.size })) };
      this.mirror.putManifest(contentId, manifest.size, manifest.chunks);
    }
    const chunks = manifest.chunks;
    const missing = this.store.missing(chunks.map((c) => c.hash));
    if (missing.length === 0) return this.store.stream(chunks);

    const started = performance.now();
    let outcome: { failed: Buffer[] } | Error | undefined;
    const fetching = this.swarm.fetch([{ contentId, chunks }], { order: 'sequential' }).then(
      (r) => {
        outcome = r;
        this.log.info({ entryId: track.entryId, chunks: missing.length, failed: r.failed.length, ms: Math.round(performance.now() - started) }, 'fetched the missing chunks of a track');
      },
      (err: Error) => (outcome = err),
    );
    const store = this.store;
    /** Resolves once chunk i is stored; throws if the fetch ended without it. */
    const arrived = async (i: number) => {
      while (!store.has(chunks[i].hash)) {
        if (outcome instanceof Error) throw new Error(`entry ${track.entryId}: fetching its chunks failed: ${outcome.message}`);
        if (outcome) throw new Error(`entry ${track.entryId}: chunk ${i} of ${chunks.length} could not be fetched from any source`);
        await Promise.race([fetching, new Promise((r) => setTimeout(r, 20))]);
      }
    };
    // Open once the head held in order is a safe margin of playing time at the measured rate.
    let head = 0;
    let headChunks = 0;
    let startBytes = 0;
    for (; headChunks < chunks.length; headChunks++) {
      startBytes = streamStartBytes(manifest.size, track.durationMs, head, performance.now() - started);
      if (head >= startBytes) break;
      await arrived(headChunks);
      head += chunks[headChunks].size;
    }
    const stallMs = this.stallMs;
    this.stallMs = 0;
    const log = this.log;
    this.log.info({ entryId: track.entryId, headBytes: head, neededBytes: Math.round(startBytes), size: manifest.size, ms: Math.round(performance.now() - started) }, 'streaming start: the beginning is here, the rest follows');
    return Readable.from(
      (async function* () {
        for (let i = 0; i < chunks.length; i++) {
          if (i === headChunks && stallMs > 0) {
            log.warn({ entryId: track.entryId, stallMs }, 'simulated stall of the stream (sim.streamStallMs; tests only)');
            await new Promise((r) => setTimeout(r, stallMs));
          }
          await arrived(i);
          const data = await store.get(chunks[i].hash);
          if (!data) throw new Error(`entry ${track.entryId}: chunk ${i} vanished from the store`);
          yield data;
        }
      })(),
      { objectMode: false },
    );
  };
}
