import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { HubConfig } from '../src/config/schema.js';
import type { Logger } from '../src/log.js';
import { Catalogue } from './library/catalogue.js';
import { Library } from './library/library.js';
import { DataPlaneServer } from './grpc/server.js';

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
        followSymlinks: config.index.followSymlinks,
        inMemoryLimitBytes: config.index.inMemoryLimitBytes,
        workers: config.index.workers,
      },
      log.child({ module: 'library' }),
    );
    this.dataPlane = new DataPlaneServer(this.catalogue, config.grpc, log.child({ module: 'grpc' }), (file) => this.library.rescanFile(file));
  }

  async start(): Promise<void> {
    for (const module of [this.dataPlane, this.library]) {
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
  }
}
