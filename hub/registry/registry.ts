import { EventEmitter } from 'node:events';
import type { Logger } from '../../src/log.js';
import { cached, type Db } from '../../src/storage/sqlite.js';
import {
  availabilitySchema,
  heartbeatSchema,
  joinSchema,
  parsePayload,
  type GroupState,
  type Heartbeat,
  type NodeCommand,
  type NodeEvent,
  type NodeInfo,
  type Welcome,
} from '../../src/protocol/schemas.js';
import type { ControlChannel, IncomingMessage } from '../control/channel.js';
import { CommandError, type CommandRouter } from '../control/commands.js';
import { DEFAULT_COORDINATOR } from '../playback/sync-coordinator.js';

export const REGISTRY_SCHEMA = `
  CREATE TABLE nodes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    volume INTEGER NOT NULL DEFAULT 100,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER
  );
`;

export interface RegistryOptions {
  heartbeatTimeoutMs: number;
  /** What the welcome tells a node about the library. */
  libraryVersion: () => number;
  /** With credentials on: handed to each node in its welcome, for its peers' chunk servers. */
  swarmToken?: string;
  /** The hub's clock: given, a volume change is sent to take effect at a hub time VOLUME_LEAD_MS ahead, the same instant on every member. */
  hubNow?: () => number;
}

/** How far ahead a volume change is timed (ms): the barrier's start margin, so it reaches every member before it is due. */
export const VOLUME_LEAD_MS = DEFAULT_COORDINATOR.startMarginMs;

/** What the registry needs to know about groups (the Groups module answers). */
export interface GroupDirectory {
  groupIdOfNode(nodeId: number): number | null;
  groupOfNode(nodeId: number): GroupState | null;
}

interface NodeRow {
  id: number;
  uuid: string;
  name: string;
  volume: number;
  last_seen: number | null;
}

interface LiveState {
  online: boolean;
  lastSeen: number;
  heartbeat?: Heartbeat;
  /** Marked offline because its heartbeats stopped (its connection may have stayed up). */
  timedOut?: boolean;
}

interface RegistryEvents {
  /** A node came online (joined, or heartbeats again). */
  online: [node: NodeInfo];
  /** A node went offline: clean exit, lost connection (last will) or heartbeat timeout. */
  offline: [node: NodeInfo, reason: 'clean' | 'lost' | 'timeout'];
  /** Name or volume changed. */
  changed: [node: NodeInfo];
}

/**
 * Node membership: who has joined (each node's hub-assigned id is kept in SQLite, keyed by
 * the node's stable uuid), who is online, and what their last heartbeat said. Publishes
 * the retained node list and a notification on every join, arrival and departure.
 */
export class NodeRegistry extends EventEmitter<RegistryEvents> {
  private readonly live = new Map<string, LiveState>();
  private sweepTimer?: NodeJS.Timeout;
  private listTimer?: NodeJS.Timeout;
  private statsDirty = false;
  private listPending?: NodeJS.Timeout;
  groups?: GroupDirectory;

  constructor(
    private readonly db: Db,
    private readonly channel: ControlChannel,
    private readonly commands: CommandRouter,
    private readonly options: RegistryOptions,
    private readonly log: Logger,
  ) {
    super();
  }

  async start(): Promise<void> {
    const t = this.channel.topics;
    this.commands.register('node/volume', ({ nodeId, volume }) => {
      const row = this.rowById(nodeId);
      if (!row) throw new CommandError('not-found', `no node with id ${nodeId}`);
      cached(this.db, 'UPDATE nodes SET volume = ? WHERE id = ?').run(volume, nodeId);
      this.sendVolume(nodeId);
      const info = this.info(nodeId)!;
      this.emit('changed', info);
      this.publishList();
      return info;
    });
    await this.channel.handle(t.anyNode('join'), (m) => this.onJoin(m));
    await this.channel.handle(t.anyNode('availability'), (m) => this.onAvailability(m));
    await this.channel.handle(t.anyNode('heartbeat'), (m) => this.onHeartbeat(m));
    this.publishList();
    this.sweepTimer = setInterval(() => this.guarded('sweep', () => this.sweep()), Math.min(250, this.options.heartbeatTimeoutMs / 4));
    // Heartbeat figures (library version, store) reach the retained list at most every 5 s.
    this.listTimer = setInterval(() => {
      if (this.statsDirty) this.publishList();
    }, 5000);
    this.listTimer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.sweepTimer);
    clearInterval(this.listTimer);
    clearTimeout(this.listPending);
  }

  list(): NodeInfo[] {
    const rows = cached(this.db, 'SELECT id, uuid, name, volume, last_seen FROM nodes ORDER BY id').all() as NodeRow[];
    return rows.map((r) => this.toInfo(r));
  }

  info(nodeId: number): NodeInfo | undefined {
    const row = this.rowById(nodeId);
    return row ? this.toInfo(row) : undefined;
  }

  /** The id of the node with this uuid (one indexed lookup; list() builds every node's info). */
  idOf(uuid: string): number | undefined {
    return this.rowByUuid(uuid)?.id;
  }

  /** The uuid of the node with this id (one indexed lookup; info() builds the whole node info). */
  uuidOf(nodeId: number): string | undefined {
    return this.rowById(nodeId)?.uuid;
  }

  isOnline(nodeId: number): boolean {
    const row = this.rowById(nodeId);
    return row ? (this.live.get(row.uuid)?.online ?? false) : false;
  }

  /** The hub time a volume change sent now takes effect at (undefined: the hub's clock is not known here; at once). */
  volumeInstant(): number | undefined {
    const now = this.options.hubNow?.();
    return now === undefined ? undefined : now + VOLUME_LEAD_MS;
  }

  /** Tells a node its volume and its group's (after either changed), to take effect at `atHubMs` (give a group's members the same). */
  sendVolume(nodeId: number, atHubMs = this.volumeInstant()): void {
    const row = this.rowById(nodeId);
    if (!row) return;
    const command: NodeCommand = {
      command: 'volume',
      volume: row.volume,
      groupVolume: this.groups?.groupOfNode(nodeId)?.volume ?? 100,
      ...(atHubMs === undefined ? {} : { atHubMs }),
    };
    this.channel.publish(this.channel.topics.nodeCommand(row.uuid), command);
  }

  /** Publishes the retained node list soon (changes in one burst, e.g. 500 nodes joining, make one message). */
  publishList(): void {
    if (this.listPending) return;
    this.listPending = setTimeout(() => {
      this.listPending = undefined;
      this.statsDirty = false;
      this.guarded('node list', () => this.channel.publish(this.channel.topics.nodes, { nodes: this.list(), at: Date.now() }, { retain: true }));
    }, 20);
  }

  private rowById(nodeId: number): NodeRow | undefined {
    return cached(this.db, 'SELECT id, uuid, name, volume, last_seen FROM nodes WHERE id = ?').get(nodeId) as NodeRow | undefined;
  }

  private rowByUuid(uuid: string): NodeRow | undefined {
    return cached(this.db, 'SELECT id, uuid, name, volume, last_seen FROM nodes WHERE uuid = ?').get(uuid) as NodeRow | undefined;
  }

  private toInfo(row: NodeRow): NodeInfo {
    const live = this.live.get(row.uuid);
    const hb = live?.heartbeat;
    return {
      nodeId: row.id,
      uuid: row.uuid,
      name: row.name,
      online: live?.online ?? false,
      lastSeen: live?.lastSeen ?? row.last_seen,
      groupId: this.groups?.groupIdOfNode(row.id) ?? null,
      volume: row.volume,
      libraryVersion: hb?.libraryVersion ?? null,
      store: hb?.store ?? null,
      playback: hb?.playback ?? null,
      clock: hb?.clock ?? null,
      kind: (cached(this.db, 'SELECT kind FROM nodes WHERE id = ?').get(row.id) as { kind?: NodeInfo['kind'] } | undefined)?.kind ?? 'native',
      downloads: hb?.downloads ?? null,
    };
  }

  private notify(event: NodeEvent['event'], row: NodeRow, reason?: string): void {
    const payload: NodeEvent = { event, nodeId: row.id, uuid: row.uuid, name: row.name, reason, at: Date.now() };
    this.log.info({ event, nodeId: row.id, name: row.name, reason }, `node ${event}`);
    this.channel.publish(this.channel.topics.nodeEvents, payload);
  }

  private setOnline(row: NodeRow, now: number): void {
    const live = this.live.get(row.uuid) ?? { online: false, lastSeen: now };
    live.lastSeen = now;
    this.live.set(row.uuid, live);
    if (live.online) return;
    live.online = true;
    this.notify('online', row);
    this.emit('online', this.toInfo(row));
    this.publishList();
  }

  private setOffline(row: NodeRow, reason: 'clean' | 'lost' | 'timeout'): void {
    const live = this.live.get(row.uuid);
    if (!live?.online) return;
    live.online = false;
    live.timedOut = reason === 'timeout';
    cached(this.db, 'UPDATE nodes SET last_seen = ? WHERE id = ?').run(live.lastSeen, row.id);
    this.notify(reason === 'timeout' ? 'timeout' : 'offline', row, reason);
    this.emit('offline', this.toInfo(row), reason);
    this.publishList();
  }

  private onJoin(message: IncomingMessage): void {
    const where = this.channel.topics.parseNodeTopic(message.topic);
    if (!where) return this.channel.error(message.topic, 'unknown-topic', 'not a node topic: expected <prefix>/node/<uuid>/join');
    if (message.retained) return; // a join is an act, not a state; an old retained one means nothing
    const parsed = parsePayload(joinSchema, message.payload);
    if (!parsed.ok) return this.channel.error(message.topic, parsed.code, `join: ${parsed.message}`, null, parsed.issues);
    const join = parsed.value;
    if (join.uuid !== where.uuid) return this.channel.error(message.topic, 'invalid', `join: uuid ${join.uuid} does not match the topic's ${where.uuid}`);
    const now = Date.now();
    let row = this.rowByUuid(join.uuid);
    const first = !row;
    if (!row) {
      cached(this.db, 'INSERT INTO nodes (uuid, name, first_seen, last_seen) VALUES (?, ?, ?, ?)').run(join.uuid, join.name, now, now);
      row = this.rowByUuid(join.uuid)!;
    } else if (row.name !== join.name) {
      cached(this.db, 'UPDATE nodes SET name = ? WHERE id = ?').run(join.name, row.id);
      row = this.rowByUuid(join.uuid)!;
      this.emit('changed', this.toInfo(row));
    }
    if (first) this.notify('joined', row, `software ${join.software}, protocol ${join.protocol}`);
    this.sendWelcome(row);
    this.sendVolume(row.id);
    this.setOnline(row, now);
    if (first) this.publishList();
  }

  private onAvailability(message: IncomingMessage): void {
    const where = this.channel.topics.parseNodeTopic(message.topic);
    if (!where) return this.channel.error(message.topic, 'unknown-topic', 'not a node topic: expected <prefix>/node/<uuid>/availability');
    if (message.payload.length === 0) return; // a cleared retained message
    const parsed = parsePayload(availabilitySchema, message.payload);
    if (!parsed.ok) return this.channel.error(message.topic, parsed.code, `availability: ${parsed.message}`, null, parsed.issues);
    const row = this.rowByUuid(where.uuid);
    if (!row) return; // not joined yet; its join follows
    if (parsed.value.state === 'online') this.setOnline(row, Date.now());
    else this.setOffline(row, parsed.value.reason ?? 'lost');
  }

  /**
   * The welcome: a node's id, name, volume, group and the library version. A node answers
   * every welcome by announcing everything again (its holdings, its cached starts).
   */
  private sendWelcome(row: NodeRow): void {
    const live = this.live.get(row.uuid);
    if (live) live.timedOut = false;
    const welcome: Welcome = {
      nodeId: row.id,
      uuid: row.uuid,
      name: row.name,
      volume: row.volume,
      group: this.groups?.groupOfNode(row.id) ?? null,
      libraryVersion: this.options.libraryVersion(),
      ...(this.options.swarmToken ? { swarmToken: this.options.swarmToken } : {}),
    };
    this.channel.publish(this.channel.topics.nodeWelcome(row.uuid), welcome);
  }

  private onHeartbeat(message: IncomingMessage): void {
    const where = this.channel.topics.parseNodeTopic(message.topic);
    if (!where) return this.channel.error(message.topic, 'unknown-topic', 'not a node topic: expected <prefix>/node/<uuid>/heartbeat');
    const parsed = parsePayload(heartbeatSchema, message.payload);
    if (!parsed.ok) return this.channel.error(message.topic, parsed.code, `heartbeat: ${parsed.message}`, null, parsed.issues);
    const row = this.rowByUuid(where.uuid);
    if (!row) return;
    const live = this.live.get(row.uuid);
    if (live) live.heartbeat = parsed.value;
    else this.live.set(row.uuid, { online: false, lastSeen: Date.now(), heartbeat: parsed.value });
    this.statsDirty = true;
    // Back after its heartbeats stopped, with no new join (the connection stayed up): the
    // hub forgot what it announced when it marked it offline (holdings: every module
    // drops a node's state then), so it is welcomed again and says it all again.
    const returning = live?.timedOut === true && !live.online;
    this.setOnline(row, Date.now());
    if (returning) {
      this.log.info({ nodeId: row.id, name: row.name }, 'node heartbeats resumed; welcomed again');
      this.sendWelcome(row);
    }
  }

  /** Timers run outside any MQTT handler: a bug in one must be logged, not crash the hub. */
  private guarded(what: string, work: () => void): void {
    try {
      work();
    } catch (err) {
      this.log.error({ err }, `registry ${what} failed`);
    }
  }

  private sweep(): void {
    const deadline = Date.now() - this.options.heartbeatTimeoutMs;
    for (const [uuid, live] of this.live) {
      if (!live.online || live.lastSeen >= deadline) continue;
      const row = this.rowByUuid(uuid);
      if (row) this.setOffline(row, 'timeout');
    }
  }
}
