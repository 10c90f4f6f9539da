import type { Logger } from '../log.js';
import { MAX_PAYLOAD_BYTES, type ContentHolding, type Holdings } from '../protocol/schemas.js';
import { bitmapOf, countBits, setBit } from '../transfer/chunk-bitmap.js';
import type { ChunkRef } from '../transfer/swarm-fetcher.js';
import type { ChunkStore } from './chunk-store.js';
import type { LibraryMirror } from './library-mirror.js';

/** Room left in each message for the envelope (seq, reset, serve). */
const PAGE_BYTES = MAX_PAYLOAD_BYTES - 1024;

/**
 * Tells the hub which chunks this node holds and where it serves them (topic
 * `node/<uuid>/holdings`): the whole picture after every welcome and after evictions
 * (`reset`, in pages under the payload limit), and only the contents that changed
 * otherwise, at most once per `debounceMs`.
 */
export class HoldingsAnnouncer {
  private readonly dirty = new Set<string>();
  /** Bitmaps of contents announced since the last snapshot, kept up to date as chunks arrive. */
  private readonly bitmaps = new Map<string, { bitmap: Buffer; count: number }>();
  private resetPending = false;
  private timer?: NodeJS.Timeout;
  private seq = 0;
  private stopped = false;

  constructor(
    private readonly mirror: LibraryMirror,
    private readonly store: ChunkStore,
    /** Publishes one message; false when the control plane is down (the next welcome sends everything). */
    private readonly send: (holdings: Holdings) => boolean,
    /** HOST:PORT peers fetch from, or null while the node does not serve. */
    private readonly serve: () => string | null,
    private readonly log: Logger,
    /** Short: a peer can serve a chunk only once the hub knows it holds it. */
    private readonly debounceMs = 50,
  ) {}

  /** These chunks arrived. */
  changed(refs: readonly ChunkRef[]): void {
    for (const r of refs) {
      this.bitmaps.get(r.content) && setBit(this.bitmaps.get(r.content)!.bitmap, r.index);
      this.dirty.add(r.content);
    }
    this.schedule();
  }

  /** Everything again (after a welcome: the hub may have restarted; after evictions). */
  snapshot(): void {
    this.resetPending = true;
    this.bitmaps.clear();
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      try {
        this.flush();
      } catch (err) {
        // The store is closing (stop in progress).
        this.log.debug({ err: (err as Error).message }, 'holdings not sent');
      }
    }, this.debounceMs);
  }

  /** What the node holds of one content. */
  holdingOf(contentHex: string): ContentHolding {
    let known = this.bitmaps.get(contentHex);
    if (!known) {
      const chunks = this.mirror.manifest(Buffer.from(contentHex, 'hex'))?.chunks;
      // No chunk list yet (a welcome during the first sync): nothing held, and nothing to
      // cache. A zero-length bitmap kept here would swallow every chunk that arrives later,
      // and the hub would never learn this node holds them.
      if (!chunks) return { contentId: contentHex };
      known = { bitmap: bitmapOf(chunks.length, (i) => this.store.has(chunks[i].hash)), count: chunks.length };
      this.bitmaps.set(contentHex, known);
    }
    const { bitmap, count } = known;
    const held = countBits(bitmap);
    if (count > 0 && held === count) return { contentId: contentHex, complete: true };
    return held > 0 ? { contentId: contentHex, bitmap: bitmap.toString('base64') } : { contentId: contentHex };
  }

  private flush(): void {
    const reset = this.resetPending;
    let contents: ContentHolding[];
    if (reset) {
      this.dirty.clear();
      contents = this.mirror
        .playableContent()
        .map((c) => this.holdingOf(c.toString('hex')))
        .filter((h) => h.complete || h.bitmap);
    } else {
      contents = [...this.dirty].map((c) => this.holdingOf(c));
      this.dirty.clear();
    }
    if (!reset && contents.length === 0) return;
    const serve = this.serve();
    const pages: ContentHolding[][] = [[]];
    let bytes = 0;
    for (const h of contents) {
      const size = 100 + (h.bitmap?.length ?? 0);
      if (bytes + size > PAGE_BYTES || pages[pages.length - 1].length >= 4096) {
        pages.push([]);
        bytes = 0;
      }
      pages[pages.length - 1].push(h);
      bytes += size;
    }
    this.resetPending = false;
    for (const [i, page] of pages.entries()) {
      if (!this.send({ seq: this.seq++, reset: reset && i === 0, serve, contents: page })) {
        // Not connected: the welcome that follows the reconnect sends everything.
        this.resetPending = true;
        return;
      }
    }
  }
}
