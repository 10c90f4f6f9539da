import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyPluginAsync, type FastifyReply } from 'fastify';
import type { Logger } from '../../src/log.js';
import { installErrorHandler } from './errors.js';

export interface HttpServerOptions {
  host: string;
  /** 0: any free port (tests); the bound port is logged and kept in `port`. */
  port: number;
  /** Largest request body accepted by routes that do not set their own limit. */
  bodyLimitBytes?: number;
  /** Serve HTTPS with this certificate and key (PEM; setting security.tls). */
  https?: { cert: Buffer; key: Buffer };
}

/**
 * The hub's one HTTP server (fastify, default port 8081): the web page, the REST API,
 * live updates, cover art and the audio streams Cast and Sonos devices fetch. Each
 * concern is a fastify plugin added with `use()` before start; the server listens once
 * all of them are registered, and logs "HTTP listening" with the port it bound.
 */
export class HttpServer {
  readonly app: FastifyInstance;
  private readonly plugins: { name: string; plugin: FastifyPluginAsync }[] = [];
  private boundPort = 0;

  constructor(
    private readonly options: HttpServerOptions,
    private readonly log: Logger,
  ) {
    this.app = Fastify({
      loggerInstance: log as unknown as FastifyBaseLogger,
      // Request logs at debug: a page polling covers would otherwise flood the log.
      disableRequestLogging: true,
      bodyLimit: options.bodyLimitBytes ?? 1024 * 1024,
      // Behind no proxy by default; the client's address is the socket's.
      trustProxy: false,
      // A URL fastify cannot even route (bad percent-encoding…): the API's error body too.
      frameworkErrors: (error, _request, reply: FastifyReply) => {
        void reply.code(400).type('application/json').send({ error: { code: 'invalid', message: error.message } });
      },
      ...(options.https ? { https: options.https } : {}),
    }) as unknown as FastifyInstance;
    // Errors outside any plugin's own handler (a body refused before routing, an unknown
    // path) answer with the same JSON error body as the REST API.
    installErrorHandler(this.app);
  }

  /** Adds a plugin (routes of one concern); call before start. */
  use(name: string, plugin: FastifyPluginAsync): void {
    this.plugins.push({ name, plugin });
  }

  get port(): number {
    return this.boundPort;
  }

  /** The address a browser on this machine reaches the server at. */
  get localUrl(): string {
    const host = this.options.host === '0.0.0.0' || this.options.host === '::' ? '127.0.0.1' : this.options.host;
    return `${this.options.https ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${this.boundPort}`;
  }

  async start(): Promise<void> {
    for (const { plugin } of this.plugins) await this.app.register(plugin);
    await this.app.listen({ host: this.options.host, port: this.options.port });
    const address = this.app.server.address();
    this.boundPort = typeof address === 'object' && address ? address.port : this.options.port;
    this.log.info({ host: this.options.host, port: this.boundPort, plugins: this.plugins.map((p) => p.name) }, 'HTTP listening');
  }

  async stop(): Promise<void> {
    // Long-lived responses (live updates, audio streams) must not hold the stop up.
    this.app.server.closeAllConnections?.();
    await this.app.close();
  }
}
