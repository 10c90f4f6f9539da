import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { Aedes, type AedesOptions, type AuthenticateError, type Client } from 'aedes';
import type { Logger } from '../../src/log.js';
import { sameSecret, type Credentials, type Principal } from '../security/credentials.js';
import { RateLimiter } from '../../src/transfer/rate-limit.js';
import { BrokerPermissions } from './permissions.js';
import { MqttFrameLimit } from './frame-limit.js';

export interface EmbeddedBrokerOptions {
  host: string;
  port: number;
  /** When set, every client must present these credentials. */
  username?: string;
  password?: string;
  /** When set, every client must present Firefly credentials (or the user name above) and is held to its permissions. */
  credentials?: Credentials;
  /** Topic root the permissions apply to (mqtt.topicPrefix). */
  topicPrefix?: string;
  /** Serve MQTT over TLS with this certificate and key (PEM). */
  tls?: { cert: Buffer; key: Buffer };
  /** Largest MQTT packet accepted; a client sending a bigger one is disconnected. */
  maxPacketBytes?: number;
  /** Publishes per second one client may make (bursts of twice that); over it, it is disconnected. 0: no limit. */
  publishesPerSecond?: number;
}

/** Largest MQTT packet by default: well over any Firefly message (64 KiB), far under what a length field allows. */
export const DEFAULT_MAX_PACKET_BYTES = 256 * 1024;

function refused(message: string, returnCode: 4 | 5): AuthenticateError {
  const err = new Error(message) as AuthenticateError;
  err.returnCode = returnCode;
  return err;
}

/**
 * The MQTT broker the hub runs by default (Aedes, in memory): nodes, `firefly ctl`, Home
 * Assistant and the Homebridge plugin all connect to it. Installations that already run
 * a broker set `mqtt.url` and the hub does not start this module.
 */
export class EmbeddedBroker {
  private aedes?: Aedes;
  private server?: Server;
  private readonly principals = new WeakMap<Client, Principal>();
  private readonly publishLimit: RateLimiter;
  /** Clients refused so far (connects, publishes, subscribes), for the log and tests. */
  readonly refusals = { connect: 0, publish: 0, subscribe: 0 };

  constructor(
    private readonly options: EmbeddedBrokerOptions,
    private readonly log: Logger,
  ) {
    const rate = options.publishesPerSecond ?? 0;
    this.publishLimit = new RateLimiter(rate, rate * 2);
  }

  /** The port it listens on (the real one when the setting was 0). */
  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? this.options.port;
  }

  /** Where the hub's own client reaches it. */
  get url(): string {
    const host = ['0.0.0.0', '::', ''].includes(this.options.host) ? '127.0.0.1' : this.options.host;
    return `${this.options.tls ? 'mqtts' : 'mqtt'}://${host.includes(':') ? `[${host}]` : host}:${this.port}`;
  }

  private brokerOptions(): AedesOptions {
    const { username, password, credentials } = this.options;
    const limited = (client: Client): boolean => {
      if (this.publishLimit.allow(client.id)) return false;
      this.log.warn({ client: client.id, limit: this.publishLimit.perSecond }, 'MQTT client disconnected: publishing faster than allowed');
      return true;
    };
    if (!username && !credentials) {
      if (this.publishLimit.perSecond <= 0) return {};
      // An error from authorizePublish makes Aedes close the client's connection.
      return { authorizePublish: (client, _packet, done) => done(client && limited(client) ? new Error('publishing too fast') : null) };
    }
    const permissions = new BrokerPermissions(this.options.topicPrefix ?? 'firefly');
    const authenticate: AedesOptions['authenticate'] = (client, user, pass, done) => {
      const secret = pass?.toString() ?? '';
      let who: Principal | undefined;
      if (username && user !== undefined && sameSecret(user, username) && sameSecret(secret, password ?? '')) who = { kind: 'hub' };
      else if (credentials) who = credentials.verify(user, secret);
      if (who?.kind === 'swarm') who = undefined;
      if (!who) {
        this.refusals.connect++;
        this.log.warn({ client: client.id, user, address: (client.conn as Socket).remoteAddress }, 'MQTT client refused: bad user name or password');
        return done(refused('bad user name or password', 4), null);
      }
      const idProblem = permissions.clientId(who, client.id);
      if (idProblem) {
        this.refusals.connect++;
        this.log.warn({ client: client.id, user }, `MQTT client refused: ${idProblem}`);
        return done(refused(idProblem, 5), null);
      }
      this.principals.set(client, who);
      done(null, true);
    };
    const authorizePublish: AedesOptions['authorizePublish'] = (client, packet, done) => {
      // The broker's own messages ($SYS, wills it publishes for a client) come with no client.
      if (!client) return done(null);
      if (limited(client)) return done(new Error('publishing too fast'));
      const who = this.principals.get(client);
      const problem = who ? permissions.publish(who, packet.topic) : 'not authenticated';
      if (problem) {
        this.refusals.publish++;
        this.log.warn({ client: client.id, topic: packet.topic }, `MQTT publish refused: ${problem}`);
        return done(new Error(problem));
      }
      done(null);
    };
    const authorizeSubscribe: AedesOptions['authorizeSubscribe'] = (client, subscription, done) => {
      const who = this.principals.get(client);
      const problem = who ? permissions.subscribe(who, subscription.topic) : 'not authenticated';
      if (problem) {
        this.refusals.subscribe++;
        this.log.warn({ client: client.id, topic: subscription.topic }, `MQTT subscribe refused: ${problem}`);
        // A null subscription is answered with a failure code (0x80) and the client stays connected.
        return done(null, null);
      }
      done(null, subscription);
    };
    const authorizeForward: AedesOptions['authorizeForward'] = (client, packet) => {
      const who = this.principals.get(client);
      return who && permissions.deliver(who, packet.topic) ? packet : null;
    };
    return { authenticate, authorizePublish, authorizeSubscribe, authorizeForward };
  }

  /** Cuts a connection that sends a packet over the size limit or publishes faster than allowed. */
  private guard(socket: Socket): void {
    const limit = new MqttFrameLimit(this.options.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES);
    const push = socket.push.bind(socket);
    // Every byte the socket reads passes through push(): checking here stops an oversized
    // packet before Aedes's parser buffers it.
    socket.push = (chunk: unknown, encoding?: BufferEncoding) => {
      if (chunk && !socket.destroyed && !limit.accept(chunk as Uint8Array)) {
        this.log.warn({ address: socket.remoteAddress, limit: limit.maxFrameBytes }, 'MQTT client disconnected: packet over the size limit');
        socket.destroy();
        return false;
      }
      return push(chunk, encoding);
    };
  }

  async start(): Promise<void> {
    this.aedes = await Aedes.createBroker(this.brokerOptions());
    const aedes = this.aedes;
    aedes.on('clientDisconnect', (client) => this.publishLimit.forget(client.id));
    aedes.on('clientError', (client, err) => this.log.debug({ client: client?.id, err: err.message }, 'MQTT client error'));
    aedes.on('connectionError', (client, err) => this.log.debug({ client: client?.id, err: err.message }, 'MQTT connection error'));
    const handle = (socket: Socket) => {
      // Small control packets go out at once (no Nagle wait behind a client's delayed ACK).
      socket.setNoDelay(true);
      this.guard(socket);
      aedes.handle(socket);
    };
    const tls = this.options.tls;
    const server = tls ? createTlsServer({ cert: tls.cert, key: tls.key }, handle) : createServer(handle);
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new Error(`the embedded MQTT broker cannot listen on ${this.options.host}:${this.options.port}: ${err.code ?? err.message} (settings mqtt.host / mqtt.port, or set mqtt.url to use an external broker)`)),
      );
      server.listen(this.options.port, this.options.host, () => resolve());
    });
    this.log.info({ host: this.options.host, port: this.port, auth: Boolean(this.options.username || this.options.credentials), tls: Boolean(tls) }, 'embedded MQTT broker listening');
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
