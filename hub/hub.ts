import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { HubConfig } from '../src/config/schema.js';
import type { Logger } from '../src/log.js';
import { Catalogue } from './library/catalogue.js';
import { Library } from './library/library.js';
import { DataPlaneServer } from './grpc/server.js';
import { EmbeddedBroker } from './broker/broker.js';
import { ControlChannel } from './control/channel.js';
import { CommandRouter } from './control/commands.js';
import { LibraryAnnouncer } from './control/library-announcer.js';
import { Groups } from './groups/groups.js';
import { openHubDb } from './hub-db.js';
import { NodeRegistry } from './registry/registry.js';
import type { Db } from '../src/storage/sqlite.js';
import { SOFTWARE_VERSION } from '../src/version.js';

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
  /** Nodes and groups (control state), beside the catalogue. */
  readonly db: Db;
  /** Absent when `mqtt.url` points at an external broker. */
  readonly broker?: EmbeddedBroker;
  readonly channel: ControlChannel;
  readonly commands: CommandRouter;
  readonly registry: NodeRegistry;
  readonly groups: Groups;
  readonly announcer: LibraryAnnouncer;
  private started: { stop(): Promise<void> }[] = [];

  constructor(
    readonly config: HubConfig,
    readonly log: Logger,
  ) {
    const dataDir = resolve(config.dataDir);
    mkdirSync(dataDir, { recursive: true });
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
    this.dataPlane = new DataPlaneServer(this.catalogue, config.grpc, log.child({ module: 'grpc' }), (file) => this.library.rescanFile(file));

    this.db = openHubDb(dataDir);
    const mqtt = config.mqtt;
    if (!mqtt.url) this.broker = new EmbeddedBroker({ host: mqtt.host, port: mqtt.port, username: mqtt.username, password: mqtt.password }, log.child({ module: 'broker' }));
    this.channel = new ControlChannel(
      { url: () => mqtt.url ?? this.broker!.url, username: mqtt.username, password: mqtt.password, topicPrefix: mqtt.topicPrefix, software: SOFTWARE_VERSION },
      log.child({ module: 'mqtt' }),
    );
    this.commands = new CommandRouter(this.channel, log.child({ module: 'commands' }));
    this.registry = new NodeRegistry(
      this.db,
      this.channel,
      this.commands,
      { heartbeatTimeoutMs: config.nodes.heartbeatTimeoutSeconds * 1000, libraryVersion: () => this.catalogue.version() },
      log.child({ module: 'registry' }),
    );
    this.groups = new Groups(this.db, this.channel, this.commands, this.registry, log.child({ module: 'groups' }));
    this.announcer = new LibraryAnnouncer(this.channel, this.library, this.catalogue.version());
  }

  async start(): Promise<void> {
    const control = [...(this.broker ? [this.broker] : []), this.channel, this.commands, this.registry, this.groups, this.announcer];
    for (const module of [...control, this.dataPlane, this.library]) {
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
