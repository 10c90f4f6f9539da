import type { GroupState, NodeInfo } from '../../src/protocol/schemas.js';
import type { HomeAssistantTopics, Topics } from '../../src/protocol/topics.js';

/**
 * Home Assistant MQTT device-based discovery payloads, as plain functions of the hub's
 * state: one device for the hub, one per group and one per node (each linked to the hub
 * with `via_device`). MQTT discovery has no media player, so a group is a set of buttons,
 * a volume slider, selects, sensors and an image; docs/home-assistant.md lists them.
 *
 * Every state topic named here is one the hub publishes (its own retained group states,
 * node list and playlist list, plus the bridge's media, cover and node state topics), and
 * every command topic is a plain `…/set` topic the bridge serves.
 */

/** One entity in a device's `cmps` map; `p` is the entity's platform. */
export type Component = { p: string; unique_id?: string; [option: string]: unknown };

export interface DeviceConfig {
  dev: { ids: string[]; name: string; mf: string; mdl: string; sw: string; via_device?: string };
  o: { name: string; sw: string };
  cmps: Record<string, Component>;
  qos: number;
}

export interface DiscoveryContext {
  topics: Topics;
  ha: HomeAssistantTopics;
  software: string;
}

/** The platforms each component uses, and the options Home Assistant requires of each. */
export const REQUIRED_OPTIONS: Record<string, string[]> = {
  button: ['command_topic'],
  number: ['command_topic'],
  select: ['command_topic', 'options'],
  switch: ['command_topic'],
  sensor: ['state_topic'],
  image: ['image_topic', 'content_type'],
};

/** Object ids and unique ids allow only [a-zA-Z0-9_-]. */
function safeId(text: string): string {
  return text.replace(/[^A-Za-z0-9_-]/g, '_');
}

/** Every id of one installation starts with this (the topic prefix tells installations apart). */
export function installationTag(topics: Topics): string {
  return `firefly_${safeId(topics.prefix)}`;
}

export function hubObjectId(topics: Topics): string {
  return `${installationTag(topics)}_hub`;
}
export function groupObjectId(topics: Topics, groupId: number): string {
  return `${installationTag(topics)}_group_${groupId}`;
}
export function nodeObjectId(topics: Topics, uuid: string): string {
  return `${installationTag(topics)}_node_${safeId(uuid)}`;
}

const hubAvailability = (t: Topics) => ({ topic: t.hubStatus, value_template: "{{ 'online' if value_json.online else 'offline' }}" });

function origin(ctx: DiscoveryContext) {
  return { name: 'Firefly', sw: ctx.software };
}

/** The "no option" a select shows; Home Assistant reads the payload `None` as no current option. */
export const NONE_OPTION = 'None';

export function hubDevice(ctx: DiscoveryContext, hubName: string): DeviceConfig {
  const t = ctx.topics;
  const id = hubObjectId(t);
  const availability = [hubAvailability(t)];
  return {
    dev: { ids: [id], name: `Firefly hub ${hubName}`, mf: 'Firefly', mdl: 'Hub', sw: ctx.software },
    o: origin(ctx),
    cmps: {
      nodes_online: {
        p: 'sensor',
        name: 'Nodes online',
        unique_id: `${id}_nodes_online`,
        state_topic: t.nodes,
        value_template: "{{ value_json.nodes | selectattr('online') | list | count }}",
        state_class: 'measurement',
        icon: 'mdi:speaker-multiple',
        availability,
      },
      playlists: {
        p: 'sensor',
        name: 'Playlists',
        unique_id: `${id}_playlists`,
        state_topic: t.playlists,
        value_template: '{{ value_json.playlists | count }}',
        json_attributes_topic: t.playlists,
        json_attributes_template: "{{ {'names': value_json.playlists | map(attribute='name') | list} | tojson }}",
        icon: 'mdi:playlist-music',
        availability,
      },
    },
    qos: 1,
  };
}

/** The volume of a group or node: a 0–100 slider sending `{"volume": n}` to its …/set topic. */
function volumeSlider(id: string, set: string, state: string, common: Record<string, unknown>): Component {
  return {
    p: 'number',
    name: 'Volume',
    unique_id: `${id}_volume`,
    command_topic: set,
    command_template: '{"volume": {{ value | int }}}',
    state_topic: state,
    value_template: '{{ value_json.volume }}',
    min: 0,
    max: 100,
    step: 1,
    mode: 'slider',
    unit_of_measurement: '%',
    icon: 'mdi:volume-high',
    ...common,
  };
}

const BUTTONS = [
  ['play', 'Play', 'mdi:play'],
  ['pause', 'Pause', 'mdi:pause'],
  ['stop', 'Stop', 'mdi:stop'],
  ['next', 'Next', 'mdi:skip-next'],
  ['previous', 'Previous', 'mdi:skip-previous'],
] as const;

export function groupDevice(ctx: DiscoveryContext, group: GroupState, playlistNames: string[], coverMime: string | null): DeviceConfig {
  const t = ctx.topics;
  const id = groupObjectId(t, group.groupId);
  const set = t.groupSet(group.groupId);
  const state = t.groupState(group.groupId);
  const media = t.groupMedia(group.groupId);
  const availability = [hubAvailability(t), { topic: state, value_template: "{{ 'online' if value_json.available else 'offline' }}" }];
  const common = { availability, availability_mode: 'all' };
  const cmps: Record<string, Component> = {};
  for (const [action, name, icon] of BUTTONS) {
    cmps[action] = { p: 'button', name, unique_id: `${id}_${action}`, command_topic: set, payload_press: action, icon, ...common };
  }
  cmps.volume = volumeSlider(id, set, state, common);
  cmps.mute = {
    p: 'switch',
    name: 'Mute',
    unique_id: `${id}_mute`,
    command_topic: set,
    payload_on: 'mute',
    payload_off: 'unmute',
    state_topic: state,
    value_template: "{{ 'ON' if value_json.playback.muted else 'OFF' }}",
    icon: 'mdi:volume-off',
    ...common,
  };
  cmps.shuffle = {
    p: 'switch',
    name: 'Shuffle',
    unique_id: `${id}_shuffle`,
    command_topic: set,
    payload_on: '{"shuffle": true}',
    payload_off: '{"shuffle": false}',
    state_topic: state,
    value_template: "{{ 'ON' if value_json.playback.shuffle else 'OFF' }}",
    icon: 'mdi:shuffle-variant',
    ...common,
  };
  cmps.repeat = {
    p: 'select',
    name: 'Repeat',
    unique_id: `${id}_repeat`,
    command_topic: set,
    command_template: '{"repeat": {{ value | tojson }}}',
    options: ['off', 'one', 'all'],
    state_topic: state,
    value_template: '{{ value_json.playback.repeat }}',
    icon: 'mdi:repeat',
    ...common,
  };
  // A select needs options: without saved playlists there is no playlist select.
  if (playlistNames.length > 0) {
    cmps.playlist = {
      p: 'select',
      name: 'Playlist',
      unique_id: `${id}_playlist`,
      command_topic: set,
      command_template: '{"playlist": {{ value | tojson }}}',
      options: playlistNames,
      state_topic: media,
      value_template: `{{ value_json.playlist if value_json.playlist else '${NONE_OPTION}' }}`,
      icon: 'mdi:playlist-play',
      ...common,
    };
  }
  cmps.state = {
    p: 'sensor',
    name: 'State',
    unique_id: `${id}_state`,
    state_topic: state,
    value_template: '{{ value_json.playback.state }}',
    device_class: 'enum',
    options: ['stopped', 'playing', 'paused'],
    icon: 'mdi:music',
    ...common,
  };
  cmps.now_playing = {
    p: 'sensor',
    name: 'Now playing',
    unique_id: `${id}_now_playing`,
    state_topic: media,
    value_template: `{{ value_json.title if value_json.title else '${NONE_OPTION}' }}`,
    json_attributes_topic: media,
    json_attributes_template:
      "{{ {'artist': value_json.artist, 'album': value_json.album, 'position': (value_json.positionMs / 1000) | round(1), " +
      "'duration': ((value_json.durationMs / 1000) | round(1)) if value_json.durationMs is not none else none, " +
      "'position_updated_at': (value_json.at / 1000) | timestamp_custom('%Y-%m-%dT%H:%M:%S+00:00', false), " +
      "'entry_id': value_json.entryId, 'playlist': value_json.playlist, 'state': value_json.state, 'volume': value_json.volume} | tojson }}",
    icon: 'mdi:music-note',
    ...common,
  };
  cmps.sync_error = {
    p: 'sensor',
    name: 'Sync error',
    unique_id: `${id}_sync_error`,
    entity_category: 'diagnostic',
    state_topic: media,
    value_template: `{{ value_json.syncErrorMs | round(2) if value_json.syncErrorMs is not none else '${NONE_OPTION}' }}`,
    unit_of_measurement: 'ms',
    state_class: 'measurement',
    icon: 'mdi:timer-sync-outline',
    ...common,
  };
  cmps.cover = {
    p: 'image',
    name: 'Cover',
    unique_id: `${id}_cover`,
    image_topic: t.groupCover(group.groupId),
    content_type: coverMime ?? 'image/jpeg',
    ...common,
  };
  return {
    dev: { ids: [id], name: group.name, mf: 'Firefly', mdl: 'Group', sw: ctx.software, via_device: hubObjectId(t) },
    o: origin(ctx),
    cmps,
    qos: 1,
  };
}

export function nodeDevice(ctx: DiscoveryContext, node: NodeInfo, groupNames: string[]): DeviceConfig {
  const t = ctx.topics;
  const id = nodeObjectId(t, node.uuid);
  const set = t.nodeSet(node.uuid);
  const state = t.nodeState(node.uuid);
  const availability = [hubAvailability(t), { topic: t.nodeAvailability(node.uuid), value_template: '{{ value_json.state }}' }];
  const common = { availability, availability_mode: 'all' };
  return {
    dev: { ids: [id], name: node.name, mf: 'Firefly', mdl: 'Node', sw: ctx.software, via_device: hubObjectId(t) },
    o: origin(ctx),
    cmps: {
      volume: volumeSlider(id, set, state, common),
      mute: {
        p: 'switch',
        name: 'Mute',
        unique_id: `${id}_mute`,
        command_topic: set,
        payload_on: 'mute',
        payload_off: 'unmute',
        state_topic: state,
        value_template: "{{ 'ON' if value_json.muted else 'OFF' }}",
        icon: 'mdi:volume-off',
        ...common,
      },
      group: {
        p: 'select',
        name: 'Group',
        unique_id: `${id}_group`,
        command_topic: set,
        command_template: '{"group": {{ value | tojson }}}',
        options: [NONE_OPTION, ...groupNames.filter((n) => n !== NONE_OPTION)],
        state_topic: state,
        value_template: '{{ value_json.group }}',
        icon: 'mdi:speaker-multiple',
        ...common,
      },
      state: {
        p: 'sensor',
        name: 'State',
        unique_id: `${id}_state`,
        state_topic: state,
        value_template: `{{ value_json.playback if value_json.playback else '${NONE_OPTION}' }}`,
        device_class: 'enum',
        options: ['idle', 'buffering', 'playing', 'paused'],
        icon: 'mdi:music',
        ...common,
      },
      sync_error: {
        p: 'sensor',
        name: 'Sync error',
        unique_id: `${id}_sync_error`,
        entity_category: 'diagnostic',
        state_topic: state,
        value_template: `{{ value_json.clock.errorMs | round(3) if value_json.clock and value_json.clock.errorMs is not none else '${NONE_OPTION}' }}`,
        json_attributes_topic: state,
        json_attributes_template: '{{ (value_json.clock or {}) | tojson }}',
        unit_of_measurement: 'ms',
        state_class: 'measurement',
        icon: 'mdi:timer-sync-outline',
        ...common,
      },
    },
    qos: 1,
  };
}

/**
 * A device config to publish after `previous`: components that are gone are sent once as
 * `{ p }` alone, which is how device-based discovery removes one entity of a device.
 */
export function withRemovals(next: DeviceConfig, previous: DeviceConfig | undefined): DeviceConfig {
  if (!previous) return next;
  const cmps = { ...next.cmps };
  for (const [key, c] of Object.entries(previous.cmps)) if (!(key in cmps) && c.unique_id) cmps[key] = { p: c.p };
  return { ...next, cmps };
}
