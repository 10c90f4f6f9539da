import type { Logger } from '../../src/log.js';
import { cached, type Db } from '../../src/storage/sqlite.js';
import type { GroupState } from '../../src/protocol/schemas.js';
import type { ControlChannel } from '../control/channel.js';
import { CommandError, type CommandRouter } from '../control/commands.js';
import type { GroupDirectory, NodeRegistry } from '../registry/registry.js';
import type { PlaybackDirectory } from '../playback/playback.js';

export const GROUPS_SCHEMA = `
  CREATE TABLE groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    volume INTEGER NOT NULL DEFAULT 100,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE group_members (
    node_id INTEGER PRIMARY KEY REFERENCES nodes(id),
    group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    added_at INTEGER NOT NULL
  );
  CREATE INDEX group_members_group ON group_members(group_id);
`;

interface GroupRow {
  id: number;
  name: string;
  volume: number;
}

/**
 * Groups of nodes that play together: created, renamed, deleted and changed by command,
 * kept in the hub's SQLite. A node is in at most one group; adding it to another moves
 * it. Each group's state is a retained topic, published at start and on every change
 * (members coming and going included), and a deleted group's retained state is cleared.
 */
export class Groups implements GroupDirectory {
  /** Set by the playback module: what each group plays, mute and latency of members. */
  playback?: PlaybackDirectory;
  /** Set by hub/devices: what a member that is a Cast or Sonos speaker adds to the group state (kind, measured offset). */
  devices?: { memberDetails(nodeId: number): Partial<GroupState['members'][number]> | undefined };

  constructor(
    private readonly db: Db,
    private readonly channel: ControlChannel,
    private readonly commands: CommandRouter,
    private readonly registry: NodeRegistry,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    this.registry.groups = this;
    const c = this.commands;
    c.register('group/create', ({ name, members }) => {
      for (const nodeId of members ?? []) this.requireNode(nodeId);
      if (this.byName(name)) throw new CommandError('conflict', `a group named ${JSON.stringify(name)} exists already`);
      const moved = new Set<number>();
      const groupId = this.db.transaction(() => {
        const id = Number(cached(this.db, 'INSERT INTO groups (name, created_at) VALUES (?, ?)').run(name, Date.now()).lastInsertRowid);
        for (const nodeId of new Set(members ?? [])) {
          const from = this.groupIdOf(nodeId);
          if (from !== null) moved.add(from);
          this.putMember(id, nodeId);
        }
        return id;
      })();
      this.log.info({ groupId, name, members }, 'group created');
      for (const from of moved) this.publish(from);
      this.publish(groupId);
      for (const nodeId of members ?? []) this.playback?.membershipChanged(nodeId, null, groupId);
      for (const nodeId of members ?? []) this.registry.sendVolume(nodeId);
      if (members?.length) this.registry.publishList();
      return this.state(groupId);
    });
    c.register('group/rename', ({ groupId, name }) => {
      this.requireGroup(groupId);
      const other = this.byName(name);
      if (other && other.id !== groupId) throw new CommandError('conflict', `a group named ${JSON.stringify(name)} exists already (id ${other.id})`);
      cached(this.db, 'UPDATE groups SET name = ? WHERE id = ?').run(name, groupId);
      this.publish(groupId);
      return this.state(groupId);
    });
    c.register('group/delete', ({ groupId }) => {
      this.requireGroup(groupId);
      const members = this.memberIds(groupId);
      for (const nodeId of members) this.playback?.membershipChanged(nodeId, groupId, null);
      this.playback?.groupDeleted(groupId);
      cached(this.db, 'DELETE FROM groups WHERE id = ?').run(groupId);
      this.log.info({ groupId }, 'group deleted');
      this.channel.clearRetained(this.channel.topics.groupState(groupId));
      this.publishList();
      for (const nodeId of members) this.registry.sendVolume(nodeId);
      this.registry.publishList();
      return { groupId };
    });
    c.register('group/add', ({ groupId, nodeId }) => {
      this.requireGroup(groupId);
      this.requireNode(nodeId);
      const from = this.groupIdOf(nodeId);
      if (from === groupId) return this.state(groupId);
      this.putMember(groupId, nodeId);
      this.playback?.membershipChanged(nodeId, from, groupId);
      if (from !== null) this.publish(from);
      this.publish(groupId);
      this.registry.sendVolume(nodeId);
      this.registry.publishList();
      return this.state(groupId);
    });
    c.register('group/remove', ({ groupId, nodeId }) => {
      this.requireGroup(groupId);
      this.requireNode(nodeId);
      if (this.groupIdOf(nodeId) !== groupId) throw new CommandError('not-found', `node ${nodeId} is not a member of group ${groupId}`);
      this.playback?.membershipChanged(nodeId, groupId, null);
      cached(this.db, 'DELETE FROM group_members WHERE node_id = ?').run(nodeId);
      this.publish(groupId);
      this.registry.sendVolume(nodeId);
      this.registry.publishList();
      return this.state(groupId);
    });
    c.register('group/volume', ({ groupId, volume }) => {
      this.requireGroup(groupId);
      cached(this.db, 'UPDATE groups SET volume = ? WHERE id = ?').run(volume, groupId);
      this.publish(groupId);
      // One instant for every member: they change on the same frame.
      const at = this.registry.volumeInstant();
      for (const nodeId of this.memberIds(groupId)) this.registry.sendVolume(nodeId, at);
      return this.state(groupId);
    });

    this.registry.on('online', this.onNodeChange);
    this.registry.on('offline', this.onNodeChange);
    this.registry.on('changed', this.onNodeChange);

    for (const g of this.rows()) this.publishState(g.id);
    this.publishList();
  }

  async stop(): Promise<void> {
    this.registry.off('online', this.onNodeChange);
    this.registry.off('offline', this.onNodeChange);
    this.registry.off('changed', this.onNodeChange);
  }

  /** A member's availability, name or volume is part of its group's state. */
  private readonly onNodeChange = (node: { nodeId: number }) => {
    const groupId = this.groupIdOf(node.nodeId);
    if (groupId !== null) this.publish(groupId);
  };

  list(): GroupState[] {
    return this.rows().map((g) => this.toState(g));
  }

  state(groupId: number): GroupState | null {
    const row = cached(this.db, 'SELECT id, name, volume FROM groups WHERE id = ?').get(groupId) as GroupRow | undefined;
    return row ? this.toState(row) : null;
  }

  groupOfNode(nodeId: number): GroupState | null {
    const groupId = this.groupIdOf(nodeId);
    return groupId === null ? null : this.state(groupId);
  }

  private rows(): GroupRow[] {
    return cached(this.db, 'SELECT id, name, volume FROM groups ORDER BY id').all() as GroupRow[];
  }

  private byName(name: string): GroupRow | undefined {
    return cached(this.db, 'SELECT id, name, volume FROM groups WHERE name = ?').get(name) as GroupRow | undefined;
  }

  groupIdOfNode(nodeId: number): number | null {
    return this.groupIdOf(nodeId);
  }

  private groupIdOf(nodeId: number): number | null {
    const row = cached(this.db, 'SELECT group_id FROM group_members WHERE node_id = ?').get(nodeId) as { group_id: number } | undefined;
    return row?.group_id ?? null;
  }

  /** A group's member ids in order (no state built: the playback asks this on every command). */
  memberIds(groupId: number): number[] {
    return (cached(this.db, 'SELECT node_id FROM group_members WHERE group_id = ? ORDER BY added_at, node_id').all(groupId) as { node_id: number }[]).map((r) => r.node_id);
  }

  private putMember(groupId: number, nodeId: number): void {
    cached(this.db, 'INSERT INTO group_members (node_id, group_id, added_at) VALUES (?, ?, ?) ON CONFLICT(node_id) DO UPDATE SET group_id = excluded.group_id, added_at = excluded.added_at').run(nodeId, groupId, Date.now());
  }

  private requireGroup(groupId: number): void {
    if (!this.state(groupId)) throw new CommandError('not-found', `no group with id ${groupId}`);
  }

  private requireNode(nodeId: number): void {
    if (!this.registry.info(nodeId)) throw new CommandError('not-found', `no node with id ${nodeId} (nodes get an id when they first join)`);
  }

  private toState(g: GroupRow): GroupState {
    const members = this.memberIds(g.id).map((nodeId) => {
      const n = this.registry.info(nodeId);
      const output = this.playback?.memberOutput(nodeId) ?? { muted: false, latencyMs: 0 };
      return { nodeId, name: n?.name ?? `node ${nodeId}`, volume: n?.volume ?? 100, online: n?.online ?? false, ...output, kind: n?.kind, ...this.devices?.memberDetails(nodeId) };
    });
    const playback = this.playback?.groupPlayback(g.id);
    return {
      groupId: g.id,
      name: g.name,
      volume: g.volume,
      members,
      playback: playback?.playback ?? {
        state: 'stopped',
        trackId: null,
        positionMs: 0,
        entryId: null,
        title: null,
        durationMs: null,
        session: null,
        anchor: null,
        shuffle: false,
        repeat: 'off',
        muted: false,
      },
      queue: playback?.queue ?? { items: [], length: 0, current: null },
      errors: playback?.errors ?? [],
      available: members.some((m) => m.online),
      at: Date.now(),
    };
  }

  private publishState(groupId: number): void {
    const state = this.state(groupId);
    if (state) this.channel.publish(this.channel.topics.groupState(groupId), state, { retain: true });
  }

  /** One group changed: its retained state and the retained list. */
  publishGroup(groupId: number): void {
    this.publish(groupId);
  }

  private publish(groupId: number): void {
    this.publishState(groupId);
    this.publishList();
  }

  private publishList(): void {
    this.channel.publish(this.channel.topics.groups, { groups: this.list(), at: Date.now() }, { retain: true });
  }
}
