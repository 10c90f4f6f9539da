import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { HubConfig } from '../src/config/schema.js';
import type { Logger } from '../src/log.js';
import { Catalogue } from './library/catalogue.js';
import { Library } from './library/library.js';
import { DataPlaneServer } from './grpc/server.js';
import { ClockServer } from './clock/clock-server.js';
import { HubTime } from './clock/hub-time.js';
import { Advertiser } from './discovery/advertiser.js';
import { EmbeddedBroker } from './broker/broker.js';
import { ControlChannel } from './control/channel.js';
import { CommandRouter } from './control/commands.js';
import { LibraryAnnouncer } from './control/library-announcer.js';
import { Groups } from './groups/groups.js';
import { Playback } from './playback/playback.js';
import { Playlists } from './playlists/playlists.js';
import { HomeAssistantBridge } from './homeassistant/bridge.js';
import { openHubDb } from './hub-db.js';
import { NodeRegistry } from './registry/registry.js';
import { HoldingsMap } from './swarm/holdings.js';
import { TransitLog } from './swarm/transit.js';
import type { Db } from '../src/storage/sqlite.js';
import { HttpServer } from './http/server.js';
import { Devices } from './devices/devices.js';
import { webPlugin } from './http/web.js';
import { SOFTWARE_VERSION } from '../src/version.js';
import { PROTOCOL_VERSION } from '../src/protocol/schemas.js';
import { HubSecurity } from './security/security.js';
import { installHttpAuth } from './http/auth.js';

/**
 * The hub's composition root: it builds the shared parts (catalogue) and hands them to
 * one module per concern, each with start() and stop(), started in order and stopped in
 * reverse. A test can build a Hub and start only what it needs by constructing the
 * modules itself; the CLI starts them all.
 */
export class Hub {
  readonly catalogue: Catalogue;
  readonly library: Library;
  readonly dataPlane: DataPlaneServer;
  /** The hub's clock, continued across restarts (hub/clock/hub-time.ts). */
  readonly hubTime: HubTime;
  /** The clock exchange (UDP): the hub's clock is every group's timebase. */
  readonly clockServer: ClockServer;
  /** Nodes and groups (control state), beside the catalogue. */
  readonly db: Db;
  /** Absent when `mqtt.url` points at an external broker. */
  readonly broker?: EmbeddedBroker;
  readonly channel: ControlChannel;
  readonly commands: CommandRouter;
  readonly registry: NodeRegistry;
  readonly groups: Groups;
  readonly announcer: LibraryAnnouncer;
  /** Queues, transport and the start barrier: one sync coordinator per group. */
  readonly playback: Playback;
  /** Saved playlists (playlist/* commands, retained hub/playlists); play {playlistId} reads them. */
  readonly playlists: Playlists;
  /** Home Assistant: MQTT discovery and the plain …/set command topics; absent with homeAssistant.enabled off. */
  readonly homeAssistant?: HomeAssistantBridge;
  /** Peer-to-peer: which node holds which chunks (and what the hub is sending whom); answers Library.Sources. */
  readonly holdings: HoldingsMap;
  /** mDNS advertisement (_firefly._tcp); absent with discovery.advertise off. */
  readonly advertiser?: Advertiser;
  /** Web page, REST API, live updates, cover art and device streams (port 8081). */
  readonly http: HttpServer;
  /** Chromecast and Sonos speakers as group members, and the audio streams they fetch. */
  readonly devices: Devices;
  /** Credentials, TLS and rate limits (hub/security/). */
  readonly security: HubSecurity;
  private started: { stop(): Promise<void> }[] = [];

  constructor(
    readonly config: HubConfig,
    readonly log: Logger,
  ) {
    const dataDir = resolve(config.dataDir);
    mkdirSync(dataDir, { recursive: true });
    this.security = new HubSecurity(config, dataDir, log.child({ module: 'security' }));
    const security = this.security;
    this.catalogue = Catalogue.inDataDir(dataDir);
    this.library = new Library(
      this.catalogue,
      {
        roots: config.library.map((r) => resolve(r)),
        settleMs: config.index.settleMs,
        // A data folder inside the library must not index its own SQLite files.
        exclude: [dataDir],
        followSymlinks: config.index.followSymlinks,
        inMemoryLimitBytes: config.index.inMemoryLimitBytes,
        workers: config.index.workers,
      },
      log.child({ module: 'library' }),
    );
    const transit = new TransitLog();
    this.dataPlane = new DataPlaneServer(this.catalogue, { ...config.grpc, interceptors: security.grpcInterceptors(), tls: security.tls }, log.child({ module: 'grpc' }), (file) => this.library.rescanFile(file), {
      sources: (contentIds) => this.holdings.sources(contentIds),
      transit: (node, hashes) => transit.begin(node, hashes),
      elsewhere: (node, hash) => this.holdings.elsewhere(node, hash),
    });

    this.clockServer = new ClockServer({ host: config.grpc.host, port: config.clock.port, now: () => this.hubTime.now(), secretFor: security.authOn ? (user) => security.clockSecret(user) : undefined }, log.child({ module: 'clock' }));
    this.db = openHubDb(dataDir);
    this.hubTime = HubTime.open(this.db, log.child({ module: 'clock' }));
    const mqtt = config.mqtt;
    if (!mqtt.url) {
      this.broker = new EmbeddedBroker(
        {
          host: mqtt.host,
          port: mqtt.port,
          username: mqtt.username,
          password: mqtt.password,
          credentials: security.credentials,
          topicPrefix: mqtt.topicPrefix,
          tls: security.tls,
          publishesPerSecond: security.authOn ? config.security.mqttPublishesPerSecond : 0,
        },
        log.child({ module: 'broker' }),
      );
    }
    // The hub's own client: an external broker's user, else (auth on) the hub's own credential.
    const own = mqtt.url || mqtt.username ? undefined : security.hubToken();
    this.channel = new ControlChannel(
      {
        url: () => mqtt.url ?? this.broker!.url,
        username: mqtt.username ?? own?.user,
        password: mqtt.password ?? own?.secret,
        topicPrefix: mqtt.topicPrefix,
        software: SOFTWARE_VERSION,
        // Its own embedded broker, reached on loopback: the certificate names the LAN host, not 127.0.0.1.
        tls: !mqtt.url && security.tls ? { rejectUnauthorized: false } : undefined,
      },
      log.child({ module: 'mqtt' }),
    );
    this.commands = new CommandRouter(this.channel, log.child({ module: 'commands' }));
    this.registry = new NodeRegistry(
      this.db,
      this.channel,
      this.commands,
      { heartbeatTimeoutMs: config.nodes.heartbeatTimeoutSeconds * 1000, libraryVersion: () => this.catalogue.version(), swarmToken: security.swarmToken(), hubNow: this.hubTime.now },
      log.child({ module: 'registry' }),
    );
    this.holdings = new HoldingsMap(this.channel, this.registry, this.catalogue, transit, log.child({ module: 'swarm' }));
    this.groups = new Groups(this.db, this.channel, this.commands, this.registry, log.child({ module: 'groups' }));
    this.announcer = new LibraryAnnouncer(this.channel, this.library, this.catalogue.version());
    this.playback = new Playback(this.db, this.channel, this.commands, this.registry, this.groups, this.catalogue, log.child({ module: 'playback' }), undefined, this.hubTime.now, (uuid, contentId) => this.holdings.holdsWhole(uuid, contentId));
    this.playlists = new Playlists(this.db, this.channel, this.commands, this.catalogue, this.playback, log.child({ module: 'playlists' }));
    if (config.homeAssistant.enabled) {
      this.homeAssistant = new HomeAssistantBridge(
        this.channel,
        this.commands,
        this.registry,
        this.groups,
        this.playback,
        this.playlists,
        this.catalogue,
        { discoveryPrefix: config.homeAssistant.discoveryPrefix, positionIntervalMs: config.homeAssistant.positionIntervalSeconds * 1000, hubName: config.name, software: SOFTWARE_VERSION },
        log.child({ module: 'homeassistant' }),
      );
    }
    this.http = new HttpServer({ host: config.http.host, port: config.http.port, https: security.tls }, log.child({ module: 'http' }));
    // Before any route plugin: the login and rate limit cover every route.
    installHttpAuth(this.http.app, { credentials: security.credentials, requestsPerSecond: security.authOn ? config.security.httpRequestsPerSecond : 0, secure: Boolean(security.tls), log: log.child({ module: 'http-auth' }) });
    this.devices = new Devices(config.devices, this.db, this.channel, this.catalogue, this.groups, this.http, log.child({ module: 'devices' }), this.hubTime.now, security.streamSigner);
    this.http.use('web', webPlugin(this).plugin);
    if (config.discovery.advertise) {
      this.advertiser = new Advertiser(
        {
          name: config.name,
          host: config.grpc.host,
          // Read at start, once the listeners are bound (a port setting may be 0).
          advert: () => ({
            software: SOFTWARE_VERSION,
            protocol: PROTOCOL_VERSION,
            grpcPort: this.dataPlane.boundPort,
            mqtt: this.broker ? this.broker.port : 'external',
            // The clock-sync port, once the hub has one (setting clock.port).
            clockPort: (config as { clock?: { port?: number } }).clock?.port || undefined,
            topicPrefix: mqtt.topicPrefix,
          }),
        },
        log.child({ module: 'discovery' }),
      );
    }
  }

  async start(): Promise<void> {
    const control: { start(): Promise<void>; stop(): Promise<void> }[] = [
      ...(this.broker ? [this.broker] : []),
      this.channel,
      this.commands,
      this.registry,
      this.groups,
      this.playback,
      this.playlists,
      this.holdings,
      this.announcer,
      ...(this.homeAssistant ? [this.homeAssistant] : []),
    ];
    // Advertise once the data plane listens, before the (possibly long) first index.
    for (const module of [...control, this.clockServer, this.dataPlane, ...(this.advertiser ? [this.advertiser] : []), this.http, this.devices, this.library]) {
      await module.start();
      this.started.push(module);
    }
  }

  async stop(): Promise<void> {
    for (const module of this.started.reverse()) {
      try {
        await module.stop();
      } catch (err) {
        this.log.warn({ err }, 'error while stopping');
      }
    }
    this.started = [];
    this.catalogue.close();
    this.db.close();
  }
}
