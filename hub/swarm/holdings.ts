import type { Logger } from '../../src/log.js';
import { holdingsSchema, parsePayload, type NodeInfo } from '../../src/protocol/schemas.js';
import type { ChunkSourceInfo } from '../../src/generated/firefly/v1/ChunkSourceInfo.js';
import type { ContentHolding } from '../../src/generated/firefly/v1/ContentHolding.js';
import { setBit } from '../../src/transfer/chunk-bitmap.js';
import type { ControlChannel, IncomingMessage } from '../control/channel.js';
import type { NodeRegistry } from '../registry/registry.js';
import type { TransitLog } from './transit.js';

/** How long after the hub sent a chunk to a peer it still answers others `elsewhere` for it (the peer's holdings take ~0.2 s). */
const DEFLECT_AFTER_SENT_MS = 2000;

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
    this.registry.on('offline', this.onOffline);
    await this.channel.handle(this.channel.topics.anyNode('holdings'), (m) => this.onHoldings(m));
  }

  async stop(): Promise<void> {
    this.registry.off('offline', this.onOffline);
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
    // A node not announced yet counts too: a downloader that names itself always serves, and announces once its control plane is up.
    // Only while it is being sent or just arrived: a requester still asking later evidently cannot use that peer.
    return this.transit.comingTo(hash.toString('hex'), DEFLECT_AFTER_SENT_MS).some((uuid) => uuid !== requester && (this.nodes.get(uuid)?.serve ?? true) !== null);
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
    chunks.forEach((c, index) => {
      const key = c.hash.toString('hex');
      const refs = this.chunkRefs.get(key);
      if (refs) refs.push({ content: hex, index });
      else this.chunkRefs.set(key, [{ content: hex, index }]);
    });
  }

  /** The hub first, then every serving peer that holds or is about to hold a chunk of these contents. */
  sources(contentIds: readonly Buffer[]): ChunkSourceInfo[] {
    const out: ChunkSourceInfo[] = [{ hub: true, nodeUuid: '', address: '', holdings: [] }];
    const asked = new Set<string>();
    for (const id of contentIds) {
      const hex = id.toString('hex');
      asked.add(hex);
      this.indexChunks(id, hex);
    }
    // What is on its way to whom, per content: from the (short) transit log, not from every chunk.
    const coming = new Map<string, Map<string, Buffer>>();
    for (const [hash, to] of this.transit.active()) {
      for (const ref of this.chunkRefs.get(hash) ?? []) {
        if (!asked.has(ref.content)) continue;
        for (const uuid of to) {
          let perContent = coming.get(uuid);
          if (!perContent) coming.set(uuid, (perContent = new Map()));
          let bitmap = perContent.get(ref.content);
          if (!bitmap) perContent.set(ref.content, (bitmap = Buffer.alloc(((this.chunkCounts.get(ref.content) ?? 0) + 7) >> 3)));
          setBit(bitmap, ref.index);
        }
      }
    }
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
