import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { connectBroker, endClient, publish, subscribe, type MqttClient } from '../protocol/mqtt-client.js';
import {
  commandReplySchema,
  encode,
  groupListSchema,
  groupStateSchema,
  hubStatusSchema,
  parsePayload,
  playlistListSchema,
  type CommandPayload,
  type GroupState,
  type PlaylistSummary,
} from '../protocol/schemas.js';
import { Topics, type CommandName } from '../protocol/topics.js';

export interface HubLinkOptions {
  url: string;
  username?: string;
  password?: string;
  topicPrefix: string;
}

export interface LinkLog {
  info(message: string): void;
  warn(message: string): void;
  debug(message: string): void;
}

/** A broker address fit for the log: a password written into the URL is hidden. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^/@:]*):[^/@]*@/, '//$1:***@');
}

/** The hub cannot be asked right now (broker unreachable, hub offline, or no reply in time). */
export class HubUnreachable extends Error {}
/** The hub answered and said no. */
export class HubRefused extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

interface LinkEvents {
  /** Reachability changed (broker connected and hub online, or not). */
  reachable: [reachable: boolean];
  /** The set of groups or any group's state changed. */
  groups: [groups: ReadonlyMap<number, GroupState>];
  playlists: [playlists: readonly PlaylistSummary[]];
}

type Body<N extends CommandName> = Omit<CommandPayload<N>, 'id' | 'replyTo'>;

/**
 * The plugin's view of a hub, over MQTT only: the retained hub status, group list, group
 * states and playlists, and commands with replies. Nothing here throws at the caller
 * except `command()`, which rejects with HubUnreachable or HubRefused.
 */
export class HubLink extends EventEmitter<LinkEvents> {
  readonly topics: Topics;
  readonly groups = new Map<number, GroupState>();
  playlists: PlaylistSummary[] = [];
  /**
   * The hub's group list arrived on this connection: only then may a group missing from
   * `groups` be taken as deleted (right after a connect the map can be empty or old).
   */
  groupsKnown = false;
  private client?: MqttClient;
  private connected = false;
  private hubOnline = false;
  private wasReachable = false;
  private readonly replyRoot: string;
  private readonly pending = new Map<string, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout; name: string }>();
  private lastError = '';
  /** The broker's address as the log shows it. */
  private readonly where: string;

  constructor(
    private readonly options: HubLinkOptions,
    private readonly log: LinkLog,
  ) {
    super();
    this.topics = new Topics(options.topicPrefix);
    this.replyRoot = this.topics.reply(`homebridge-${randomBytes(4).toString('hex')}`);
    this.where = redactUrl(options.url);
  }

  get reachable(): boolean {
    return this.connected && this.hubOnline;
  }

  start(): void {
    const client = connectBroker(
      { url: this.options.url, username: this.options.username, password: this.options.password, clientId: `homebridge-firefly-${randomBytes(4).toString('hex')}`, keepaliveSeconds: 10 },
      (message) => {
        // The client retries every second: say each distinct problem once.
        const text = message.replaceAll(this.options.url, this.where);
        if (text !== this.lastError) this.log.warn(`${text} (retrying every second)`);
        this.lastError = text;
      },
    );
    this.client = client;
    client.on('connect', () => {
      this.connected = true;
      this.groupsKnown = false;
      this.lastError = '';
      this.log.info(`connected to the MQTT broker at ${this.where}`);
      const t = this.topics;
      subscribe(client, [t.hubStatus, t.groups, t.allGroupStates, t.playlists, `${this.replyRoot}/#`]).catch((err: Error) => this.log.warn(`cannot subscribe on ${this.where}: ${err.message}`));
    });
    client.on('close', () => {
      if (this.connected) this.log.warn(`lost the MQTT broker at ${this.where}; reconnecting`);
      this.connected = false;
      this.groupsKnown = false;
      this.changed();
    });
    client.on('message', (topic, payload) => this.onMessage(topic, payload));
  }

  async stop(): Promise<void> {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new HubUnreachable('the plugin is stopping'));
      this.pending.delete(id);
    }
    const client = this.client;
    this.client = undefined;
    this.connected = false;
    if (client) await endClient(client, true);
  }

  /** Sends a command to the hub and waits for its reply. */
  command<N extends CommandName>(name: N, body: Body<N>, timeoutMs = 5000): Promise<unknown> {
    const client = this.client;
    if (!client || !this.reachable) return Promise.reject(new HubUnreachable(this.connected ? 'the hub is offline' : `the MQTT broker at ${this.where} is not reachable`));
    const id = randomBytes(6).toString('hex');
    const replyTo = `${this.replyRoot}/${id}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new HubUnreachable(`no reply from the hub to ${name} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer, name });
      publish(client, this.topics.command(name), encode({ ...body, id, replyTo })).catch((err: Error) => {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new HubUnreachable(`cannot send ${name}: ${err.message}`));
      });
    });
  }

  private onMessage(topic: string, payload: Buffer): void {
    const t = this.topics;
    if (topic === t.hubStatus) {
      const status = payload.length ? parsePayload(hubStatusSchema, payload) : undefined;
      this.hubOnline = status?.ok === true && status.value.online;
      if (status && !status.ok) this.log.warn(`unreadable hub status on ${topic}: ${status.message}`);
      this.changed();
    } else if (topic === t.groups) {
      const list = parsePayload(groupListSchema, payload);
      if (!list.ok) return this.log.warn(`unreadable group list on ${topic}: ${list.message}`);
      this.groups.clear();
      for (const g of list.value.groups) this.groups.set(g.groupId, g);
      this.groupsKnown = true;
      this.emit('groups', this.groups);
    } else if (topic.startsWith(`${t.prefix}/group/`) && topic.endsWith('/state')) {
      const groupId = Number(topic.slice(`${t.prefix}/group/`.length, -'/state'.length));
      if (!Number.isInteger(groupId)) return;
      if (payload.length === 0) {
        if (this.groups.delete(groupId)) this.emit('groups', this.groups);
        return;
      }
      const state = parsePayload(groupStateSchema, payload);
      if (!state.ok) return this.log.warn(`unreadable group state on ${topic}: ${state.message}`);
      // A state arriving after the list: newer wins (retained messages can come in any order on subscribe).
      const known = this.groups.get(groupId);
      if (known && known.at > state.value.at) return;
      this.groups.set(groupId, state.value);
      this.emit('groups', this.groups);
    } else if (topic === t.playlists) {
      if (payload.length === 0) {
        this.playlists = [];
      } else {
        const list = parsePayload(playlistListSchema, payload);
        if (!list.ok) return this.log.warn(`unreadable playlist list on ${topic}: ${list.message}`);
        this.playlists = list.value.playlists;
      }
      this.emit('playlists', this.playlists);
    } else if (topic.startsWith(`${this.replyRoot}/`)) {
      const id = topic.slice(this.replyRoot.length + 1);
      const waiting = this.pending.get(id);
      if (!waiting) return;
      this.pending.delete(id);
      clearTimeout(waiting.timer);
      const reply = parsePayload(commandReplySchema, payload);
      if (!reply.ok) return waiting.reject(new HubUnreachable(`unreadable reply to ${waiting.name}: ${reply.message}`));
      if (reply.value.ok) waiting.resolve(reply.value.result);
      else waiting.reject(new HubRefused(`the hub refused ${waiting.name}: ${reply.value.error?.message ?? 'no reason given'}`, reply.value.error?.code ?? 'internal'));
    }
  }

  private changed(): void {
    const now = this.reachable;
    if (now === this.wasReachable) return;
    this.wasReachable = now;
    this.log.info(now ? 'the Firefly hub is online' : 'the Firefly hub is unreachable: accessories show "No Response" until it is back');
    this.emit('reachable', now);
  }
}
