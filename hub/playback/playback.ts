import type { Logger } from '../../src/log.js';
import { monotonicMs } from '../../src/clock/local-clock.js';
import { cached, type Db } from '../../src/storage/sqlite.js';
import { parsePayload, playerEventSchema, type GroupPlayback, type GroupQueue, type NodeCommand, type PlaybackError, type PlayerEvent } from '../../src/protocol/schemas.js';
import type { Catalogue } from '../library/catalogue.js';
import type { ControlChannel, IncomingMessage } from '../control/channel.js';
import { CommandError, type CommandRouter } from '../control/commands.js';
import type { Groups } from '../groups/groups.js';
import type { NodeRegistry } from '../registry/registry.js';
import { PlayQueue, SESSION_SCHEMA } from './play-queue.js';
import { DEFAULT_COORDINATOR, PlaybackRefusal, SyncCoordinator, type CoordinatorOptions, type MemberStarts, type TrackInfo } from './sync-coordinator.js';

/** What the Groups module shows of playback in each group state. */
export interface PlaybackDirectory {
  groupPlayback(groupId: number): { playback: GroupPlayback; queue: GroupQueue; errors: PlaybackError[] };
  memberOutput(nodeId: number): { muted: boolean; latencyMs: number };
  /** A node moved between groups (from/to null: ungrouped). */
  membershipChanged(nodeId: number, from: number | null, to: number | null): void;
  groupDeleted(groupId: number): void;
}

/**
 * Playback in the hub: one SyncCoordinator per group, the transport and queue commands,
 * the nodes' player events, mute and per-node latency offsets. Time is the hub's clock
 * (hub/clock/hub-time.ts), continued across restarts.
 */
/** Saved playlists, as playback needs them (set by hub/playlists when it starts). */
export interface PlaylistDirectory {
  /** The playlist's entry ids in order, or undefined when there is no such playlist. */
  entriesOf(playlistId: number): number[] | undefined;
}

export class Playback implements PlaybackDirectory {
  /** Resolves `play {playlistId}`; absent until a playlist module registers. */
  playlists?: PlaylistDirectory;
  private readonly coordinators = new Map<number, SyncCoordinator>();
  /**
   * Each node's cached track starts (its last 'intros' report), group or none: the one
   * place the hub keeps them; every group's coordinator reads them here (ctx.starts).
   */
  private readonly starts = new Map<number, MemberStarts>();

  constructor(
    private readonly db: Db,
    private readonly channel: ControlChannel,
    private readonly commands: CommandRouter,
    private readonly registry: NodeRegistry,
    private readonly groups: Groups,
    private readonly catalogue: Catalogue,
    private readonly log: Logger,
    private readonly options: CoordinatorOptions = DEFAULT_COORDINATOR,
    /** The hub's clock (hub/clock/hub-time.ts), which runs on across a restart. */
    private readonly now: () => number = monotonicMs,
    /** Does the node (uuid) hold the whole content (hex id)? From its announced holdings (hub/swarm/holdings.ts). */
    private readonly holdsWhole?: (uuid: string, contentId: string) => boolean,
  ) {
    db.exec(SESSION_SCHEMA);
  }

  async start(): Promise<void> {
    this.groups.playback = this;
    const c = this.commands;
    const group = (groupId: number) => this.coordinator(groupId);
    const result = (groupId: number) => this.groups.state(groupId);
    const guard = (work: () => void) => {
      try {
        work();
      } catch (err) {
        if (err instanceof PlaybackRefusal) throw new CommandError('invalid', err.message);
        throw err;
      }
    };
    c.register('play', ({ groupId, entryId, entryIds, playlistId }) => {
      const ids = [...(entryId !== undefined ? [entryId] : []), ...(entryIds ?? [])];
      if (playlistId !== undefined) {
        const listed = this.playlists?.entriesOf(playlistId);
        if (!listed) throw new CommandError('not-found', `no playlist ${playlistId}`);
        if (listed.length === 0) throw new CommandError('invalid', `playlist ${playlistId} is empty`);
        ids.push(...listed.slice(0, 1000));
      }
      guard(() => group(groupId).play(ids.length > 0 ? ids : undefined));
      return result(groupId);
    });
    c.register('pause', ({ groupId }) => (group(groupId).pause(), result(groupId)));
    c.register('resume', ({ groupId }) => (guard(() => group(groupId).resume()), result(groupId)));
    c.register('stop', ({ groupId }) => (group(groupId).stop(), result(groupId)));
    c.register('seek', ({ groupId, seconds }) => (guard(() => group(groupId).seek(seconds)), result(groupId)));
    c.register('next', ({ groupId }) => (group(groupId).next(), result(groupId)));
    c.register('previous', ({ groupId }) => (group(groupId).previous(), result(groupId)));
    c.register('queue/add', ({ groupId, entryIds, at }) => {
      const g = group(groupId);
      const bad = entryIds.filter((id) => !this.track(id));
      if (bad.length > 0) throw new CommandError('not-found', `not playable tracks in the library: entry ${bad.slice(0, 10).join(', ')}`);
      g.queue.add(entryIds, at);
      if (!g.queue.current()) g.queue.setCurrent(g.queue.first());
      g.queueChanged();
      return result(groupId);
    });
    c.register('queue/remove', ({ groupId, itemId }) => {
      const g = group(groupId);
      if (!g.queue.has(itemId)) throw new CommandError('not-found', `group ${groupId}'s queue has no item ${itemId}`);
      const current = g.queue.current();
      const after = current?.itemId === itemId ? g.queue.after(current, true) : current;
      g.queue.remove(itemId);
      g.queue.setCurrent(after, current?.itemId === itemId ? 0 : g.queue.savedPositionMs);
      g.queueChanged();
      return result(groupId);
    });
    c.register('queue/move', ({ groupId, itemId, to }) => {
      const g = group(groupId);
      if (!g.queue.has(itemId)) throw new CommandError('not-found', `group ${groupId}'s queue has no item ${itemId}`);
      g.queue.move(itemId, to);
      g.queueChanged();
      return result(groupId);
    });
    c.register('queue/clear', ({ groupId }) => {
      const g = group(groupId);
      g.stop();
      g.queue.clear();
      this.publish(groupId);
      return result(groupId);
    });
    c.register('shuffle', ({ groupId, on }) => {
      const g = group(groupId);
      g.queue.setShuffle(on);
      g.queueChanged();
      return result(groupId);
    });
    c.register('repeat', ({ groupId, mode }) => {
      const g = group(groupId);
      g.queue.setRepeat(mode);
      g.queueChanged();
      return result(groupId);
    });
    c.register('mute', ({ groupId, nodeId, muted }) => {
      if (groupId !== undefined) {
        const g = group(groupId);
        g.queue.setMuted(muted);
        for (const nodeId of this.groups.memberIds(groupId)) this.sendOutput(nodeId);
        this.publish(groupId);
        return result(groupId);
      }
      this.requireNode(nodeId!);
      cached(this.db, 'INSERT INTO node_output (node_id, muted) VALUES (?, ?) ON CONFLICT(node_id) DO UPDATE SET muted = excluded.muted').run(nodeId, muted ? 1 : 0);
      return this.nodeChanged(nodeId!);
    });
    c.register('node/latency', ({ nodeId, latencyMs }) => {
      this.requireNode(nodeId);
      cached(this.db, 'INSERT INTO node_output (node_id, latency_ms) VALUES (?, ?) ON CONFLICT(node_id) DO UPDATE SET latency_ms = excluded.latency_ms').run(nodeId, latencyMs);
      return this.nodeChanged(nodeId);
    });

    await this.channel.handle(this.channel.topics.anyNode('player'), (m) => this.onPlayerMessage(m));
    this.registry.on('online', this.onOnline);
    this.registry.on('offline', this.onOffline);
    // Queues persisted from the last run show in the retained states at once, and playback
    // that went on while the hub was down (a crash, a restart) is adopted, not restarted.
    for (const g of this.groups.list()) {
      const coordinator = this.coordinator(g.groupId);
      coordinator.restore();
      // Members that came back before this module listened (the registry starts first).
      for (const nodeId of this.groups.memberIds(g.groupId)) if (this.registry.isOnline(nodeId)) coordinator.memberOnline(nodeId);
      this.publish(g.groupId);
    }
  }

  async stop(): Promise<void> {
    this.registry.off('online', this.onOnline);
    this.registry.off('offline', this.onOffline);
    // The members play on; the session stays saved for the next start to adopt.
    for (const g of this.coordinators.values()) g.detach();
    this.coordinators.clear();
  }

  // --- PlaybackDirectory ---------------------------------------------------------------

  groupPlayback(groupId: number): { playback: GroupPlayback; queue: GroupQueue; errors: PlaybackError[] } {
    const g = this.coordinator(groupId);
    return { playback: g.playback(), queue: g.queue.state(), errors: g.playbackErrors() };
  }

  memberOutput(nodeId: number): { muted: boolean; latencyMs: number } {
    const row = cached(this.db, 'SELECT muted, latency_ms FROM node_output WHERE node_id = ?').get(nodeId) as { muted: number; latency_ms: number } | undefined;
    return { muted: row?.muted === 1, latencyMs: row?.latency_ms ?? 0 };
  }

  membershipChanged(nodeId: number, from: number | null, to: number | null): void {
    if (from !== null && from !== to) this.coordinators.get(from)?.memberGone(nodeId, this.registry.isOnline(nodeId));
    if (to !== null && from !== to && this.registry.isOnline(nodeId)) {
      const g = this.coordinator(to);
      // Its cached starts did not change with its group: the new group reads them from this.starts.
      g.memberOnline(nodeId);
    }
  }

  groupDeleted(groupId: number): void {
    this.coordinators.get(groupId)?.close();
    this.coordinators.delete(groupId);
  }

  // --- internals -----------------------------------------------------------------------

  private coordinator(groupId: number): SyncCoordinator {
    let g = this.coordinators.get(groupId);
    if (g) return g;
    // Not through groups.state(): building a group's state asks for its playback.
    if (!cached(this.db, 'SELECT 1 FROM groups WHERE id = ?').get(groupId)) throw new CommandError('not-found', `no group with id ${groupId}`);
    const log = this.log.child({ groupId });
    g = new SyncCoordinator(
      new PlayQueue(this.db, groupId),
      {
        now: this.now,
        track: (entryId) => this.track(entryId),
        onlineMembers: () => this.groups.memberIds(groupId).filter((nodeId) => this.registry.isOnline(nodeId)),
        send: (nodeId, command) => this.send(nodeId, command),
        sendOutput: (nodeId) => this.sendOutput(nodeId),
        holds: (nodeId, contentId) => {
          const uuid = this.registry.uuidOf(nodeId);
          return uuid !== undefined && this.holdsWhole?.(uuid, contentId) === true;
        },
        starts: (nodeId) => this.starts.get(nodeId),
        changed: () => this.publish(groupId),
      },
      this.options,
      log,
    );
    this.coordinators.set(groupId, g);
    return g;
  }

  private track(entryId: number): TrackInfo | undefined {
    const e = this.catalogue.entry(entryId);
    if (!e || e.removed || e.status !== 'ok' || !e.contentId || !e.format) return undefined;
    const seconds = e.metadata.durationSeconds;
    return {
      entryId,
      contentId: e.contentId.toString('hex'),
      format: e.format,
      durationMs: typeof seconds === 'number' && Number.isFinite(seconds) ? seconds * 1000 : null,
      title: e.metadata.title ?? e.path,
    };
  }

  private send(nodeId: number, command: NodeCommand): void {
    const uuid = this.registry.uuidOf(nodeId);
    if (uuid) this.channel.publish(this.channel.topics.nodeCommand(uuid), command);
  }

  private sendOutput(nodeId: number): void {
    const own = this.memberOutput(nodeId);
    const groupId = this.groups.groupIdOfNode(nodeId);
    const groupMuted = groupId !== null && this.coordinators.has(groupId) ? this.coordinators.get(groupId)!.queue.muted : false;
    this.send(nodeId, { command: 'output', muted: own.muted || groupMuted, latencyMs: own.latencyMs });
  }

  private nodeChanged(nodeId: number): unknown {
    this.sendOutput(nodeId);
    const groupId = this.groups.groupIdOfNode(nodeId);
    if (groupId !== null) this.publish(groupId);
    return { nodeId, ...this.memberOutput(nodeId) };
  }

  private publish(groupId: number): void {
    this.groups.publishGroup(groupId);
  }

  private requireNode(nodeId: number): void {
    if (!this.registry.info(nodeId)) throw new CommandError('not-found', `no node with id ${nodeId}`);
  }

  private readonly onOnline = (node: { nodeId: number }) => {
    const groupId = this.groups.groupIdOfNode(node.nodeId);
    if (groupId !== null) this.coordinator(groupId).memberOnline(node.nodeId);
    else this.sendOutput(node.nodeId);
  };

  private readonly onOffline = (node: { nodeId: number }, reason?: string) => {
    // A node that went away (shut down, connection lost) may come back with other starts
    // cached: it reports them after its welcome, and until then it has none here. One
    // whose heartbeats merely stopped for a while ('timeout') is the same process with the
    // same cache when they resume, without a welcome that would make it report again.
    if (reason !== 'timeout') this.starts.delete(node.nodeId);
    const groupId = this.groups.groupIdOfNode(node.nodeId);
    if (groupId !== null) this.coordinators.get(groupId)?.memberGone(node.nodeId, false);
  };

  private onPlayerMessage(message: IncomingMessage): void {
    const where = this.channel.topics.parseNodeTopic(message.topic);
    if (!where) return;
    const parsed = parsePayload(playerEventSchema, message.payload);
    if (!parsed.ok) return this.channel.error(message.topic, parsed.code, `player event: ${parsed.message}`, null, parsed.issues);
    const nodeId = this.registry.idOf(where.uuid);
    if (nodeId === undefined) return;
    // Kept whatever the node's group (none yet, say): a group it joins later gets them.
    if (parsed.value.event === 'intros') this.starts.set(nodeId, { contentIds: new Set(parsed.value.intros.map((i) => i.contentId)), outputDelayMs: parsed.value.outputDelayMs });
    const groupId = this.groups.groupIdOfNode(nodeId);
    if (groupId === null) return;
    this.coordinator(groupId).onPlayerEvent(nodeId, parsed.value);
  }
}
