import type { Logger } from '../log.js';
import type { LibraryClient } from '../protocol/data-plane.js';
import type { ChangesReply__Output } from '../generated/firefly/v1/ChangesReply.js';
import type { DownloadProgress } from '../protocol/schemas.js';
import type { TrackManifest__Output } from '../generated/firefly/v1/TrackManifest.js';
import { emptySwarmStats, type SwarmFetcher, type SwarmStats, type SwarmTrack } from '../transfer/swarm-fetcher.js';
import type { ChunkStore } from './chunk-store.js';
import type { LibraryMirror } from './library-mirror.js';

export interface SyncOptions {
  /** all: every playable track; queue: the tracks set by setQueue (what the group plays next); none. */
  prefetch: 'all' | 'queue' | 'none';
  budgetBytes: number;
}

export interface SyncReport extends SwarmStats {
  fromVersion: number;
  toVersion: number;
  entriesChanged: number;
  entriesRemoved: number;
  manifestsFetched: number;
  chunksWanted: number;
  chunksFailed: number;
  evictedChunks: number;
  durationMs: number;
}

function unary<Req, Res>(fn: (req: Req, opts: { deadline: number }, cb: (err: Error | null, res?: Res) => void) => unknown, req: Req, ms = 30_000): Promise<Res> {
  return new Promise((resolve, reject) => fn(req, { deadline: Date.now() + ms }, (err, res) => (err ? reject(err) : resolve(res!))));
}

/**
 * Brings the node's mirror up to the hub's library version (deltas only), fetches the
 * chunk lists of new content, and fetches the chunks the node lacks. Only one sync runs
 * at a time; asking during a sync queues exactly one more.
 */
export class LibrarySync {
  private running?: Promise<SyncReport>;
  private again = false;
  /** The current and upcoming tracks (content ids): fetched under prefetch 'queue', never evicted. */
  private queue: Buffer[] = [];
  /** The chunk fetch running now (its stats fill in as chunks arrive) or the last one. */
  private download?: { active: boolean; chunksWanted: number; bytesWanted: number; stats: SwarmStats };

  constructor(
    private readonly library: LibraryClient,
    private readonly fetcher: SwarmFetcher,
    private readonly mirror: LibraryMirror,
    private readonly store: ChunkStore,
    private readonly options: SyncOptions,
    private readonly log: Logger,
  ) {}

  /**
   * What the node's group plays now and next, in order. Pinned against eviction; with
   * prefetch 'queue' it is what a sync fetches (a change starts one).
   */
  setQueue(contentIds: readonly Buffer[]): void {
    const same = contentIds.length === this.queue.length && contentIds.every((c, i) => c.equals(this.queue[i]));
    this.queue = [...contentIds];
    if (!same && this.options.prefetch === 'queue') void this.sync().catch((err: Error) => this.log.warn({ err: err.message }, 'library sync failed'));
  }

  /** The queue as last set. */
  queued(): Buffer[] {
    return [...this.queue];
  }

  /** Chunk hashes (hex) of the queue's tracks: never evicted. */
  pinned(): Set<string> {
    const out = new Set<string>();
    for (const id of this.queue) for (const c of this.mirror.manifest(id)?.chunks ?? []) out.add(c.hash.toString('hex'));
    return out;
  }

  /** What the running (or last) sync fetches and has fetched: the heartbeat carries it. */
  progress(): DownloadProgress {
    const d = this.download;
    if (!d) return { active: false, chunksWanted: 0, chunksDone: 0, bytesWanted: 0, bytesDone: 0 };
    const chunksDone = Math.min(d.chunksWanted, d.stats.chunksStored);
    return { active: d.active, chunksWanted: d.chunksWanted, chunksDone, bytesWanted: d.bytesWanted, bytesDone: Math.min(d.bytesWanted, d.stats.bytesReceived) };
  }

  /** Resolves once no sync is running (used before closing the database). */
  async idle(): Promise<void> {
    while (this.running) await this.running.catch(() => undefined);
  }

  sync(): Promise<SyncReport> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.runOnce().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        void this.sync().catch((err: Error) => this.log.warn({ err: err.message }, 'library sync failed'));
      }
    });
    return this.running;
  }

  private async runOnce(): Promise<SyncReport> {
    const started = Date.now();
    const fromVersion = this.mirror.version();
    let version = fromVersion;
    let entriesChanged = 0;
    let entriesRemoved = 0;
    for (;;) {
      const reply = await unary<{ sinceVersion: string }, ChangesReply__Output>(this.library.Changes.bind(this.library), { sinceVersion: String(version) });
      const next = Number(reply.pageVersion);
      const applied = this.mirror.apply(reply.entries, next, reply.fullResync);
      entriesChanged += applied.upserted;
      entriesRemoved += applied.removed;
      version = next;
      if (!reply.more) break;
    }
    this.mirror.pruneManifests();

    let manifestsFetched = 0;
    const contents = this.mirror.playableContent();
    for (const contentId of contents) {
      if (this.mirror.hasManifest(contentId)) continue;
      try {
        const m = await unary<{ contentId: Buffer }, TrackManifest__Output>(this.library.Manifest.bind(this.library), { contentId });
        this.mirror.putManifest(contentId, Number(m.size), m.chunks.map((c) => ({ hash: c.hash, size: c.size })));
        manifestsFetched++;
      } catch (err) {
        // The file changed again since the delta was written; the next sync catches up.
        this.log.debug({ contentId: contentId.toString('hex'), err: (err as Error).message }, 'manifest not available');
      }
    }

    let stats = emptySwarmStats();
    const wantedKeys = new Set<string>();
    let failed: Buffer[] = [];
    const prefetch = this.options.prefetch === 'all' ? contents : this.options.prefetch === 'queue' ? this.queue : [];
    const tracks: SwarmTrack[] = [];
    let bytesWanted = 0;
    for (const contentId of prefetch) {
      const m = this.mirror.manifest(contentId);
      if (!m) continue;
      const chunks = m.chunks.filter((c) => !this.store.has(c.hash));
      if (chunks.length === 0) continue;
      tracks.push({ contentId, chunks: m.chunks });
      for (const c of chunks) {
        const key = c.hash.toString('hex');
        if (!wantedKeys.has(key)) bytesWanted += c.size;
        wantedKeys.add(key);
      }
    }
    const wanted = wantedKeys.size;
    if (tracks.length > 0) {
      // The fetcher fills `stats` in as chunks arrive: progress() reads it live.
      this.download = { active: true, chunksWanted: wanted, bytesWanted, stats };
      // The whole library: rarest first spreads the chunks over the swarm; the queue: in playback order.
      try {
        ({ failed, stats } = await this.fetcher.fetch(tracks, { order: this.options.prefetch === 'queue' ? 'sequential' : 'rarest' }, stats));
      } finally {
        this.download.active = false;
      }
      if (failed.length > 0) this.log.warn({ failed: failed.length, wanted }, 'some chunks could not be fetched; the next sync tries again');
    }
    const evicted = this.store.evict(this.options.budgetBytes, this.pinned());
    const report: SyncReport = {
      fromVersion,
      toVersion: version,
      entriesChanged,
      entriesRemoved,
      manifestsFetched,
      chunksWanted: wanted,
      chunksFailed: failed.length,
      evictedChunks: evicted.chunks,
      ...stats,
      durationMs: Date.now() - started,
    };
    return report;
  }
}
