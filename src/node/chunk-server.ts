import { Server, ServerCredentials, type ServerInterceptor } from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import { channelOptions, dataPlane, DEFAULT_MAX_MESSAGE_BYTES, shutdownServer } from '../protocol/data-plane.js';
import { chunkService, type ChunkServiceStats } from '../transfer/chunk-service.js';
import type { ChunkStore } from './chunk-store.js';

export interface ChunkServerOptions {
  host: string;
  /** 0: any free port (read `boundPort` after start). */
  port: number;
  maxMessageBytes?: number;
  /** Tests only (sim.corruptServing): damage every chunk served. */
  corrupt?: boolean;
  /** Checks run before any handler: with credentials on, the peer's swarm token. */
  interceptors?: ServerInterceptor[];
}

/**
 * The node's Chunks service: peers fetch the chunks this node holds, straight from its
 * store (each verified on the way out, as the hub does).
 */
export class ChunkServer {
  readonly stats: ChunkServiceStats = { chunksSent: 0, bytesSent: 0, missing: 0, deflected: 0 };
  boundPort = 0;
  private server?: Server;

  constructor(
    private readonly store: ChunkStore,
    private readonly options: ChunkServerOptions,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const server = new Server({ ...channelOptions(this.options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES), interceptors: this.options.interceptors ?? [] });
    server.addService(dataPlane().firefly.v1.Chunks.service, chunkService({ read: (hash) => this.store.read(hash) }, this.stats, { corrupt: this.options.corrupt }));
    const { host, port } = this.options;
    const bind = (p: number) =>
      new Promise<number>((resolve, reject) =>
        server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${p}`, ServerCredentials.createInsecure(), (err, bound) =>
          err ? reject(new Error(`cannot serve chunks on ${host}:${p}: ${err.message} (setting: serve.port; 0 picks a free port)`)) : resolve(bound),
        ),
      );
    try {
      this.boundPort = await bind(port);
    } catch (err) {
      if (port === 0) throw err;
      // Peers learn the port from the holdings announcement, so any port serves them as well.
      this.log.warn({ err: (err as Error).message }, 'chunk server port taken; serving on a free port instead');
      this.boundPort = await bind(0);
    }
    this.server = server;
    if (this.options.corrupt) this.log.warn('sim.corruptServing is on: every chunk served to peers is damaged (tests only)');
    this.log.info({ host, port: this.boundPort }, 'chunk server listening');
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    await shutdownServer(server, 1000);
  }
}
