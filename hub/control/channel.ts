import { randomBytes } from 'node:crypto';
import type { Logger } from '../../src/log.js';
import { connectBroker, endClient, publish, subscribe, whenConnected, type MqttClient } from '../../src/protocol/mqtt-client.js';
import { encode, PROTOCOL_VERSION, type ErrorCode, type ErrorEvent, type PayloadIssue } from '../../src/protocol/schemas.js';
import { Topics } from '../../src/protocol/topics.js';

export interface ControlChannelOptions {
  /** Asked at start: the embedded broker knows its port only once it listens. */
  url: () => string;
  username?: string;
  password?: string;
  topicPrefix: string;
  software: string;
  /** TLS options for an mqtts:// broker (see BrokerOptions.tls). */
  tls?: { ca?: Buffer; rejectUnauthorized?: boolean };
}

export interface IncomingMessage {
  topic: string;
  payload: Buffer;
  /** True for a retained message delivered because we subscribed, not a new one. */
  retained: boolean;
}

type Handler = (message: IncomingMessage) => void;

/** Sees every value the hub publishes (null: a retained topic was cleared), in-process. */
export type PublishTap = (topic: string, value: unknown) => void;

/** Does an MQTT topic filter (with + and #) match a topic? */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/**
 * The hub's one connection to the broker (embedded or external). Modules register the
 * topics they handle and publish through it; it announces the hub's status (retained,
 * with a last will saying offline) and refuses bad messages with an error event.
 */
export class ControlChannel {
  readonly topics: Topics;
  private client?: MqttClient;
  private readonly handlers: { filter: string; handler: Handler }[] = [];
  private readonly taps = new Set<PublishTap>();

  constructor(
    private readonly options: ControlChannelOptions,
    private readonly log: Logger,
  ) {
    this.topics = new Topics(options.topicPrefix);
  }

  async start(): Promise<void> {
    const url = this.options.url();
    const client = connectBroker(
      {
        url,
        username: this.options.username,
        password: this.options.password,
        clientId: `firefly-hub-${randomBytes(4).toString('hex')}`,
        keepaliveSeconds: 5,
        tls: this.options.tls,
        will: { topic: this.topics.hubStatus, payload: encode({ online: false }), qos: 1, retain: true },
      },
      // Errors while stopping (the broker closing under us) are expected.
      (message) => (this.client ? this.log.warn(message) : undefined),
    );
    this.client = client;
    client.on('message', (topic, payload, packet) => this.dispatch({ topic, payload, retained: packet.retain }));
    client.on('connect', () => {
      // Clean sessions: subscriptions and the status are set again on every (re)connect.
      const filters = [...new Set(this.handlers.map((h) => h.filter))];
      if (filters.length > 0) void subscribe(client, filters).catch((err: Error) => this.log.warn({ err: err.message }, 'MQTT subscribe failed'));
      this.publish(this.topics.hubStatus, { online: true, software: this.options.software, protocol: PROTOCOL_VERSION, at: Date.now() }, { retain: true });
    });
    client.on('close', () => this.log.debug('MQTT connection closed'));
    try {
      await whenConnected(client, url);
    } catch (err) {
      await endClient(client, true);
      this.client = undefined;
      throw err;
    }
    this.log.info({ url }, 'connected to the MQTT broker');
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    if (client.connected) {
      await publish(client, this.topics.hubStatus, encode({ online: false, at: Date.now() }), { retain: true }).catch(() => undefined);
    }
    await endClient(client);
  }

  /** Calls `handler` for every message on `filter`; subscribes now if connected. */
  async handle(filter: string, handler: Handler): Promise<void> {
    this.handlers.push({ filter, handler });
    if (this.client?.connected) await subscribe(this.client, [filter]);
  }

  publish(topic: string, value: unknown, options: { retain?: boolean; qos?: 0 | 1 } = {}): void {
    this.publishRaw(topic, encode(value), options);
    this.tap(topic, value);
  }

  /** Publishes bytes as they are (cover art), not JSON. */
  publishBytes(topic: string, payload: Buffer, options: { retain?: boolean; qos?: 0 | 1 } = {}): void {
    this.publishRaw(topic, payload, options);
  }

  /** An empty retained payload clears the retained message of a topic. */
  clearRetained(topic: string): void {
    this.publishRaw(topic, Buffer.alloc(0), { retain: true });
    this.tap(topic, null);
  }

  /**
   * Calls `tap` with every value the hub publishes from now on (the web page's live
   * updates forward the hub's own state topics: one source of truth). Returns the undo.
   */
  onPublish(tap: PublishTap): () => void {
    this.taps.add(tap);
    return () => this.taps.delete(tap);
  }

  private tap(topic: string, value: unknown): void {
    for (const tap of this.taps) {
      try {
        tap(topic, value);
      } catch (err) {
        this.log.warn({ err, topic }, 'publish tap failed');
      }
    }
  }

  /** Refuses a message: an error event on the documented error topic. */
  error(topic: string, code: ErrorCode, message: string, id: string | null = null, issues?: PayloadIssue[]): void {
    const event: ErrorEvent = { code, message, topic: topic.slice(0, 256), id, issues, at: Date.now() };
    this.log.debug({ ...event }, 'refused an MQTT message');
    this.publish(this.topics.errors, event, { qos: 0 });
  }

  private publishRaw(topic: string, payload: Buffer, options: { retain?: boolean; qos?: 0 | 1 }): void {
    if (!this.client) return;
    this.client.publish(topic, payload, { retain: options.retain ?? false, qos: options.qos ?? 1 }, (err) => {
      if (err) this.log.warn({ topic, err: err.message }, 'MQTT publish failed');
    });
  }

  private dispatch(message: IncomingMessage): void {
    for (const { filter, handler } of this.handlers) {
      if (!topicMatches(filter, message.topic)) continue;
      try {
        handler(message);
      } catch (err) {
        // A handler bug must not take the hub down; say so on the error topic.
        this.log.error({ err, topic: message.topic }, 'MQTT handler failed');
        this.error(message.topic, 'internal', `the hub failed to handle this message: ${(err as Error).message}`);
      }
    }
  }
}
