import { EventEmitter } from 'node:events';
import type { Logger } from '../log.js';
import { connectBroker, endClient, publish, subscribe, type MqttClient } from '../protocol/mqtt-client.js';
import {
  encode,
  hubStatusSchema,
  libraryAnnouncementSchema,
  nodeCommandSchema,
  parsePayload,
  PROTOCOL_VERSION,
  welcomeSchema,
  type Availability,
  type ClockQuality,
  type DownloadProgress,
  type Heartbeat,
  type Holdings,
  type JoinRequest,
  type NodeCommand,
  type NodePlayback,
  type PlayerEvent,
  type StoreUsage,
  type Welcome,
} from '../protocol/schemas.js';
import { Topics } from '../protocol/topics.js';
import { SOFTWARE_VERSION } from '../version.js';

export interface ControlAgentOptions {
  url: string;
  username?: string;
  password?: string;
  topicPrefix: string;
  keepaliveSeconds: number;
  heartbeatSeconds: number;
  uuid: string;
  name: string;
  /** For an mqtts:// broker: the CA to trust (else the system's). */
  tls?: { ca?: Buffer };
}

/** What the heartbeat reports, read from the node's parts each time. */
export interface NodeStatus {
  libraryVersion(): number;
  storeUsage(): StoreUsage;
  /** What the player does now (idle until a group plays). */
  playback?(): NodePlayback;
  clock(): ClockQuality;
  /** The library download running now (or the last one), for the web page's progress. */
  downloads?(): DownloadProgress;
}

interface AgentEvents {
  /** The hub assigned (or confirmed) this node's id. */
  welcome: [Welcome];
  /** The hub announced a library version newer than ours, or asked for a sync. */
  library: [version: number];
  volume: [volume: number, groupVolume: number, atHubMs: number | undefined];
  /** Mute (node or group) and the latency offset changed. */
  output: [muted: boolean, latencyMs: number];
  /** The hub's sync coordinator: prepare, start, next, stop, cue. */
  player: [Extract<NodeCommand, { command: 'prepare' | 'start' | 'next' | 'stop' | 'cue' }>];
}

/**
 * The node's side of the control plane: keeps an MQTT connection to the broker, says it
 * is online (retained, with a last will saying offline), joins whenever the hub comes
 * up, heartbeats, and turns the hub's announcements and commands into events.
 */
export class ControlAgent extends EventEmitter<AgentEvents> {
  readonly topics: Topics;
  private client?: MqttClient;
  private timer?: NodeJS.Timeout;
  private seq = 0;
  nodeId: number | null = null;
  volume = 100;
  groupVolume = 100;
  playback: NodePlayback = { state: 'idle', trackId: null, positionMs: null };

  constructor(
    private readonly options: ControlAgentOptions,
    private readonly status: NodeStatus,
    private readonly log: Logger,
  ) {
    super();
    this.topics = new Topics(options.topicPrefix);
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  async start(): Promise<void> {
    const t = this.topics;
    const { uuid, name } = this.options;
    const offline: Availability = { state: 'offline', uuid, name, reason: 'lost' };
    const client = connectBroker(
      {
        url: this.options.url,
        username: this.options.username,
        password: this.options.password,
        clientId: `firefly-node-${uuid}`.slice(0, 64),
        keepaliveSeconds: this.options.keepaliveSeconds,
        tls: this.options.tls,
        will: { topic: t.nodeAvailability(uuid), payload: encode(offline), qos: 1, retain: true },
      },
      (message) => this.log.warn(message),
    );
    this.client = client;
    let lastError = '';
    client.on('error', (err) => {
      lastError = err.message;
      // CONNACK 4/5: bad user name or password / not authorized.
      const code = (err as { code?: number }).code;
      if (code === 4 || code === 5) this.log.error({ url: this.options.url, user: this.options.username ?? null }, 'the broker refused this node\'s credentials: give it a token from `firefly ctl credentials add-node` on the hub machine (setting security.token, FIREFLY_TOKEN)');
    });
    client.on('connect', () => {
      this.log.info({ url: this.options.url }, 'connected to the control plane');
      const online: Availability = { state: 'online', uuid, name, at: Date.now() };
      client.publish(t.nodeAvailability(uuid), encode(online), { qos: 1, retain: true });
      void subscribe(client, [t.hubStatus, t.library, t.nodeWelcome(uuid), t.nodeCommand(uuid)]).catch((err: Error) => this.log.warn({ err: err.message }, 'MQTT subscribe failed'));
    });
    client.on('offline', () => this.log.warn({ url: this.options.url, err: lastError || undefined }, 'control plane unreachable; retrying'));
    client.on('message', (topic, payload) => this.onMessage(topic, payload));
    this.timer = setInterval(() => this.heartbeat(), this.options.heartbeatSeconds * 1000);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    if (client.connected) {
      const offline: Availability = { state: 'offline', uuid: this.options.uuid, name: this.options.name, reason: 'clean', at: Date.now() };
      await publish(client, this.topics.nodeAvailability(this.options.uuid), encode(offline), { retain: true }).catch(() => undefined);
    }
    await endClient(client);
  }

  /** Tells the hub which chunks this node holds (peer-to-peer); false when not connected. */
  sendHoldings(holdings: Holdings): boolean {
    const client = this.client;
    if (!client?.connected) return false;
    client.publish(this.topics.nodeHoldings(this.options.uuid), encode(holdings), { qos: 1 });
    return true;
  }

  /** The local address of the connection to the broker: how this node is reached from the hub's side. */
  get localAddress(): string | undefined {
    const stream = this.client?.stream as { localAddress?: string } | undefined;
    return stream?.localAddress;
  }

  /** Tells the hub what the player did (ready, track changed, ended, failed). */
  sendPlayerEvent(event: PlayerEvent): void {
    this.client?.publish(this.topics.nodePlayer(this.options.uuid), encode(event), { qos: 1 });
  }

  private join(): void {
    const request: JoinRequest = { uuid: this.options.uuid, name: this.options.name, software: SOFTWARE_VERSION, protocol: PROTOCOL_VERSION };
    this.client?.publish(this.topics.nodeJoin(this.options.uuid), encode(request), { qos: 1 });
  }

  private heartbeat(): void {
    const client = this.client;
    if (!client?.connected) return;
    let beat: Heartbeat;
    try {
      const usage = this.status.storeUsage();
      beat = {
        seq: this.seq++,
        at: Date.now(),
        nodeId: this.nodeId,
        libraryVersion: this.status.libraryVersion(),
        store: { chunks: usage.chunks, bytes: usage.bytes, budgetBytes: usage.budgetBytes, ...(usage.full ? { full: true } : {}) },
        playback: this.status.playback?.() ?? this.playback,
        clock: this.status.clock(),
        volume: this.volume,
        downloads: this.status.downloads?.(),
      };
    } catch (err) {
      // The store is closing (stop in progress): skip this beat.
      this.log.debug({ err: (err as Error).message }, 'heartbeat skipped');
      return;
    }
    client.publish(this.topics.nodeHeartbeat(this.options.uuid), encode(beat), { qos: 0 });
  }

  private onMessage(topic: string, payload: Buffer): void {
    const t = this.topics;
    const uuid = this.options.uuid;
    if (topic === t.hubStatus) {
      const status = parsePayload(hubStatusSchema, payload);
      if (status.ok && status.value.online) this.join();
    } else if (topic === t.nodeWelcome(uuid)) {
      const welcome = parsePayload(welcomeSchema, payload);
      if (!welcome.ok) return this.log.warn({ topic, err: welcome.message }, 'bad welcome from the hub');
      if (this.nodeId !== welcome.value.nodeId) this.log.info({ nodeId: welcome.value.nodeId, group: welcome.value.group?.name }, 'joined the hub');
      this.nodeId = welcome.value.nodeId;
      this.emit('welcome', welcome.value);
      if (welcome.value.libraryVersion > this.status.libraryVersion()) this.emit('library', welcome.value.libraryVersion);
    } else if (topic === t.library) {
      const announcement = parsePayload(libraryAnnouncementSchema, payload);
      if (announcement.ok && announcement.value.version > this.status.libraryVersion()) this.emit('library', announcement.value.version);
    } else if (topic === t.nodeCommand(uuid)) {
      const command = parsePayload(nodeCommandSchema, payload);
      if (!command.ok) return this.log.warn({ topic, err: command.message }, 'bad command from the hub');
      const c = command.value;
      if (c.command === 'volume') {
        this.volume = c.volume;
        this.groupVolume = c.groupVolume;
        this.emit('volume', this.volume, this.groupVolume, c.atHubMs);
      } else if (c.command === 'sync') {
        this.emit('library', c.libraryVersion);
      } else if (c.command === 'output') {
        this.emit('output', c.muted, c.latencyMs);
      } else {
        this.emit('player', c);
      }
    }
  }
}
