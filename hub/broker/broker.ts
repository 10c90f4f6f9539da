import { createServer, type AddressInfo, type Server } from 'node:net';
import { timingSafeEqual } from 'node:crypto';
import { Aedes, type AedesOptions, type AuthenticateError } from 'aedes';
import type { Logger } from '../../src/log.js';

export interface EmbeddedBrokerOptions {
  host: string;
  port: number;
  /** When set, every client must present these credentials. */
  username?: string;
  password?: string;
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * The MQTT broker the hub runs by default (Aedes, in memory): nodes, `firefly ctl`, Home
 * Assistant and the Homebridge plugin all connect to it. Installations that already run
 * a broker set `mqtt.url` and the hub does not start this module.
 */
export class EmbeddedBroker {
  private aedes?: Aedes;
  private server?: Server;

  constructor(
    private readonly options: EmbeddedBrokerOptions,
    private readonly log: Logger,
  ) {}

  /** The port it listens on (the real one when the setting was 0). */
  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? this.options.port;
  }

  /** Where the hub's own client reaches it. */
  get url(): string {
    const host = ['0.0.0.0', '::', ''].includes(this.options.host) ? '127.0.0.1' : this.options.host;
    return `mqtt://${host.includes(':') ? `[${host}]` : host}:${this.port}`;
  }

  async start(): Promise<void> {
    const { username, password } = this.options;
    const authenticate: AedesOptions['authenticate'] = (_client, user, pass, done) => {
      if (user !== undefined && sameSecret(user, username!) && sameSecret(pass?.toString() ?? '', password ?? '')) return done(null, true);
      const err = new Error('bad user name or password') as AuthenticateError;
      err.returnCode = 4;
      done(err, null);
    };
    // Aedes takes an absent option as "use the default"; an explicit undefined breaks it.
    this.aedes = await Aedes.createBroker(username ? { authenticate } : {});
    this.aedes.on('clientError', (client, err) => this.log.debug({ client: client?.id, err: err.message }, 'MQTT client error'));
    this.aedes.on('connectionError', (client, err) => this.log.debug({ client: client?.id, err: err.message }, 'MQTT connection error'));
    const server = createServer((socket) => this.aedes!.handle(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new Error(`the embedded MQTT broker cannot listen on ${this.options.host}:${this.options.port}: ${err.code ?? err.message} (settings mqtt.host / mqtt.port, or set mqtt.url to use an external broker)`)),
      );
      server.listen(this.options.port, this.options.host, () => resolve());
    });
    this.log.info({ host: this.options.host, port: this.port, auth: Boolean(username) }, 'embedded MQTT broker listening');
  }

  async stop(): Promise<void> {
    const server = this.server;
    const aedes = this.aedes;
    this.server = undefined;
    this.aedes = undefined;
    if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()));
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
