import { resolve } from 'node:path';
import type { NodeConfig } from '../config/schema.js';
import { DEFAULT_GRPC_PORT } from '../config/schema.js';
import type { Logger } from '../log.js';
import { chunksClient, grpcAddress, libraryClient, type ChunksClient, type LibraryClient } from '../protocol/data-plane.js';
import type { Db } from '../storage/sqlite.js';
import { brokerUrl, hostOf } from '../protocol/mqtt-client.js';
import { ControlAgent } from './agent.js';
import { ChunkStore } from './chunk-store.js';
import { loadIdentity, type NodeIdentity } from './identity.js';
import { LibraryMirror } from './library-mirror.js';
import { LibrarySync, type SyncReport } from './library-sync.js';
import { openNodeDb } from './node-db.js';

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
  private readonly libraryClient: LibraryClient;
  private readonly chunksClient: ChunksClient;
  private timer?: NodeJS.Timeout;
  private stopped = false;

  constructor(
    readonly config: NodeConfig,
    readonly log: Logger,
  ) {
    const dataDir = resolve(config.dataDir);
    this.identity = loadIdentity(dataDir);
    this.db = openNodeDb(dataDir);
    this.store = new ChunkStore(this.db, dataDir);
    this.mirror = new LibraryMirror(this.db);
    const address = grpcAddress(config.hub, DEFAULT_GRPC_PORT);
    this.libraryClient = libraryClient(address);
    this.chunksClient = chunksClient(address);
    this.sync = new LibrarySync(
      this.libraryClient,
      this.chunksClient,
      this.mirror,
      this.store,
      { prefetch: config.sync.prefetch, budgetBytes: config.store.budgetBytes, batchChunks: config.sync.batchChunks },
      log.child({ module: 'sync' }),
    );
    this.agent = new ControlAgent(
      {
        // The broker is on the hub's host unless told otherwise.
        url: brokerUrl(config.mqtt.url ?? hostOf(config.hub)),
        username: config.mqtt.username,
        password: config.mqtt.password,
        topicPrefix: config.mqtt.topicPrefix,
        keepaliveSeconds: config.mqtt.keepaliveSeconds,
        heartbeatSeconds: config.mqtt.heartbeatSeconds,
        uuid: this.identity.uuid,
        name: config.name,
      },
      { libraryVersion: () => this.mirror.version(), storeUsage: () => ({ ...this.store.usage(), budgetBytes: config.store.budgetBytes }) },
      log.child({ module: 'agent' }),
    );
    this.agent.on('library', (version) => {
      if (this.stopped) return;
      this.log.debug({ version }, 'the hub announced a new library version');
      void this.syncOnce();
    });
  }

  /** One sync, logged; errors are logged and returned as undefined (the loop goes on). */
  async syncOnce(): Promise<SyncReport | undefined> {
    try {
      const report = await this.sync.sync();
      this.log.info({ ...report, store: this.store.usage() }, 'sync complete');
      return report;
    } catch (err) {
      this.log.warn({ err: (err as Error).message, hub: this.config.hub }, 'sync failed; will retry');
      return undefined;
    }
  }

  async start(): Promise<void> {
    this.log.info({ uuid: this.identity.uuid, hub: this.config.hub, name: this.config.name }, 'node starting');
    const loop = async () => {
      await this.syncOnce();
      if (!this.stopped) this.timer = setTimeout(() => void loop(), this.config.sync.intervalSeconds * 1000);
    };
    void loop();
    await this.agent.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.agent.stop();
    await this.sync.idle();
    this.libraryClient.close();
    this.chunksClient.close();
    this.db.close();
  }
}
