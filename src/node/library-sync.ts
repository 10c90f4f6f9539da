import type { Logger } from '../log.js';
import type { ChunksClient, LibraryClient } from '../protocol/data-plane.js';
import type { ChangesReply__Output } from '../generated/firefly/v1/ChangesReply.js';
import type { TrackManifest__Output } from '../generated/firefly/v1/TrackManifest.js';
import { fetchChunks, emptyFetchStats, DEFAULT_FETCH, type FetchStats } from '../transfer/chunk-fetcher.js';
import type { ChunkStore } from './chunk-store.js';
import type { LibraryMirror } from './library-mirror.js';

export interface SyncOptions {
  prefetch: 'all' | 'none';
  budgetBytes: number;
  batchChunks: number;
}

export interface SyncReport extends FetchStats {
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

  constructor(
    private readonly library: LibraryClient,
    private readonly chunks: ChunksClient,
    private readonly mirror: LibraryMirror,
    private readonly store: ChunkStore,
    private readonly options: SyncOptions,
    private readonly log: Logger,
  ) {}

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

    const stats = emptyFetchStats();
    let wanted: Buffer[] = [];
    let failed: Buffer[] = [];
    if (this.options.prefetch === 'all') {
      const all: Buffer[] = [];
      for (const contentId of contents) for (const c of this.mirror.manifest(contentId)?.chunks ?? []) all.push(c.hash);
      wanted = this.store.missing(all);
      failed = await fetchChunks(this.chunks, wanted, this.store, stats, { ...DEFAULT_FETCH, batchChunks: this.options.batchChunks }, (err) =>
        this.log.warn({ err: err.message }, 'chunk fetch problem'),
      );
    }
    const evicted = this.store.evict(this.options.budgetBytes);
    const report: SyncReport = {
      fromVersion,
      toVersion: version,
      entriesChanged,
      entriesRemoved,
      manifestsFetched,
      chunksWanted: wanted.length,
      chunksFailed: failed.length,
      evictedChunks: evicted.chunks,
      ...stats,
      durationMs: Date.now() - started,
    };
    return report;
  }
}
