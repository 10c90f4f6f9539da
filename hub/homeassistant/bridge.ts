import type { Logger } from '../../src/log.js';
import { monotonicMs } from '../../src/clock/local-clock.js';
import {
  encode,
  GROUP_ACTIONS,
  groupSetSchema,
  nodeSetSchema,
  parsePayload,
  type ErrorCode,
  type GroupMedia,
  type GroupSet,
  type GroupState,
  type NodeSet,
  type NodeState,
  type Playlist,
} from '../../src/protocol/schemas.js';
import { HomeAssistantTopics, type CommandName } from '../../src/protocol/topics.js';
import type { ControlChannel, IncomingMessage } from '../control/channel.js';
import { CommandError, type CommandRouter } from '../control/commands.js';
import type { Groups } from '../groups/groups.js';
import type { Catalogue } from '../library/catalogue.js';
import type { Playback } from '../playback/playback.js';
import type { Playlists } from '../playlists/playlists.js';
import type { NodeRegistry } from '../registry/registry.js';
import { albumEntries, searchEntries } from './catalogue-search.js';
import {
  groupDevice,
  groupObjectId,
  hubDevice,
  hubObjectId,
  installationTag,
  NONE_OPTION,
  nodeDevice,
  nodeObjectId,
  withRemovals,
  type DeviceConfig,
  type DiscoveryContext,
} from './discovery.js';

export interface HomeAssistantOptions {
  discoveryPrefix: string;
  /** While a group plays, its media topic (position) is published again this often; 0: only on changes. */
  positionIntervalMs: number;
  hubName: string;
  software: string;
}

/** Another hub module's refusal, or a reason of our own, as the hub's normal error event. */
class SetRefusal extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The Home Assistant bridge: MQTT device discovery for the hub, every group and every
 * node; the plain `…/set` command topics, each turned into the hub's own commands through
 * `CommandRouter.invoke` (same schemas, same handlers, same error events); and the state
 * topics the discovered entities read (group media and cover, node state).
 *
 * It learns of changes from the hub's own retained publications (group states, node list,
 * playlist list), so it needs no hooks inside the other modules; what it publishes comes
 * from their in-process state. When Home Assistant announces itself on
 * `<discoveryPrefix>/status`, everything is published again.
 */
export class HomeAssistantBridge {
  readonly ha: HomeAssistantTopics;
  private readonly ctx: DiscoveryContext;
  /** Device configs as last published, by object id (to publish only changes and remove gone entities). */
  private readonly published = new Map<string, DeviceConfig>();
  private readonly lastMedia = new Map<number, string>();
  private readonly lastCover = new Map<number, string | null>();
  private readonly lastNodeState = new Map<string, string>();
  private readonly knownGroups = new Set<number>();
  private positionTimer?: NodeJS.Timeout;
  /** Changes seen since the last flush: bursts of state messages cost one refresh. */
  private readonly pendingGroups = new Set<number>();
  private pendingAll = false;
  private flushTimer?: NodeJS.Timeout;
  /** The playlist list (with durations) read once per change, not once per refresh. */
  private playlistCache?: Playlist[];
  private unsubscribePlaylists?: () => void;
  private running = false;

  constructor(
    private readonly channel: ControlChannel,
    private readonly commands: CommandRouter,
    private readonly registry: NodeRegistry,
    private readonly groups: Groups,
    private readonly playback: Playback,
    private readonly playlists: Playlists,
    private readonly catalogue: Catalogue,
    private readonly options: HomeAssistantOptions,
    private readonly log: Logger,
  ) {
    this.ha = new HomeAssistantTopics(options.discoveryPrefix);
    this.ctx = { topics: channel.topics, ha: this.ha, software: options.software };
  }

  async start(): Promise<void> {
    this.running = true;
    const t = this.channel.topics;
    await this.channel.handle(t.allGroupSets, (m) => this.onSet(m));
    await this.channel.handle(t.allNodeSets, (m) => this.onSet(m));
    await this.channel.handle(t.allGroupStates, (m) => this.onGroupState(m));
    await this.channel.handle(t.nodes, () => this.schedule());
    await this.channel.handle(this.ha.status, (m) => this.guarded('birth message', () => this.onHomeAssistantStatus(m)));
    this.unsubscribePlaylists = this.playlists.onChange(() => {
      this.playlistCache = undefined;
      this.schedule(true);
    });
    this.publishAll(false);
    // Configs left on the broker for groups or nodes this hub no longer has (a hub started
    // with another data folder, say) are removed: the retained configs arrive on subscribe.
    await this.channel.handle(this.ha.allDeviceConfigs, (m) => this.guarded('stale discovery', () => this.onDeviceConfig(m)));
    if (this.options.positionIntervalMs > 0) {
      this.positionTimer = setInterval(() => this.guarded('position update', () => this.publishPlayingMedia()), this.options.positionIntervalMs);
      this.positionTimer.unref();
    }
    this.log.info({ discoveryPrefix: this.options.discoveryPrefix, groups: this.knownGroups.size, nodes: this.lastNodeState.size }, 'Home Assistant discovery published');
  }

  async stop(): Promise<void> {
    this.running = false;
    clearInterval(this.positionTimer);
    clearTimeout(this.flushTimer);
    this.unsubscribePlaylists?.();
  }

  // --- discovery and state -------------------------------------------------------------

  /** Everything again: discovery of every device and every state topic (forced: unchanged ones too). */
  private publishAll(force: boolean): void {
    this.publishDevice(hubObjectId(this.channel.topics), hubDevice(this.ctx, this.options.hubName), force);
    this.refreshGroups(force);
    this.refreshNodes(force);
  }

  private savedPlaylists(): Playlist[] {
    this.playlistCache ??= this.playlists.list();
    return this.playlistCache;
  }

  /** Refreshes soon (50 ms): the groups named since the last flush, or all of them; nodes always. */
  private schedule(all = false, groupId?: number): void {
    if (all) this.pendingAll = true;
    if (groupId !== undefined) this.pendingGroups.add(groupId);
    this.flushTimer ??= setTimeout(() => {
      this.flushTimer = undefined;
      this.guarded('refresh', () => this.flush());
    }, 50);
  }

  private flush(): void {
    const ids = this.pendingAll ? [...new Set([...this.knownGroups, ...this.groups.list().map((g) => g.groupId)])] : [...this.pendingGroups];
    this.pendingAll = false;
    this.pendingGroups.clear();
    for (const groupId of ids) {
      const group = this.groups.state(groupId);
      if (group) this.refreshGroup(group);
      else if (this.knownGroups.has(groupId)) this.removeGroup(groupId);
    }
    // Node selects list the groups, node states name them, group media carry members' clocks.
    this.refreshNodes();
  }

  private refreshGroups(force = false): void {
    for (const g of this.groups.list()) this.refreshGroup(g, force);
  }

  private refreshGroup(group: GroupState, force = false): void {
    this.knownGroups.add(group.groupId);
    const cover = this.coverOf(group);
    this.publishDevice(groupObjectId(this.channel.topics, group.groupId), groupDevice(this.ctx, group, this.savedPlaylists().map((p) => p.name), cover?.mime ?? null), force);
    this.publishMedia(group, cover !== undefined, force);
    const coverKey = cover ? `${cover.hash}` : null;
    if (force || this.lastCover.get(group.groupId) !== coverKey) {
      this.lastCover.set(group.groupId, coverKey);
      const topic = this.channel.topics.groupCover(group.groupId);
      if (cover) this.channel.publishBytes(topic, cover.data, { retain: true });
      else this.channel.clearRetained(topic);
    }
  }

  private removeGroup(groupId: number): void {
    const t = this.channel.topics;
    const objectId = groupObjectId(t, groupId);
    this.channel.clearRetained(this.ha.deviceConfig(objectId));
    this.published.delete(objectId);
    this.channel.clearRetained(t.groupMedia(groupId));
    this.channel.clearRetained(t.groupCover(groupId));
    this.lastMedia.delete(groupId);
    this.lastCover.delete(groupId);
    this.knownGroups.delete(groupId);
    this.log.info({ groupId }, 'Home Assistant device of a deleted group removed');
  }

  private refreshNodes(force = false): void {
    const groups = this.groups.list();
    const groupNames = groups.map((g) => g.name);
    const byId = new Map(groups.map((g) => [g.groupId, g.name]));
    for (const node of this.registry.list()) {
      this.publishDevice(nodeObjectId(this.channel.topics, node.uuid), nodeDevice(this.ctx, node, groupNames), force);
      const output = this.playback.memberOutput(node.nodeId);
      const state: NodeState = {
        nodeId: node.nodeId,
        uuid: node.uuid,
        name: node.name,
        online: node.online,
        groupId: node.groupId,
        group: node.groupId === null ? NONE_OPTION : (byId.get(node.groupId) ?? NONE_OPTION),
        volume: node.volume,
        muted: output.muted,
        latencyMs: output.latencyMs,
        playback: node.online ? (node.playback?.state ?? null) : null,
        clock: node.online ? node.clock : null,
        at: Date.now(),
      };
      const key = JSON.stringify({ ...state, at: 0 });
      if (!force && this.lastNodeState.get(node.uuid) === key) continue;
      this.lastNodeState.set(node.uuid, key);
      this.channel.publish(this.channel.topics.nodeState(node.uuid), state, { retain: true });
    }
    // Sync quality of a group is its members' clock figures, which arrive with the node list.
    for (const g of groups) this.publishMedia(g, this.lastCover.get(g.groupId) != null, false);
  }

  private publishDevice(objectId: string, config: DeviceConfig, force: boolean): void {
    const previous = this.published.get(objectId);
    if (!force && previous && JSON.stringify(previous) === JSON.stringify(config)) return;
    this.channel.publish(this.ha.deviceConfig(objectId), withRemovals(config, previous), { retain: true });
    this.published.set(objectId, config);
  }

  private coverOf(group: GroupState): { hash: string; mime: string; data: Buffer } | undefined {
    const entryId = group.playback.entryId;
    if (entryId === null) return undefined;
    const meta = this.catalogue.entry(entryId)?.metadata;
    if (!meta?.coverHash || !/^[0-9a-f]+$/.test(meta.coverHash)) return undefined;
    const cover = this.catalogue.cover(Buffer.from(meta.coverHash, 'hex'));
    return cover ? { hash: meta.coverHash, mime: cover.mime, data: cover.data } : undefined;
  }

  private media(group: GroupState, hasCover: boolean): GroupMedia {
    const p = group.playback;
    const meta = p.entryId !== null ? this.catalogue.entry(p.entryId)?.metadata : undefined;
    let positionMs = p.positionMs;
    if (p.state === 'playing' && p.anchor) positionMs = Math.max(0, p.anchor.positionMs + (monotonicMs() - p.anchor.hubMs));
    if (p.durationMs !== null) positionMs = Math.min(positionMs, p.durationMs);
    const queued = group.queue.items.map((i) => i.entryId);
    const playlist = this.savedPlaylists().find((pl) => pl.entryIds.length === group.queue.length && pl.entryIds.length > 0 && queued.every((e, i) => pl.entryIds[i] === e));
    const online = group.members.filter((m) => m.online);
    const errors = online.map((m) => this.registry.info(m.nodeId)?.clock?.errorMs).filter((e): e is number => typeof e === 'number');
    return {
      groupId: group.groupId,
      name: group.name,
      state: p.state,
      entryId: p.entryId,
      title: p.title,
      artist: meta?.artist ?? null,
      album: meta?.album ?? null,
      positionMs: Math.round(positionMs),
      durationMs: p.durationMs,
      volume: group.volume,
      muted: p.muted,
      playlist: playlist?.name ?? null,
      playlistId: playlist?.playlistId ?? null,
      cover: hasCover,
      syncErrorMs: errors.length > 0 ? Math.max(...errors) : null,
      membersOnline: online.length,
      at: Date.now(),
    };
  }

  private publishMedia(group: GroupState, hasCover: boolean, force: boolean): void {
    const media = this.media(group, hasCover);
    const key = JSON.stringify({ ...media, at: 0, positionMs: media.state === 'playing' ? 0 : media.positionMs });
    if (!force && this.lastMedia.get(group.groupId) === key) return;
    this.lastMedia.set(group.groupId, key);
    this.channel.publish(this.channel.topics.groupMedia(group.groupId), media, { retain: true });
  }

  private publishPlayingMedia(): void {
    for (const g of this.groups.list()) if (g.playback.state === 'playing') this.publishMedia(g, this.lastCover.get(g.groupId) != null, true);
  }

  private onGroupState(message: IncomingMessage): void {
    const prefix = `${this.channel.topics.prefix}/group/`;
    const groupId = Number(message.topic.slice(prefix.length, -'/state'.length));
    if (Number.isInteger(groupId) && groupId >= 1) this.schedule(false, groupId);
  }

  private onHomeAssistantStatus(message: IncomingMessage): void {
    if (message.payload.toString().trim() !== 'online') return;
    this.log.info('Home Assistant came online: publishing discovery and state again');
    this.publishAll(true);
    // The hub's own retained states too, for a broker that lost them.
    for (const g of this.groups.list()) this.groups.publishGroup(g.groupId);
    this.registry.publishList();
  }

  private onDeviceConfig(message: IncomingMessage): void {
    if (message.payload.length === 0) return;
    const objectId = message.topic.slice(`${this.ha.discoveryPrefix}/device/`.length, -'/config'.length);
    if (!objectId.startsWith(`${installationTag(this.channel.topics)}_`) || this.published.has(objectId)) return;
    // Ours only when it hangs off this hub's device (another installation's tag may start like ours).
    const hubId = hubObjectId(this.channel.topics);
    let dev: { ids?: unknown; via_device?: unknown } | undefined;
    try {
      dev = (JSON.parse(message.payload.toString('utf8')) as { dev?: { ids?: unknown; via_device?: unknown } }).dev;
    } catch {
      return;
    }
    const ours = dev?.via_device === hubId || (Array.isArray(dev?.ids) && dev.ids.includes(hubId));
    if (!ours) return;
    this.log.info({ objectId }, 'removing a Home Assistant device this hub no longer has');
    this.channel.clearRetained(message.topic);
  }

  private guarded(what: string, work: () => void): void {
    if (!this.running) return;
    try {
      work();
    } catch (err) {
      this.log.error({ err }, `Home Assistant bridge: ${what} failed`);
    }
  }

  // --- plain command topics ------------------------------------------------------------

  private onSet(message: IncomingMessage): void {
    const { topic } = message;
    const where = this.channel.topics.parseSetTopic(topic);
    if (!where) return this.channel.error(topic, 'unknown-topic', 'expected <prefix>/group/<group>/set or <prefix>/node/<node>/set');
    if (message.retained) return this.channel.error(topic, 'invalid', 'retained commands are ignored (publish without the retain flag)');
    try {
      const word = bareWord(message.payload);
      const words: readonly string[] = where.kind === 'group' ? GROUP_ACTIONS : ['mute', 'unmute'];
      if (word !== undefined && !words.includes(word)) {
        return this.channel.error(topic, 'invalid', `${where.kind} set: unknown command ${JSON.stringify(word.slice(0, 32))}; expected one of ${words.join(', ')}, or a JSON object such as {"volume": 30}`);
      }
      if (where.kind === 'group') {
        const parsed = parsePayload(groupSetSchema, wordAsJson(message.payload));
        if (!parsed.ok) return this.channel.error(topic, parsed.code, `group set: ${parsed.message}`, null, parsed.issues);
        this.applyGroupSet(this.resolveGroup(where.target), parsed.value);
      } else {
        const parsed = parsePayload(nodeSetSchema, wordAsJson(message.payload));
        if (!parsed.ok) return this.channel.error(topic, parsed.code, `node set: ${parsed.message}`, null, parsed.issues);
        this.applyNodeSet(this.resolveNode(where.target), parsed.value);
      }
    } catch (err) {
      if (err instanceof CommandError || err instanceof SetRefusal) return this.channel.error(topic, err.code, `${where.kind} set: ${err.message}`);
      this.log.error({ err, topic }, 'plain command failed');
      this.channel.error(topic, 'internal', `the hub failed to handle this command: ${(err as Error).message}`);
    }
  }

  private invoke(name: CommandName, payload: Record<string, unknown>): void {
    this.commands.invoke(name, payload);
  }

  private applyGroupSet(groupId: number, set: GroupSet): void {
    const c = typeof set === 'string' ? { action: set } : set;
    if (c.volume !== undefined) this.invoke('group/volume', { groupId, volume: c.volume });
    if (c.muted !== undefined) this.invoke('mute', { groupId, muted: c.muted });
    if (c.shuffle !== undefined) this.invoke('shuffle', { groupId, on: c.shuffle });
    if (c.repeat !== undefined) this.invoke('repeat', { groupId, mode: c.repeat });
    if (c.playlist !== undefined) this.invoke('play', { groupId, playlistId: this.resolvePlaylist(c.playlist) });
    if (c.entry !== undefined) this.invoke('play', { groupId, entryId: c.entry });
    if (c.entries !== undefined) this.invoke('play', { groupId, entryIds: c.entries });
    if (c.album !== undefined) {
      const found = albumEntries(this.catalogue, c.album);
      if (found.length === 0) throw new SetRefusal('not-found', `no album named ${JSON.stringify(c.album)} in the library`);
      this.invoke('play', { groupId, entryIds: found });
    }
    if (c.search !== undefined) {
      const found = searchEntries(this.catalogue, c.search);
      if (found.length === 0) throw new SetRefusal('not-found', `nothing in the library matches ${JSON.stringify(c.search)} (title, artist or album)`);
      this.invoke('play', { groupId, entryIds: found });
    }
    switch (c.action) {
      case undefined:
        break;
      case 'mute':
      case 'unmute':
        this.invoke('mute', { groupId, muted: c.action === 'mute' });
        break;
      default:
        this.invoke(c.action, { groupId });
    }
    if (c.seek !== undefined) this.invoke('seek', { groupId, seconds: c.seek });
  }

  private applyNodeSet(nodeId: number, set: NodeSet): void {
    const c = typeof set === 'string' ? { muted: set === 'mute' } : set;
    if (c.volume !== undefined) this.invoke('node/volume', { nodeId, volume: c.volume });
    if (c.muted !== undefined) this.invoke('mute', { nodeId, muted: c.muted });
    if (c.group !== undefined) {
      const current = this.groups.groupIdOfNode(nodeId);
      const noGroup = c.group === null || (c.group === NONE_OPTION && !this.groups.list().some((g) => g.name === NONE_OPTION));
      if (noGroup) {
        if (current !== null) this.invoke('group/remove', { groupId: current, nodeId });
      } else {
        this.invoke('group/add', { groupId: this.resolveGroup(String(c.group)), nodeId });
      }
    }
    // Mute of one node is not part of the node list: publish its state soon.
    this.schedule();
  }

  private resolveGroup(given: string): number {
    const list = this.groups.list();
    const found = (/^\d+$/.test(given) ? list.find((g) => g.groupId === Number(given)) : undefined) ?? list.find((g) => g.name.toLowerCase() === given.toLowerCase());
    if (!found) throw new SetRefusal('not-found', `no group ${JSON.stringify(given)} (by id or name); known: ${list.map((g) => `${g.groupId} ${g.name}`).join(', ') || 'none'}`);
    return found.groupId;
  }

  private resolveNode(given: string): number {
    const list = this.registry.list();
    const found =
      list.find((n) => n.uuid === given) ??
      (/^\d+$/.test(given) ? list.find((n) => n.nodeId === Number(given)) : undefined) ??
      list.find((n) => n.name.toLowerCase() === given.toLowerCase());
    if (!found) throw new SetRefusal('not-found', `no node ${JSON.stringify(given)} (by uuid, id or name)`);
    return found.nodeId;
  }

  private resolvePlaylist(given: number | string): number {
    const list = this.playlists.list();
    const found =
      (typeof given === 'number' ? list.find((p) => p.playlistId === given) : undefined) ??
      (typeof given === 'string' ? list.find((p) => p.name.toLowerCase() === given.toLowerCase()) : undefined) ??
      (typeof given === 'string' && /^\d+$/.test(given) ? list.find((p) => p.playlistId === Number(given)) : undefined);
    if (!found) throw new SetRefusal('not-found', `no playlist ${JSON.stringify(given)} (by id or name); known: ${list.map((p) => `${p.playlistId} ${p.name}`).join(', ') || 'none'}`);
    return found.playlistId;
  }
}

/** The one word a payload holds, bare (`play`) or as a JSON string (`"play"`), else undefined. */
function bareWord(payload: Buffer): string | undefined {
  const text = payload.length <= 66 ? payload.toString('utf8').trim() : '';
  const m = /^"?([A-Za-z_]+)"?$/.exec(text);
  return m && (m[0].startsWith('"') === m[0].endsWith('"')) ? m[1] : undefined;
}

/** A bare word (`play`) is taken as the JSON string `"play"`; anything else is parsed as it is. */
function wordAsJson(payload: Buffer): Buffer {
  const word = bareWord(payload);
  return word !== undefined ? encode(word) : payload;
}
