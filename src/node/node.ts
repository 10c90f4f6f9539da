import { resolve } from 'node:path';
import type { ResolvedNodeConfig } from '../config/schema.js';
import { DEFAULT_GRPC_PORT } from '../config/schema.js';
import type { Logger } from '../log.js';
import { chunksClient, grpcAddress, libraryClient, type ChunksClient, type LibraryClient } from '../protocol/data-plane.js';
import type { Db } from '../storage/sqlite.js';
import { brokerUrl, hostOf, tlsUrl } from '../protocol/mqtt-client.js';
import { status as grpcStatus } from '@grpc/grpc-js';
import { formatToken, nodeUuidOf, parseToken, peerHost, readPem, serverAuth, type ClientAccess } from '../protocol/access.js';
import { RateLimiter } from '../transfer/rate-limit.js';
import type { HubClock } from '../clock/hub-clock.js';
import { SimulatedClock, systemClock, type LocalClock } from '../clock/local-clock.js';
import { ClockSync } from './clock-sync.js';
import { ControlAgent } from './agent.js';
import { ChunkStore } from './chunk-store.js';
import { loadIdentity, type NodeIdentity } from './identity.js';
import { LibraryMirror } from './library-mirror.js';
import { LibrarySync, type SyncReport } from './library-sync.js';
import { SqliteIntroStore } from './intro-store.js';
import { openNodeDb } from './node-db.js';
import { openDecoder, warmDecoder } from './decode/ffmpeg.js';
import { selectOutput } from './output/select.js';
import { DEFAULT_PLAYER, Player } from './player/player.js';
import { TrackSource } from './player/track-source.js';
import { ChunkServer } from './chunk-server.js';
import { HoldingsAnnouncer } from './holdings-announcer.js';
import { DEFAULT_SWARM, SwarmFetcher } from '../transfer/swarm-fetcher.js';
import type { TrackRef } from '../protocol/schemas.js';
import type { SourcesReply__Output } from '../generated/firefly/v1/SourcesReply.js';

/** With credentials on: Fetch calls per second one peer address may start at this node's chunk server (bursts of twice that). */
const PEER_CALLS_PER_SECOND = 500;

/** What the player decodes to and writes: tracks of other rates are resampled by the decoder. */
const PLAYBACK_FORMAT = { sampleRate: 48000, channels: 2 };

/**
 * A native Firefly node: its identity, chunk store and library mirror, and the loop
 * that keeps them in step with the hub.
 */
export class FireflyNode {
  readonly identity: NodeIdentity;
  readonly db: Db;
  readonly store: ChunkStore;
  readonly mirror: LibraryMirror;
  readonly sync: LibrarySync;
  /** The control plane: availability, heartbeats, library announcements. */
  readonly agent: ControlAgent;
  /** This node's time: the machine's monotonic clock, or a simulated one (sim.clock*). */
  readonly clock: LocalClock;
  /** The clock exchange with the hub; `hubClock` is its current mapping. */
  readonly clockSync: ClockSync;
  /** Local time ↔ hub time, as estimated now: what the player schedules with. */
  readonly hubClock: HubClock;
  /** Plays what the hub's sync coordinator says, in sync; made at start, once the output is chosen. */
  player?: Player;
  private readonly tracks: TrackSource;
  /** Serves this node's chunks to peers. */
  readonly chunkServer: ChunkServer;
  /** Fetches chunks from the hub and from peers. */
  readonly swarm: SwarmFetcher;
  /** Tells the hub which chunks this node holds. */
  readonly holdings: HoldingsAnnouncer;
  private readonly libraryClient: LibraryClient;
  private readonly chunksClient: ChunksClient;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  /** With credentials on: what peers present to this node's chunk server and it to theirs (from the hub's welcome). */
  private swarmToken?: string;

  constructor(
    /** The hub must be known by now: the CLI finds it over mDNS first when none was given (discovery.ts). */
    readonly config: ResolvedNodeConfig,
    readonly log: Logger,
  ) {
    const dataDir = resolve(config.dataDir);
    const token = nodeToken(config.security.token);
    this.identity = loadIdentity(dataDir, token && nodeUuidOf(token.user));
    const { caFile } = config.security;
    const tls = config.security.tls || caFile ? { ca: caFile ? readPem(caFile, 'security.caFile') : undefined } : undefined;
    const tokenText = token && formatToken(token);
    const hubAccess: ClientAccess = { token: () => tokenText, tls };
    this.db = openNodeDb(dataDir);
    this.store = new ChunkStore(this.db, dataDir, {
      fsync: config.store.fsync,
      onFull: (err) =>
        log.error({ err: err.message, store: this.store.usage(), dataDir }, 'disk full: the chunk store keeps and plays what it holds but cannot fetch more; free space or lower store.budgetBytes'),
    });
    this.mirror = new LibraryMirror(this.db);
    const { clockOffsetSeconds, clockSkewPpm } = config.sim;
    this.clock = clockOffsetSeconds || clockSkewPpm ? new SimulatedClock(clockOffsetSeconds, clockSkewPpm) : systemClock;
    this.clockSync = new ClockSync(this.clock, { host: hostOf(config.hub), port: config.clock.port, auth: token }, log.child({ module: 'clock' }));
    this.hubClock = this.clockSync.hubClock;
    const address = grpcAddress(config.hub, DEFAULT_GRPC_PORT);
    this.libraryClient = libraryClient(address, undefined, hubAccess);
    this.chunksClient = chunksClient(address, undefined, hubAccess);
    // With credentials, peers must present the swarm token the hub gave this node; until it came, no one is served.
    const peerRate = new RateLimiter(PEER_CALLS_PER_SECOND, PEER_CALLS_PER_SECOND * 2);
    const peerGate = token
      ? [
          serverAuth((presented, peer) => {
            if (!peerRate.allow(peerHost(peer))) return { code: grpcStatus.RESOURCE_EXHAUSTED, details: `too many calls from ${peerHost(peer)}` };
            return this.swarmToken && presented === `swarm:${this.swarmToken}` ? undefined : { code: grpcStatus.UNAUTHENTICATED, details: 'this node serves only peers of its hub (swarm token)' };
          }),
        ]
      : [];
    const peerToken = () => (this.swarmToken ? `swarm:${this.swarmToken}` : undefined);
    this.chunkServer = new ChunkServer(this.store, { host: config.serve.host, port: config.serve.port, corrupt: config.sim.corruptServing, interceptors: peerGate }, log.child({ module: 'serve' }));
    this.swarm = new SwarmFetcher(
      this.chunksClient,
      (contentIds) =>
        new Promise<SourcesReply__Output>((ok, fail) =>
          this.libraryClient.Sources({ contentIds }, { deadline: Date.now() + 5000 }, (err, res) => (err ? fail(err) : ok(res!))),
        ).then((r) => r.sources),
      this.store,
      { ...DEFAULT_SWARM, self: this.identity.uuid, peers: config.sync.peers, chunksPerCall: config.sync.batchChunks, peerClient: (peer) => chunksClient(peer, undefined, { token: peerToken }) },
      log.child({ module: 'swarm' }),
      (contents) => this.holdings.changed(contents),
    );
    this.sync = new LibrarySync(
      this.libraryClient,
      this.swarm,
      this.mirror,
      this.store,
      { prefetch: config.sync.prefetch, budgetBytes: config.store.budgetBytes },
      log.child({ module: 'sync' }),
    );
    this.agent = new ControlAgent(
      {
        // The broker is on the hub's host unless told otherwise.
        url: tls ? tlsUrl(brokerUrl(config.mqtt.url ?? hostOf(config.hub))) : brokerUrl(config.mqtt.url ?? hostOf(config.hub)),
        // An external broker's own user wins; else the node's credential.
        username: config.mqtt.username ?? token?.user,
        password: config.mqtt.username ? config.mqtt.password : (token?.secret ?? config.mqtt.password),
        tls,
        topicPrefix: config.mqtt.topicPrefix,
        keepaliveSeconds: config.mqtt.keepaliveSeconds,
        heartbeatSeconds: config.mqtt.heartbeatSeconds,
        uuid: this.identity.uuid,
        name: config.name,
      },
      {
        libraryVersion: () => this.mirror.version(),
        storeUsage: () => ({ ...this.store.usage(), budgetBytes: config.store.budgetBytes, full: this.store.fullSince !== undefined }),
        clock: () => this.clockSync.quality(),
        downloads: () => this.sync.progress(),
        playback: () => this.player?.status() ?? { state: 'idle', trackId: null, positionMs: null },
      },
      log.child({ module: 'agent' }),
    );
    this.holdings = new HoldingsAnnouncer(
      this.mirror,
      this.store,
      (h) => this.agent.sendHoldings(h),
      () => this.serveAddress(),
      log.child({ module: 'holdings' }),
    );
    // After every welcome (first join, broker or hub restart) the hub hears everything again.
    this.agent.on('welcome', (welcome) => {
      this.swarmToken = welcome.swarmToken;
      this.holdings.snapshot();
      this.player?.reportIntros();
    });
    // The group's current and next track: pinned, and what prefetch 'queue' fetches.
    this.agent.on('player', (command) => {
      const following = (c: { next: TrackRef | null; upcoming?: TrackRef[] }) => (c.next ? [c.next, ...(c.upcoming ?? [])] : []).map((t) => Buffer.from(t.contentId, 'hex'));
      if (command.command === 'prepare') this.sync.setQueue([Buffer.from(command.track.contentId, 'hex'), ...following(command)]);
      else if (command.command === 'next' && command.next) this.sync.setQueue([...this.sync.queued().slice(0, 1), ...following(command)]);
    });
    this.tracks = new TrackSource(this.libraryClient, this.swarm, this.mirror, this.store, log.child({ module: 'tracks' }), config.sim.streamStallMs ?? 0);
    // Settings that arrive before the player exists (the welcome's volume) are kept by the agent and applied at start.
    this.agent.on('player', (command) => this.player?.handle(command));
    this.agent.on('volume', (volume, groupVolume, atHubMs) => this.player?.setVolume(volume, groupVolume, atHubMs));
    this.agent.on('output', (muted, latencyMs) => this.player?.setOutput(muted, latencyMs));
    this.agent.on('library', (version) => {
      if (this.stopped) return;
      this.log.debug({ version }, 'the hub announced a new library version');
      void this.syncOnce();
    });
  }

  private warmed = false;

  /** Once the library is known: a decoder for its most common format waits, so even the first play starts at once. */
  private warmCommonFormat(): void {
    if (this.warmed || this.stopped) return;
    const counts = new Map<string, number>();
    for (const e of this.mirror.entries()) if (e.format && e.status === 'OK') counts.set(e.format, (counts.get(e.format) ?? 0) + 1);
    const top = [...counts].sort((a, b) => b[1] - a[1])[0];
    if (!top) return;
    this.warmed = true;
    warmDecoder(top[0], PLAYBACK_FORMAT.sampleRate, PLAYBACK_FORMAT.channels);
  }

  /** The library's playable tracks, the newest entries first (one per content); the player checks which it holds. */
  private libraryTracks(): TrackRef[] {
    const seen = new Set<string>();
    const out: TrackRef[] = [];
    for (const e of this.mirror.entries().reverse()) {
      if (e.status !== 'OK' || !e.contentId || !e.format) continue;
      const contentId = e.contentId.toString('hex');
      if (seen.has(contentId)) continue;
      seen.add(contentId);
      const seconds = e.metadata.durationSeconds;
      out.push({ entryId: e.id, contentId, format: e.format, durationMs: typeof seconds === 'number' && Number.isFinite(seconds) ? seconds * 1000 : null });
    }
    return out;
  }

  /** Where peers reach this node's chunk server: serve.advertiseHost, else the address it reaches the broker from. */
  serveAddress(): string | null {
    const port = this.chunkServer.boundPort;
    const host = this.config.serve.advertiseHost ?? this.agent.localAddress?.replace(/^::ffff:/, '');
    if (!port || !host) return null;
    return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  }

  /** One sync, logged; errors are logged and returned as undefined (the loop goes on). */
  async syncOnce(): Promise<SyncReport | undefined> {
    try {
      const report = await this.sync.sync();
      if (report.evictedChunks > 0) this.holdings.snapshot();
      this.log.info({ ...report, store: this.store.usage() }, 'sync complete');
      return report;
    } catch (err) {
      this.log.warn({ err: (err as Error).message, hub: this.config.hub }, 'sync failed; will retry');
      return undefined;
    }
  }

  async start(): Promise<void> {
    this.log.info({ uuid: this.identity.uuid, hub: this.config.hub, name: this.config.name }, 'node starting');
    await this.chunkServer.start();
    const loop = async () => {
      await this.syncOnce();
      this.warmCommonFormat();
      this.player?.prepareStartsSoon();
      if (!this.stopped) this.timer = setTimeout(() => void loop(), this.config.sync.intervalSeconds * 1000);
    };
    void loop();
    if (this.clock instanceof SimulatedClock) {
      // The simulated clock's origin (on the machine's monotonic clock) lets a test compute the true hub time.
      this.log.info({ offsetSeconds: this.clock.offsetSeconds, skewPpm: this.clock.skewPpm, originMs: this.clock.origin }, 'simulated clock (tests and benchmarks only)');
    }
    await this.clockSync.start();
    const { output, reason } = await selectOutput(
      { ...this.config, playback: { ...this.config.playback, measureFile: this.config.playback.measureFile && resolve(this.config.playback.measureFile) } },
      PLAYBACK_FORMAT,
      { log: this.log.child({ module: 'output' }) },
    );
    this.log.info({ output: output.kind, reason }, 'audio output');
    this.player = new Player(
      { output, clock: this.clock, hubClock: this.hubClock, openDecoder, openTrack: this.tracks.open, send: (e) => this.agent.sendPlayerEvent(e), log: this.log.child({ module: 'player' }), holds: this.tracks.holds, libraryTracks: () => this.libraryTracks(), nominalDelayMs: this.config.output.bufferMs, warmDecoder: (f) => warmDecoder(f, PLAYBACK_FORMAT.sampleRate, PLAYBACK_FORMAT.channels), introStore: new SqliteIntroStore(this.db, PLAYBACK_FORMAT.sampleRate, this.log.child({ module: 'player' })) },
      { ...DEFAULT_PLAYER, prerollMs: this.config.playback.prerollMs, introTracks: this.config.playback.startCacheTracks, prepareStarts: this.config.playback.prepareStarts },
    );
    this.player.setVolume(this.agent.volume, this.agent.groupVolume);
    await this.agent.start();
    this.player.prepareStartsSoon();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.player?.close();
    await this.clockSync.stop();
    this.holdings.stop();
    await this.agent.stop();
    this.swarm.close();
    await this.sync.idle();
    await this.chunkServer.stop();
    this.libraryClient.close();
    this.chunksClient.close();
    await this.store.close();
    this.db.close();
  }
}

/** The node credential of a `security.token` setting; an error naming the setting when it is not one. */
function nodeToken(text: string | undefined): ReturnType<typeof parseToken> {
  if (text === undefined) return undefined;
  const token = parseToken(text);
  if (!token || !nodeUuidOf(token.user)) throw new Error('setting security.token (--token, FIREFLY_TOKEN): expected a node credential node:<uuid>:<secret>, as `firefly ctl credentials add-node` prints it');
  return token;
}
