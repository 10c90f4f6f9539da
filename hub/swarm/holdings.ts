import type { Logger } from '../../src/log.js';
import { holdingsSchema, parsePayload, type NodeInfo } from '../../src/protocol/schemas.js';
import type { ChunkSourceInfo } from '../../src/generated/firefly/v1/ChunkSourceInfo.js';
import type { ContentHolding } from '../../src/generated/firefly/v1/ContentHolding.js';
import { setBit } from '../../src/transfer/chunk-bitmap.js';
import type { ControlChannel, IncomingMessage } from '../control/channel.js';
import type { NodeRegistry } from '../registry/registry.js';
import { DeflectionLimiter, type TransitLog } from './transit.js';

/**
 * How long after the hub sent a chunk to a peer it still answers others `elsewhere` for
 * it. The peer's holdings reach downloaders in well under a second on an idle machine,
 * but seconds on a loaded one: a short window had the hub send chunks again whenever
 * announcements lagged (5x the content in the 8-node benchmark).
 */
const DEFLECT_AFTER_SENT_MS = 10_000;
/** `elsewhere` answers to one downloader for one chunk before the hub sends it anyway (DeflectionLimiter). */
const MAX_DEFLECTIONS = 2;
/** How long one picture of what is on its way to whom serves Library.Sources (ms). */
const COMING_CACHE_MS = 200;
/** Deflection counts are forgotten after this long (ms). */
const DEFLECTIONS_KEPT_MS = 60_000;

interface Held {
  complete: boolean;
  bitmap?: Buffer;
}

interface NodeHoldings {
  serve: string | null;
  contents: Map<string, Held>;
}

/** The chunk lists the holdings map reads (the catalogue answers). */
export interface ManifestLookup {
  manifest(contentId: Buffer): { chunks: { hash: Buffer }[] } | undefined;
}

/**
 * Who holds what: every node's announced holdings (MQTT `node/<uuid>/holdings`), kept
 * while the node is online, and the answer to Library.Sources — the hub plus each peer
 * that serves, with the chunks it holds and those the hub is sending it right now.
 */
export class HoldingsMap {
  private readonly nodes = new Map<string, NodeHoldings>();
  /** Where each chunk of the contents asked about sits (content hex, index); content ids never change meaning, so this never goes stale. */
  private readonly chunkRefs = new Map<string, { content: string; index: number }[]>();
  private readonly chunkCounts = new Map<string, number>();
  private readonly deflections = new DeflectionLimiter(MAX_DEFLECTIONS, DEFLECTIONS_KEPT_MS);
  private purgeTimer?: NodeJS.Timeout;
  private coming?: { at: number; map: Map<string, Map<string, Buffer>> };

  constructor(
    private readonly channel: ControlChannel,
    private readonly registry: NodeRegistry,
    private readonly catalogue: ManifestLookup,
    private readonly transit: TransitLog,
    private readonly log: Logger,
  ) {}

  private readonly onOffline = (node: NodeInfo) => {
    this.nodes.delete(node.uuid);
    this.transit.forget(node.uuid);
  };

  async start(): Promise<void> {
    await this.transit.start();
    this.purgeTimer = setInterval(() => this.deflections.purge(), DEFLECTIONS_KEPT_MS);
    this.purgeTimer.unref();
    this.registry.on('offline', this.onOffline);
    await this.channel.handle(this.channel.topics.anyNode('holdings'), (m) => this.onHoldings(m));
  }

  async stop(): Promise<void> {
    this.registry.off('offline', this.onOffline);
    clearInterval(this.purgeTimer);
    this.deflections.clear();
    this.nodes.clear();
    await this.transit.stop();
  }

  private onHoldings(message: IncomingMessage): void {
    const where = this.channel.topics.parseNodeTopic(message.topic);
    if (!where) return this.channel.error(message.topic, 'unknown-topic', 'not a node topic: expected <prefix>/node/<uuid>/holdings');
    if (message.retained) return;
    const parsed = parsePayload(holdingsSchema, message.payload);
    if (!parsed.ok) return this.channel.error(message.topic, parsed.code, `holdings: ${parsed.message}`, null, parsed.issues);
    const h = parsed.value;
    let node = this.nodes.get(where.uuid);
    if (!node || h.reset) this.nodes.set(where.uuid, (node = { serve: h.serve, contents: new Map() }));
    node.serve = h.serve;
    for (const c of h.contents) {
      if (c.complete) node.contents.set(c.contentId, { complete: true });
      else if (c.bitmap && c.bitmap.length > 0) node.contents.set(c.contentId, { complete: false, bitmap: Buffer.from(c.bitmap, 'base64') });
      else node.contents.delete(c.contentId);
    }
    this.log.debug({ uuid: where.uuid, seq: h.seq, reset: h.reset, contents: h.contents.length, serve: h.serve }, 'holdings');
  }

  /**
   * Is the chunk on its way to a node other than `requester` that serves peers? The hub
   * then answers `elsewhere` rather than send it again: the requester fetches it from
   * that peer once it arrives (super-seeding: each chunk leaves the hub about once).
   */
  elsewhere(requester: string, hash: Buffer): boolean {
    const key = hash.toString('hex');
    // A node not announced yet counts too: a downloader that names itself always serves, and announces once its control plane is up.
    const holder = this.transit.comingTo(key, DEFLECT_AFTER_SENT_MS).some((uuid) => uuid !== requester && (this.nodes.get(uuid)?.serve ?? true) !== null);
    return holder && this.deflections.take(requester, key);
  }

  /** Has the node announced that it holds every chunk of the content (hex id)? */
  holdsWhole(uuid: string, contentId: string): boolean {
    return this.nodes.get(uuid)?.contents.get(contentId)?.complete === true;
  }

  /** What one node announced (tests and diagnostics). */
  holdingsOf(uuid: string): { serve: string | null; contents: number } | undefined {
    const n = this.nodes.get(uuid);
    return n ? { serve: n.serve, contents: n.contents.size } : undefined;
  }

  private indexChunks(id: Buffer, hex: string): void {
    if (this.chunkCounts.has(hex)) return;
    const chunks = this.catalogue.manifest(id)?.chunks;
    if (!chunks) return; // not (or no longer) in the library: nothing of it is sent
    this.chunkCounts.set(hex, chunks.length);
    this.coming = undefined; // built without this content's chunks
    chunks.forEach((c, index) => {
      const key = c.hash.toString('hex');
      const refs = this.chunkRefs.get(key);
      if (refs) refs.push({ content: hex, index });
      else this.chunkRefs.set(key, [{ content: hex, index }]);
    });
  }

  /**
   * What is on its way to whom, per content (node uuid → content hex → bitmap), from the
   * transit log. Every downloader asks several times a second and the log holds every
   * chunk sent in the last seconds, so the answer is built at most every
   * COMING_CACHE_MS and shared: on a busy hub rebuilding it per call cost more CPU
   * than serving the chunks.
   */
  private comingByNode(): Map<string, Map<string, Buffer>> {
    const now = Date.now();
    if (this.coming && now - this.coming.at < COMING_CACHE_MS) return this.coming.map;
    const map = new Map<string, Map<string, Buffer>>();
    for (const [hash, to] of this.transit.active()) {
      for (const ref of this.chunkRefs.get(hash) ?? []) {
        for (const uuid of to) {
          let perContent = map.get(uuid);
          if (!perContent) map.set(uuid, (perContent = new Map()));
          let bitmap = perContent.get(ref.content);
          if (!bitmap) perContent.set(ref.content, (bitmap = Buffer.alloc(((this.chunkCounts.get(ref.content) ?? 0) + 7) >> 3)));
          setBit(bitmap, ref.index);
        }
      }
    }
    this.coming = { at: now, map };
    return map;
  }

  /** The hub first, then every serving peer that holds or is about to hold a chunk of these contents. */
  sources(contentIds: readonly Buffer[]): ChunkSourceInfo[] {
    const out: ChunkSourceInfo[] = [{ hub: true, nodeUuid: '', address: '', holdings: [] }];
    for (const id of contentIds) this.indexChunks(id, id.toString('hex'));
    const coming = this.comingByNode();
    for (const [uuid, node] of this.nodes) {
      if (!node.serve) continue;
      const holdings: ContentHolding[] = [];
      for (const id of contentIds) {
        const hex = id.toString('hex');
        const held = node.contents.get(hex);
        if (held?.complete) {
          holdings.push({ contentId: id, complete: true });
          continue;
        }
        const toIt = coming.get(uuid)?.get(hex);
        if (held?.bitmap || toIt) holdings.push({ contentId: id, complete: false, have: held?.bitmap ?? Buffer.alloc(0), coming: toIt ?? Buffer.alloc(0) });
      }
      if (holdings.length > 0) out.push({ hub: false, nodeUuid: uuid, address: node.serve, holdings });
    }
    return out;
  }
}
