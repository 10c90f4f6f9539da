import { Metadata, status } from '@grpc/grpc-js';
import { randomInt } from 'node:crypto';
import type { Logger } from '../log.js';
import { chunksClient, type ChunksClient } from '../protocol/data-plane.js';
import type { ChunkData__Output } from '../generated/firefly/v1/ChunkData.js';
import type { ChunkSourceInfo__Output } from '../generated/firefly/v1/ChunkSourceInfo.js';
import { BadChunkError, type ChunkStore } from '../node/chunk-store.js';
import { hasBit } from './chunk-bitmap.js';
import { NODE_METADATA_KEY, URGENT_METADATA_KEY } from './chunk-service.js';

/** Where a chunk sits: a content (hex id) and its index in that content's chunk list. */
export interface ChunkRef {
  content: string;
  index: number;
}

/** One content's chunk list, in playback order. */
export interface SwarmTrack {
  contentId: Buffer;
  chunks: readonly { hash: Buffer; size: number }[];
}

/**
 * sequential: in the order given (playback order: the next chunk to play first, and the
 * hub may serve the next few even when peers hold them). rarest: the chunks fewest
 * sources hold first, and the hub only for chunks no usable peer holds or is being sent.
 */
export type FetchOrder = 'sequential' | 'rarest';

/** Where a downloader learns who holds what (the hub's Library.Sources). */
export type SourceDirectory = (contentIds: Buffer[]) => Promise<ChunkSourceInfo__Output[]>;

export interface FetchStats {
  /** Chunk payload bytes that arrived, good or bad. */
  bytesReceived: number;
  chunksStored: number;
  /** Chunks whose bytes did not match their hash: thrown away and asked for again. */
  chunksRejected: number;
  /** Chunks a source said it does not hold. */
  missing: number;
}

export interface SwarmStats extends FetchStats {
  bytesFromHub: number;
  bytesFromPeers: number;
  /** Chunks the hub answered `elsewhere` (on their way to a peer). */
  deflected: number;
  /** Sources ignored after repeated bad chunks, during this fetch. */
  sourcesBanned: number;
}

export interface SwarmOptions {
  /** This node's uuid: named to the hub on every Fetch, and never its own source. */
  self: string;
  /** Makes the client for a peer's chunk server (with credentials on: one that presents the swarm token). */
  peerClient?: (address: string) => ChunksClient;
  /** Fetch from peers too; false: the hub only. */
  peers: boolean;
  /** Fetch calls open at once to one source. */
  callsPerSource: number;
  /** Chunks asked for in one call to the hub (small: a capped hub's queue is what other nodes may wait on). */
  chunksPerCall: number;
  /** Chunks asked for in one call to a peer. */
  peerChunksPerCall: number;
  /** After the hub answers `elsewhere`, wait this long before asking the hub for that chunk again (ms). */
  elsewhereRetryMs: number;
  /** How often holdings are asked for again while fetching (ms). */
  refreshMs: number;
  /**
   * Playback order: the same, faster. Every member of a group wants the same few chunks
   * at once; the sooner a downloader hears that a peer got one, the sooner it takes it
   * from that peer instead of waiting or asking the hub (one track's holdings: cheap).
   */
  playbackRefreshMs: number;
  playbackElsewhereRetryMs: number;
  /** Failed tries (errors, bad bytes) of one chunk before this fetch gives up on it. */
  maxAttempts: number;
  /** Bad chunks from one source before it is ignored. */
  banAfterBadChunks: number;
  banMs: number;
  /**
   * Sequential order: the first this many bytes still wanted (the beginning playback
   * waits for) are asked of the hub as urgent — it must not answer `elsewhere` — unless a
   * peer already holds them. Past them a chunk comes from the hub only when no peer holds
   * it or is being sent it, so the rest of a track every member plays leaves the hub about
   * once too.
   */
  urgentBytes: number;
  /**
   * Sequential order, past the beginning: one of the next `frontierChunks` still missing
   * that has waited this long (ms) for a peer becomes urgent, so a peer slow to deliver
   * never leaves playback without audio; the hub may then send it a second time.
   */
  frontierWaitMs: number;
  frontierChunks: number;
  /** A call gets at least this long, and several times its expected duration (ms). */
  minCallMs: number;
  /** Give up on what is left when nothing arrived for this long (ms). */
  stallMs: number;
}

export const DEFAULT_SWARM: Omit<SwarmOptions, 'self'> = {
  peers: true,
  callsPerSource: 3,
  chunksPerCall: 2,
  peerChunksPerCall: 4,
  elsewhereRetryMs: 1500,
  refreshMs: 400,
  playbackRefreshMs: 150,
  playbackElsewhereRetryMs: 500,
  maxAttempts: 8,
  banAfterBadChunks: 2,
  banMs: 10 * 60_000,
  urgentBytes: 1024 * 1024,
  frontierWaitMs: 1500,
  frontierChunks: 2,
  minCallMs: 8000,
  stallMs: 60_000,
};

/** Consecutive failed calls after which a peer no longer counts as covering a chunk. */
const UNRELIABLE_AFTER_FAILURES = 3;

/** How often a running fetch logs where it stands (debug level). */
const PROGRESS_LOG_MS = 1000;

export function emptySwarmStats(): SwarmStats {
  return { bytesReceived: 0, chunksStored: 0, chunksRejected: 0, missing: 0, bytesFromHub: 0, bytesFromPeers: 0, sourcesBanned: 0, deflected: 0 };
}

interface Held {
  complete: boolean;
  have?: Buffer;
  coming?: Buffer;
}

/** What the fetcher knows of one source, kept across fetches (speed, bans). */
class Source {
  inFlight = 0;
  /** Per-call throughput (bytes/s) and time to first byte (ms), smoothed; undefined until measured. */
  bps?: number;
  latencyMs?: number;
  badChunks = 0;
  bannedUntil = 0;
  backoffUntil = 0;
  failures = 0;
  holdings = new Map<string, Held>();
  readonly calls = new Set<{ cancel(): void }>();

  constructor(
    readonly key: string,
    readonly address: string,
    readonly hub: boolean,
    readonly client: ChunksClient,
  ) {}

  usable(now: number): boolean {
    return this.bannedUntil <= now && this.backoffUntil <= now;
  }

  /** Sources never measured are tried as if fast, so each gets a chance to show its speed. */
  speed(): number {
    return this.bps ?? Number.MAX_SAFE_INTEGER;
  }

  measure(bytes: number, ms: number, firstByteMs: number | undefined): void {
    const a = 0.3;
    const rate = bytes / Math.max(ms, 1) * 1000;
    this.bps = this.bps === undefined ? rate : a * rate + (1 - a) * this.bps;
    if (firstByteMs !== undefined) this.latencyMs = this.latencyMs === undefined ? firstByteMs : a * firstByteMs + (1 - a) * this.latencyMs;
  }
}

interface Want {
  hash: Buffer;
  key: string;
  size: number;
  /** Position in the order given. */
  pos: number;
  /** Where the chunk sits: content (hex) and index in its chunk list. */
  refs: ChunkRef[];
  attempts: number;
  /** Sources that answered "missing" or sent bad bytes for this chunk. */
  excluded: Set<string>;
  inFlight: boolean;
  done: boolean;
  /** The hub said another node is getting this chunk: not from the hub before then (ms). */
  hubNotBefore: number;
  /** Random tie-break, so downloaders do not all ask for the same chunk first. */
  salt: number;
  rank: number;
  /** A usable peer holds it or is being sent it (as of the last refresh): the hub need not send it. */
  covered: boolean;
  /** A usable peer holds it now (as of the last refresh). */
  peerHas: boolean;
  /** Sequential order: within the first urgentBytes still wanted. */
  head: boolean;
  /** Sequential order: when (ms) the chunk became one of the next frontierChunks still missing; 0: not yet. */
  frontierAt: number;
  /** Peers that hold it (as of the last refresh). */
  holders: Source[];
}

/**
 * Fetches chunks into the store from every source that holds them: the hub and peers.
 * Each source gets a bounded number of calls; fast sources are asked first; a source that
 * fails is backed off, one that sends bad bytes is penalised and, on repeat, ignored; its
 * chunks come from elsewhere. Every chunk is verified by the store before it counts.
 * Progress is durable chunk by chunk: a fetch started again after a crash asks only for
 * what the store lacks.
 */
export class SwarmFetcher {
  private readonly sources = new Map<string, Source>();
  private readonly hub: Source;

  constructor(
    hubClient: ChunksClient,
    private readonly directory: SourceDirectory,
    private readonly store: ChunkStore,
    private readonly options: SwarmOptions,
    private readonly log: Logger,
    /** A chunk was stored: where it sits (content hex id, index in its chunk list). Holdings changed. */
    private readonly onStored: (refs: readonly ChunkRef[]) => void = () => {},
  ) {
    this.hub = new Source('hub', '', true, hubClient);
    this.sources.set('hub', this.hub);
  }

  /** Closes the peer connections (the hub's client belongs to the caller). */
  close(): void {
    for (const s of this.sources.values()) {
      for (const c of s.calls) c.cancel();
      if (!s.hub) s.client.close();
    }
  }

  /** Per-source figures, for logs and tests. */
  sourceStats(): { key: string; address: string; bps?: number; latencyMs?: number; badChunks: number; banned: boolean }[] {
    const now = Date.now();
    return [...this.sources.values()].map((s) => ({ key: s.key, address: s.address, bps: s.bps, latencyMs: s.latencyMs, badChunks: s.badChunks, banned: s.bannedUntil > now }));
  }

  /** Fetches every chunk of these tracks the store lacks. Returns the hashes that could not be had. */
  async fetch(tracks: readonly SwarmTrack[], opts: { order: FetchOrder }, stats: SwarmStats = emptySwarmStats()): Promise<{ failed: Buffer[]; stats: SwarmStats }> {
    const wants = new Map<string, Want>();
    let pos = 0;
    for (const t of tracks) {
      const content = t.contentId.toString('hex');
      t.chunks.forEach((c, index) => {
        const key = c.hash.toString('hex');
        const w = wants.get(key);
        if (w) w.refs.push({ content, index });
        else wants.set(key, { hash: c.hash, key, size: c.size, pos: pos++, refs: [{ content, index }], attempts: 0, excluded: new Set(), inFlight: false, done: false, hubNotBefore: 0, salt: randomInt(1 << 30), rank: 0, covered: false, peerHas: false, head: false, frontierAt: 0, holders: [] });
      });
    }
    for (const w of wants.values()) if (this.store.has(w.hash)) wants.delete(w.key);
    let headBytes = 0;
    for (const w of wants.values()) {
      if (headBytes >= this.options.urgentBytes) break;
      w.head = true;
      headBytes += w.size;
    }
    const failed: Buffer[] = [];
    if (wants.size === 0) return { failed, stats };
    const job = new FetchJob(this, wants, opts.order, stats, failed);
    await job.run();
    return { failed, stats };
  }

  // --- used by FetchJob ---

  get opts(): SwarmOptions {
    return this.options;
  }

  get logger(): Logger {
    return this.log;
  }

  get chunkStore(): ChunkStore {
    return this.store;
  }

  storedHook(refs: readonly ChunkRef[]): void {
    this.onStored(refs);
  }

  allSources(): Source[] {
    return [...this.sources.values()];
  }

  hubSource(): Source {
    return this.hub;
  }

  /** Asks the hub who holds these contents and updates every source's holdings. */
  async refresh(contentIds: Buffer[]): Promise<void> {
    if (!this.options.peers || contentIds.length === 0) return;
    const infos: ChunkSourceInfo__Output[] = [];
    for (let i = 0; i < contentIds.length; i += 4096) infos.push(...(await this.directory(contentIds.slice(i, i + 4096))));
    const asked = new Set(contentIds.map((c) => c.toString('hex')));
    const listed = new Set<string>();
    for (const info of infos) {
      if (info.hub || !info.nodeUuid || info.nodeUuid === this.options.self || !info.address) continue;
      let s = this.sources.get(info.nodeUuid);
      if (s && s.address !== info.address) {
        s.client.close();
        this.sources.delete(info.nodeUuid);
        s = undefined;
      }
      if (!s) {
        s = new Source(info.nodeUuid, info.address, false, (this.options.peerClient ?? chunksClient)(info.address));
        this.sources.set(info.nodeUuid, s);
        this.log.debug({ peer: info.nodeUuid, address: info.address }, 'new peer source');
      }
      listed.add(s.key);
      for (const c of asked) s.holdings.delete(c);
      for (const h of info.holdings) {
        s.holdings.set(h.contentId.toString('hex'), { complete: h.complete, have: h.have.length ? h.have : undefined, coming: h.coming.length ? h.coming : undefined });
      }
    }
    // A peer the hub no longer names (gone offline) holds nothing of these contents for us.
    for (const s of this.sources.values()) if (!s.hub && !listed.has(s.key)) for (const c of asked) s.holdings.delete(c);
  }
}

type Holding = 'have' | 'coming' | 'no';

function holdingOf(s: Source, w: Want): Holding {
  if (s.hub) return 'have';
  let coming = false;
  for (const r of w.refs) {
    const h = s.holdings.get(r.content);
    if (!h) continue;
    if (h.complete || (h.have && hasBit(h.have, r.index))) return 'have';
    if (h.coming && hasBit(h.coming, r.index)) coming = true;
  }
  return coming ? 'coming' : 'no';
}

/** One fetch: the chunks still wanted and the loop that hands them to sources. */
class FetchJob {
  private order: Want[] = [];
  /** Per source (key), the wanted chunks it can give, in order: rebuilt with each refresh, so a pass never scans chunks a source lacks. */
  private candidates = new Map<string, Want[]>();
  private wake?: () => void;
  private lastProgress = Date.now();
  private readonly banned = new Set<string>();

  constructor(
    private readonly f: SwarmFetcher,
    private readonly wants: Map<string, Want>,
    private readonly mode: FetchOrder,
    private readonly stats: SwarmStats,
    private readonly failed: Buffer[],
  ) {}

  private kick(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private remaining(): number {
    return this.wants.size;
  }

  async run(): Promise<void> {
    const o = this.f.opts;
    const refreshMs = this.mode === 'sequential' ? o.playbackRefreshMs : o.refreshMs;
    let refreshing: Promise<void> | undefined;
    let lastRefresh = 0;
    const refresh = () => {
      lastRefresh = Date.now();
      const contents = new Map<string, Buffer>();
      for (const w of this.wants.values()) for (const r of w.refs) if (!contents.has(r.content)) contents.set(r.content, Buffer.from(r.content, 'hex'));
      refreshing = this.f
        .refresh([...contents.values()])
        .catch((err: Error) => this.f.logger.debug({ err: err.message }, 'cannot ask the hub for sources; using what is known'))
        .finally(() => {
          refreshing = undefined;
          this.rank();
          this.kick();
        });
      return refreshing;
    };
    await refresh();
    const progress = setInterval(() => this.logProgress(), PROGRESS_LOG_MS);
    const ticker = setInterval(() => {
      if (!refreshing && Date.now() - lastRefresh >= refreshMs) void refresh();
      else this.kick();
    }, Math.min(refreshMs, 250));
    try {
      while (this.remaining() > 0) {
        this.schedule();
        if (this.remaining() === 0) break;
        if (Date.now() - this.lastProgress > o.stallMs && !this.f.allSources().some((s) => s.inFlight > 0)) {
          this.f.logger.warn({ chunks: this.remaining(), stallMs: o.stallMs }, 'no source delivered for too long; giving up on the rest for now');
          for (const w of this.wants.values()) this.fail(w);
          break;
        }
        await new Promise<void>((r) => (this.wake = r));
      }
    } finally {
      clearInterval(progress);
      clearInterval(ticker);
      await refreshing;
    }
  }

  /**
   * Where the fetch stands (debug): what is left, what each kind of source could be asked
   * for right now, what waits on a peer that is still receiving it, and calls in flight.
   * The instrument for a swarm that idles: it tells a hub that is not asked apart from
   * peers that are not known to hold anything yet.
   */
  private logProgress(): void {
    const log = this.f.logger;
    if (!log.isLevelEnabled('debug')) return;
    const now = Date.now();
    const sources = this.f.allSources();
    const peers = sources.filter((s) => !s.hub && s.usable(now));
    let inFlight = 0;
    let fromHub = 0;
    let fromPeer = 0;
    let waitingOnPeer = 0;
    let deflected = 0;
    for (const w of this.wants.values()) {
      if (w.inFlight) {
        inFlight++;
        continue;
      }
      if (peers.some((p) => !w.excluded.has(p.key) && holdingOf(p, w) === 'have')) fromPeer++;
      else if (w.covered) waitingOnPeer++;
      else if (w.hubNotBefore > now) deflected++;
      else fromHub++;
    }
    log.debug(
      {
        remaining: this.wants.size,
        stored: this.stats.chunksStored,
        inFlight,
        ready: { fromPeer, fromHub, waitingOnPeer, deflected },
        calls: { hub: this.f.hubSource().inFlight, peers: peers.reduce((n, p) => n + p.inFlight, 0), peersKnown: peers.length },
        bytes: { hub: this.stats.bytesFromHub, peers: this.stats.bytesFromPeers },
      },
      'swarm progress',
    );
  }

  /**
   * Orders the wanted chunks: by position, or rarest first (random among equals), and
   * lists per source the chunks it can give. One pass asks each peer once per chunk what
   * it holds (the rank, the cover and the candidate lists all come from that answer):
   * with 8 peers and thousands of chunks this runs after every refresh.
   */
  private rank(): void {
    const now = Date.now();
    const o = this.f.opts;
    const peers = o.peers ? this.f.allSources().filter((s) => !s.hub && s.holdings.size > 0) : [];
    for (const w of this.wants.values()) {
      let count = 1; // the hub
      let cover: Holding = 'no';
      const have: Source[] = [];
      for (const s of peers) {
        const h = holdingOf(s, w);
        if (h === 'no') continue;
        if (s.usable(now)) count++;
        if (h === 'have') have.push(s);
        // Would this peer deliver it (now, or once the hub's copy reaches it)? Then the hub need
        // not send it again. A peer counts while the hub lists it (online), unless this fetch
        // banned it, it failed this very chunk, or its calls keep failing: one merely busy, slow
        // or briefly backed off still delivers, and counting it out would have the capped hub
        // send the chunk a second time.
        if (cover !== 'have' && !(s.bannedUntil > now || s.failures >= UNRELIABLE_AFTER_FAILURES || w.excluded.has(s.key))) {
          cover = h === 'have' && s.usable(now) ? 'have' : 'coming';
        }
      }
      w.covered = cover !== 'no';
      w.peerHas = cover === 'have';
      w.rank = this.mode === 'sequential' ? w.pos : count * (1 << 30) + w.salt;
      w.holders = have;
    }
    this.order = [...this.wants.values()].sort((a, b) => a.rank - b.rank);
    this.candidates = new Map();
    for (const s of peers) this.candidates.set(s.key, []);
    for (const w of this.order) for (const s of w.holders) this.candidates.get(s.key)!.push(w);
    // Rarest first: the hub gives only what no peer covers (its `elsewhere` answers aside); in playback order the next few always.
    const hub = this.f.hubSource();
    this.candidates.set(hub.key, this.mode === 'sequential' || !o.peers ? this.order : this.order.filter((w) => !w.covered));
  }

  private schedule(): void {
    const o = this.f.opts;
    const now = Date.now();
    const sources = this.f
      .allSources()
      .filter((s) => s.usable(now) && (o.peers || s.hub))
      .sort((a, b) => b.speed() - a.speed());
    for (const s of sources) {
      let list = this.candidates.get(s.key) ?? [];
      // Done chunks leave the list now and then, not on every pass.
      if (list.length > 64 && list.length > 2 * this.wants.size) this.candidates.set(s.key, (list = list.filter((w) => !w.done)));
      while (s.inFlight < o.callsPerSource) {
        const batch: Want[] = [];
        let urgentBatch = false;
        let pending = 0;
        const size = s.hub ? o.chunksPerCall : o.peerChunksPerCall;
        for (const w of list) {
          if (w.done) continue;
          if (s.hub && this.mode === 'sequential' && pending++ < o.frontierChunks && w.frontierAt === 0) w.frontierAt = now;
          if (w.inFlight || w.excluded.has(s.key)) continue;
          if (s.hub && o.peers) {
            // Playback order: the beginning is needed now, and so is a next chunk a peer has been slow to deliver;
            // a peer that holds it is faster than the hub's uplink.
            const stalled = w.frontierAt > 0 && now - w.frontierAt > o.frontierWaitMs;
            const urgent = this.mode === 'sequential' && (w.head || stalled) && !w.peerHas;
            if (!urgent && (w.hubNotBefore > now || w.covered)) continue;
            urgentBatch ||= urgent;
          }
          batch.push(w);
          if (batch.length >= size) break;
        }
        if (batch.length === 0) break;
        this.launch(s, batch, urgentBatch);
      }
    }
  }

  private fail(w: Want): void {
    if (w.done) return;
    w.done = true;
    this.wants.delete(w.key);
    this.failed.push(w.hash);
  }

  private launch(s: Source, batch: Want[], urgent: boolean): void {
    const o = this.f.opts;
    const store = this.f.chunkStore;
    const log = this.f.logger;
    s.inFlight++;
    for (const w of batch) w.inFlight = true;
    const bytes = batch.reduce((n, w) => n + w.size, 0);
    const expectedMs = s.bps ? (bytes / s.bps) * 1000 * (s.inFlight + 1) : 0;
    const metadata = new Metadata();
    // Named only when it takes from peers: the hub may then answer `elsewhere`, which a hub-only downloader could not follow.
    if (o.peers) metadata.set(NODE_METADATA_KEY, o.self);
    if (urgent) metadata.set(URGENT_METADATA_KEY, '1');
    const started = performance.now();
    const call = s.client.Fetch({ hashes: batch.map((w) => w.hash) }, metadata, { deadline: Date.now() + Math.max(o.minCallMs, 6 * expectedMs) });
    s.calls.add(call);
    const byKey = new Map(batch.map((w) => [w.key, w]));
    let received = 0;
    let firstByteMs: number | undefined;
    let bad = false;
    /** Chunks being written to the store: the call counts as in flight until they are. */
    const writes: Promise<void>[] = [];
    let storeError: Error | undefined;
    const keep = (w: Want, data: Buffer) =>
      store.putAsync(w.hash, data).then(
        () => {
          if (w.done) return;
          this.stats.chunksStored++;
          if (s.hub) this.stats.bytesFromHub += data.length;
          else this.stats.bytesFromPeers += data.length;
          w.done = true;
          this.wants.delete(w.key);
          this.lastProgress = Date.now();
          this.f.storedHook(w.refs);
          this.kick();
        },
        (err: Error) => {
          if (!(err instanceof BadChunkError)) {
            storeError ??= err;
            return;
          }
          this.stats.chunksRejected++;
          w.attempts++;
          // The hub is the library's authority (it verifies what it sends): damage on the way is retried there.
          if (s.hub) {
            log.warn({ err: err.message }, 'the hub sent a damaged chunk; asking again');
            return;
          }
          w.excluded.add(s.key);
          bad = true;
          this.penalise(s, err);
        },
      );
    void (async () => {
      let error: (Error & { code?: number }) | undefined;
      try {
        for await (const msg of call as AsyncIterable<ChunkData__Output>) {
          firstByteMs ??= performance.now() - started;
          if (bad && s.bannedUntil > Date.now()) break;
          const w = byKey.get(msg.hash.toString('hex'));
          if (!w || w.done) continue;
          if (msg.elsewhere) {
            // Another node is getting it from the hub: take it from that peer once it has it.
            w.hubNotBefore = Date.now() + (this.mode === 'sequential' ? o.playbackElsewhereRetryMs : o.elsewhereRetryMs);
            this.stats.deflected++;
            continue;
          }
          if (msg.missing) {
            // Its holdings were stale: not from this source again in this fetch.
            this.stats.missing++;
            w.excluded.add(s.key);
            continue;
          }
          this.stats.bytesReceived += msg.data.length;
          received += msg.data.length;
          writes.push(keep(w, msg.data));
        }
      } catch (err) {
        error = err as Error & { code?: number };
      }
      const ms = performance.now() - started;
      // The call's slot is free as soon as its stream ended: the source can be asked again
      // while the chunks are still being written (an fsync can take tens of milliseconds,
      // and holding the slot that long left a capped hub idle between calls).
      s.calls.delete(call);
      if (bad && s.bannedUntil > Date.now()) call.cancel();
      s.inFlight--;
      if (received > 0) s.measure(received, ms, firstByteMs);
      if (error && error.code !== status.CANCELLED) {
        s.failures++;
        if (error.code === status.DEADLINE_EXCEEDED) {
          // Slow: halve its standing so faster sources are asked first.
          if (s.bps !== undefined) s.bps /= 2;
          s.backoffUntil = Date.now() + 500;
        } else {
          s.backoffUntil = Date.now() + Math.min(10_000, 250 * 2 ** Math.min(s.failures, 6));
        }
        log.debug({ source: s.key, address: s.address || 'hub', err: error.message, failures: s.failures }, 'chunk source failed; trying elsewhere');
      } else if (!error && received > 0) s.failures = 0;
      this.kick();
      await Promise.all(writes);
      if (storeError) {
        // A store failure (disk full…): give up on this batch, the sync reports it.
        log.error({ err: storeError.message }, 'storing a fetched chunk failed');
        for (const w of batch) if (!w.done) this.fail(w);
        this.kick();
        return;
      }
      for (const w of batch) {
        if (w.done) continue;
        w.inFlight = false;
        if (error) w.attempts++;
        if (w.attempts >= o.maxAttempts) {
          log.warn({ chunk: w.key.slice(0, 16), attempts: w.attempts }, 'chunk could not be fetched from any source');
          this.fail(w);
        }
      }
      this.kick();
    })();
  }

  private penalise(s: Source, err: BadChunkError): void {
    const o = this.f.opts;
    s.badChunks++;
    if (s.bps !== undefined) s.bps /= 4;
    this.f.logger.warn({ source: s.key, address: s.address || 'hub', badChunks: s.badChunks, err: err.message }, 'a source sent a damaged chunk');
    if (s.badChunks >= o.banAfterBadChunks && s.bannedUntil <= Date.now()) {
      s.bannedUntil = Date.now() + o.banMs;
      if (!this.banned.has(s.key)) {
        this.banned.add(s.key);
        this.stats.sourcesBanned++;
      }
      this.f.logger.warn({ source: s.key, address: s.address || 'hub', badChunks: s.badChunks, banMs: o.banMs }, 'source ignored after repeated damaged chunks');
      for (const c of s.calls) c.cancel();
    }
  }
}
