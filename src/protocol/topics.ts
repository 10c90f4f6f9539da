/**
 * Every MQTT topic Firefly uses, in one place. Hub, node, `firefly ctl` and the Homebridge
 * plugin build topic names only through these functions, and docs/protocol.md describes
 * the same list. All topics live under one prefix (setting `mqtt.topicPrefix`, default
 * "firefly") so one broker can carry several installations.
 */

export const DEFAULT_TOPIC_PREFIX = 'firefly';

/** Commands to the hub, one topic per command: `<prefix>/cmd/<name>`. */
export const COMMAND_NAMES = [
  'group/create',
  'group/rename',
  'group/delete',
  'group/add',
  'group/remove',
  'group/volume',
  'node/volume',
  // Playback (hub/playback/): transport and queue of one group.
  'play',
  'pause',
  'resume',
  'stop',
  'seek',
  'next',
  'previous',
  'queue/add',
  'queue/remove',
  'queue/move',
  'queue/clear',
  'shuffle',
  'repeat',
  'mute',
  'node/latency',
  // Saved playlists (hub/playlists/): named lists of library entries.
  'playlist/create',
  'playlist/rename',
  'playlist/delete',
  'playlist/add',
  'playlist/remove',
  'playlist/get',
] as const;
export type CommandName = (typeof COMMAND_NAMES)[number];

export function isCommandName(name: string): name is CommandName {
  return (COMMAND_NAMES as readonly string[]).includes(name);
}

/** A node or group id, a topic segment, or anything else put into a topic must not carry wildcards or separators. */
export function isSafeSegment(segment: string): boolean {
  return segment.length > 0 && segment.length <= 128 && !/[/+#\u0000]/.test(segment);
}

export class Topics {
  constructor(readonly prefix: string = DEFAULT_TOPIC_PREFIX) {
    if (!isSafeSegment(prefix.replaceAll('/', '_'))) throw new Error(`topic prefix ${JSON.stringify(prefix)} must not be empty or contain + or #`);
  }

  // --- hub → everyone (retained) ---
  /** Retained: is the hub up (its last will says offline). */
  get hubStatus(): string {
    return `${this.prefix}/hub/status`;
  }
  /** Retained: every node the hub knows, online or not. */
  get nodes(): string {
    return `${this.prefix}/hub/nodes`;
  }
  /** Retained: every group with its state. */
  get groups(): string {
    return `${this.prefix}/hub/groups`;
  }
  /** Retained: every saved playlist (id, name, entry count, duration; entries through playlist/get). */
  get playlists(): string {
    return `${this.prefix}/hub/playlists`;
  }
  /** Retained: the hub's current library version; nodes sync when it moves. */
  get library(): string {
    return `${this.prefix}/hub/library`;
  }
  /** Node joined / online / offline / timed out: notifications others act on. */
  get nodeEvents(): string {
    return `${this.prefix}/hub/events/node`;
  }
  /** Something sent to the hub was refused: what, and why. */
  get errors(): string {
    return `${this.prefix}/hub/error`;
  }
  /** Retained: one group's state; an empty retained payload clears a deleted group. */
  groupState(groupId: number | string): string {
    return `${this.prefix}/group/${groupId}/state`;
  }
  get allGroupStates(): string {
    return `${this.prefix}/group/+/state`;
  }

  // --- commands to the hub and their replies ---
  command(name: CommandName): string {
    return `${this.prefix}/cmd/${name}`;
  }
  /** Subscription covering every command topic (and unknown ones, which get an error event). */
  get allCommands(): string {
    return `${this.prefix}/cmd/#`;
  }
  /** The command name a topic carries, or undefined when the topic is not under cmd/. */
  commandNameOf(topic: string): string | undefined {
    const head = `${this.prefix}/cmd/`;
    return topic.startsWith(head) ? topic.slice(head.length) : undefined;
  }
  /** Replies go to a topic under this root, named by the sender in `replyTo`. */
  get replyRoot(): string {
    return `${this.prefix}/reply`;
  }
  reply(client: string): string {
    return `${this.prefix}/reply/${client}`;
  }
  isReplyTopic(topic: string): boolean {
    const rest = topic.startsWith(`${this.replyRoot}/`) ? topic.slice(this.replyRoot.length + 1) : '';
    return rest.length > 0 && rest.split('/').every(isSafeSegment);
  }

  // --- per node, keyed by the node's stable uuid ---
  /** Retained, with a last will: is the node up. */
  nodeAvailability(uuid: string): string {
    return `${this.prefix}/node/${uuid}/availability`;
  }
  /** Node → hub, once a second: library version, store, playback, clock. */
  nodeHeartbeat(uuid: string): string {
    return `${this.prefix}/node/${uuid}/heartbeat`;
  }
  /** Node → hub on every connect: who am I. */
  nodeJoin(uuid: string): string {
    return `${this.prefix}/node/${uuid}/join`;
  }
  /** Hub → node: the node id the hub assigned and the node's group. */
  nodeWelcome(uuid: string): string {
    return `${this.prefix}/node/${uuid}/welcome`;
  }
  /** Node → hub: what the player did (ready for a session, track changed, ended, failed). */
  nodePlayer(uuid: string): string {
    return `${this.prefix}/node/${uuid}/player`;
  }
  /** Node → hub: which chunks the node holds and where it serves them (peer-to-peer fetch). */
  nodeHoldings(uuid: string): string {
    return `${this.prefix}/node/${uuid}/holdings`;
  }
  /** Hub → node: do something (volume, sync, prepare/start/stop playback). */
  nodeCommand(uuid: string): string {
    return `${this.prefix}/node/${uuid}/command`;
  }
  /** Wildcard over one per-node topic kind for the hub, e.g. `firefly/node/+/heartbeat`. */
  anyNode(kind: 'availability' | 'heartbeat' | 'join' | 'player' | 'holdings'): string {
    return `${this.prefix}/node/+/${kind}`;
  }
  // --- plain command topics and the Home Assistant bridge's state (hub/homeassistant/) ---
  /** Anyone → hub: simple commands for one group (`play`, `{"volume":30}`…); the group by id or name. */
  groupSet(group: number | string): string {
    return `${this.prefix}/group/${group}/set`;
  }
  get allGroupSets(): string {
    return `${this.prefix}/group/+/set`;
  }
  /** Retained, hub → all: what a group plays, with artist, album, position and sync quality. */
  groupMedia(groupId: number | string): string {
    return `${this.prefix}/group/${groupId}/media`;
  }
  /** Retained, hub → all: the cover art bytes of what a group plays (empty: none). */
  groupCover(groupId: number | string): string {
    return `${this.prefix}/group/${groupId}/cover`;
  }
  /** Anyone → hub: simple commands for one node (`{"volume":50}`, `{"group":"Kitchen"}`); the node by uuid, id or name. */
  nodeSet(node: string): string {
    return `${this.prefix}/node/${node}/set`;
  }
  get allNodeSets(): string {
    return `${this.prefix}/node/+/set`;
  }
  /** Retained, hub → all: one node's state as Home Assistant shows it (group, volume, mute, sync quality). */
  nodeState(uuid: string): string {
    return `${this.prefix}/node/${uuid}/state`;
  }
  /** The group or node a `…/set` topic names, or undefined when the topic is not one. */
  parseSetTopic(topic: string): { kind: 'group' | 'node'; target: string } | undefined {
    for (const kind of ['group', 'node'] as const) {
      const head = `${this.prefix}/${kind}/`;
      if (!topic.startsWith(head) || !topic.endsWith('/set')) continue;
      const target = topic.slice(head.length, -'/set'.length);
      if (isSafeSegment(target)) return { kind, target };
    }
    return undefined;
  }

  /** The uuid and kind a per-node topic carries. */
  parseNodeTopic(topic: string): { uuid: string; kind: string } | undefined {
    const head = `${this.prefix}/node/`;
    if (!topic.startsWith(head)) return undefined;
    const parts = topic.slice(head.length).split('/');
    if (parts.length !== 2 || !isSafeSegment(parts[0])) return undefined;
    return { uuid: parts[0], kind: parts[1] };
  }
}

/** Home Assistant's own topics, under its discovery prefix (setting `homeAssistant.discoveryPrefix`). */
export class HomeAssistantTopics {
  constructor(readonly discoveryPrefix: string = 'homeassistant') {}

  /** Home Assistant's birth and last will: `online` when it (re)starts. */
  get status(): string {
    return `${this.discoveryPrefix}/status`;
  }
  /** Device-based discovery: one retained config per device; an empty retained payload removes the device. */
  deviceConfig(objectId: string): string {
    return `${this.discoveryPrefix}/device/${objectId}/config`;
  }
  get allDeviceConfigs(): string {
    return `${this.discoveryPrefix}/device/+/config`;
  }
}
