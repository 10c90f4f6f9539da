import { z } from 'zod';
import type { CommandName } from './topics.js';

/**
 * The payload of every MQTT message, as zod schemas shared by hub, node, `firefly ctl`
 * and the Homebridge plugin. Payloads are UTF-8 JSON; `parsePayload` turns bytes into a
 * checked value or a reason, and never throws. docs/protocol.md shows an example of each.
 */

/** Bumped when a payload changes incompatibly; nodes send theirs when they join. */
export const PROTOCOL_VERSION = 1;

/** Larger payloads are refused before they are parsed. */
export const MAX_PAYLOAD_BYTES = 64 * 1024;

const id = z.int().min(1).max(2 ** 31 - 1);
const uuid = z.string().min(1).max(128).regex(/^[A-Za-z0-9._:-]+$/, 'only letters, digits and . _ : -');
const volume = z.int().min(0).max(100);
const name = z
  .string()
  .trim()
  .min(1, 'must not be empty')
  .max(64, 'at most 64 characters')
  .refine((s) => !/[\u0000-\u001f\u007f]/.test(s), 'must not contain control characters');
const timestamp = z.number().nonnegative();
/** One playback session: a new one on every play, resume, seek, next, previous, skip. */
const session = z.string().min(1).max(64).regex(/^[A-Za-z0-9_-]+$/);
/** A time on the hub's clock (ms, the hub process's monotonic clock). */
const hubMs = z.number();
const positionMs = z.number().nonnegative();
const entryId = id;
const contentIdHex = z.string().regex(/^[0-9a-f]{64}$/, '64 lowercase hex digits');
const latencyMs = z.number().min(-1000).max(5000);
/** What plays for a node id: a native Firefly node, or a Chromecast or Sonos speaker driven by the hub (hub/devices). */
export const PLAYER_KINDS = ['native', 'cast', 'sonos'] as const;
export type PlayerKind = (typeof PLAYER_KINDS)[number];

// ---------------------------------------------------------------------------------------
// Hub and library

export const hubStatusSchema = z.object({
  online: z.boolean(),
  /** Firefly version of the hub. */
  software: z.string().max(64).optional(),
  protocol: z.int().optional(),
  at: timestamp.optional(),
});
export type HubStatus = z.infer<typeof hubStatusSchema>;

export const libraryAnnouncementSchema = z.object({
  version: z.int().min(0),
  at: timestamp,
});
export type LibraryAnnouncement = z.infer<typeof libraryAnnouncementSchema>;

// ---------------------------------------------------------------------------------------
// Nodes

export const availabilitySchema = z.object({
  state: z.enum(['online', 'offline']),
  uuid,
  name: name.optional(),
  /** Why offline: a clean exit, or the broker's last will after the connection was lost. */
  reason: z.enum(['clean', 'lost']).optional(),
  at: timestamp.optional(),
});
export type Availability = z.infer<typeof availabilitySchema>;

export const joinSchema = z.object({
  uuid,
  name,
  software: z.string().max(64),
  protocol: z.int(),
});
export type JoinRequest = z.infer<typeof joinSchema>;

export const storeUsageSchema = z.object({
  chunks: z.int().min(0),
  bytes: z.int().min(0),
  budgetBytes: z.int().min(0),
  /** The node's disk is full: it keeps (and plays) what it holds but cannot fetch more. */
  full: z.boolean().optional(),
});
export type StoreUsage = z.infer<typeof storeUsageSchema>;

export const nodePlaybackSchema = z.object({
  state: z.enum(['idle', 'buffering', 'playing', 'paused']),
  trackId: z.string().max(128).nullable(),
  positionMs: z.number().nonnegative().nullable(),
});
export type NodePlayback = z.infer<typeof nodePlaybackSchema>;

export const clockQualitySchema = z.object({
  synced: z.boolean(),
  /** Estimated offset to the hub's clock and its uncertainty, in milliseconds. */
  offsetMs: z.number().nullable(),
  errorMs: z.number().nonnegative().nullable(),
  rttMs: z.number().nonnegative().nullable(),
  /** How much faster (+) the hub's clock runs than the node's, in ppm. */
  driftPpm: z.number().nullable().optional(),
  /** Median round trip minus the smallest, in milliseconds. */
  jitterMs: z.number().nonnegative().nullable().optional(),
  /** Exchanges in the estimator's window. */
  samples: z.int().min(0).optional(),
});
export type ClockQuality = z.infer<typeof clockQualitySchema>;

/** A node's library download: what the sync running now (or the last one) wants and has fetched. */
export const downloadProgressSchema = z.object({
  /** A sync is fetching chunks right now. */
  active: z.boolean(),
  chunksWanted: z.int().min(0),
  chunksDone: z.int().min(0),
  bytesWanted: z.number().min(0),
  bytesDone: z.number().min(0),
});
export type DownloadProgress = z.infer<typeof downloadProgressSchema>;

export const heartbeatSchema = z.object({
  seq: z.int().min(0),
  at: timestamp,
  /** Absent until the hub has welcomed the node. */
  nodeId: id.nullable(),
  libraryVersion: z.int().min(0),
  store: storeUsageSchema,
  playback: nodePlaybackSchema,
  clock: clockQualitySchema,
  volume,
  /** Optional: nodes before this field send none. */
  downloads: downloadProgressSchema.optional(),
});
export type Heartbeat = z.infer<typeof heartbeatSchema>;

export const nodeInfoSchema = z.object({
  nodeId: id,
  uuid,
  name,
  online: z.boolean(),
  lastSeen: timestamp.nullable(),
  groupId: id.nullable(),
  volume,
  libraryVersion: z.int().min(0).nullable(),
  store: storeUsageSchema.nullable(),
  playback: nodePlaybackSchema.nullable(),
  clock: clockQualitySchema.nullable(),
  /** Native node, or a Chromecast or Sonos speaker the hub plays through (absent: native). */
  kind: z.enum(PLAYER_KINDS).optional(),
  downloads: downloadProgressSchema.nullable().optional(),
});
export type NodeInfo = z.infer<typeof nodeInfoSchema>;

export const nodeListSchema = z.object({ nodes: z.array(nodeInfoSchema), at: timestamp });
export type NodeList = z.infer<typeof nodeListSchema>;

export const nodeEventSchema = z.object({
  event: z.enum(['joined', 'online', 'offline', 'timeout']),
  nodeId: id,
  uuid,
  name,
  reason: z.string().max(200).optional(),
  at: timestamp,
});
export type NodeEvent = z.infer<typeof nodeEventSchema>;

/**
 * What one content (track file) a node holds: all of it, or a bitmap over its chunk list
 * (bit i = byte i >> 3, mask 1 << (i & 7), base64). Neither: the node holds none of it.
 */
export const contentHoldingSchema = z.strictObject({
  contentId: contentIdHex,
  complete: z.literal(true).optional(),
  bitmap: z.string().max(16_384).regex(/^[A-Za-z0-9+/]*={0,2}$/, 'base64').optional(),
});
export type ContentHolding = z.infer<typeof contentHoldingSchema>;

/**
 * Node → hub on `<prefix>/node/<uuid>/holdings`: which chunks the node holds and serves
 * (peer-to-peer fetch). Sent whole after every welcome (first message `reset`, possibly
 * several pages) and as changes afterwards (debounced), each message at most 64 KiB.
 */
export const holdingsSchema = z.strictObject({
  seq: z.int().min(0),
  /** This message starts a full snapshot: forget what the node announced before. */
  reset: z.boolean(),
  /** Where the node serves chunks (HOST:PORT or [v6]:PORT); null: it does not serve. */
  serve: z.string().min(1).max(300).nullable(),
  contents: z.array(contentHoldingSchema).max(4096),
});
export type Holdings = z.infer<typeof holdingsSchema>;

// ---------------------------------------------------------------------------------------
// Playback between the hub's sync coordinator and a node's player


/** A track a node can fetch and decode on its own: the catalogue entry and its content. */
export const trackRefSchema = z.object({
  entryId,
  contentId: contentIdHex,
  /** What the bytes are (mp3, flac, wav, ogg, opus, m4a), from the catalogue. */
  format: z.string().min(1).max(16),
  /** From the file's tags; a decode that ends much earlier means a damaged file. */
  durationMs: z.number().nonnegative().nullable(),
});
export type TrackRef = z.infer<typeof trackRefSchema>;
/**
 * The tracks after `next`, in play order: a node keeps playing through them gaplessly
 * while the hub is away (a hub crash), and prefetches them. Optional: older hubs omit it.
 */
export const upcomingSchema = z.array(trackRefSchema).max(16).optional();

export const nodeCommandSchema = z.discriminatedUnion('command', [
  /** The node plays at volume × groupVolume / 10000 of full scale. */
  /**
   * Volumes; with `atHubMs`, from the frame that plays at that hub time, so every member
   * of a group changes at the same instant (the hub sends it a start margin ahead). A node
   * that is not playing, or whose output runs further ahead than that, applies it at once.
   */
  z.object({ command: z.literal('volume'), volume, groupVolume: volume, atHubMs: hubMs.optional() }),
  z.object({ command: z.literal('sync'), libraryVersion: z.int().min(0) }),
  /** Silence (node or group muted) and this node's latency offset (what software cannot see). */
  z.object({ command: z.literal('output'), muted: z.boolean(), latencyMs }),
  /** Get ready to play `track` from `positionMs` (fetch, open the decoder, pre-roll), then answer ready. */
  z.object({ command: z.literal('prepare'), session, groupId: id, track: trackRefSchema, positionMs, next: trackRefSchema.nullable(), upcoming: upcomingSchema }),
  /** The session's timeline: track position `positionMs` plays at hub time `atHubMs`. A node not ready yet joins late, in sync. */
  z.object({ command: z.literal('start'), session, atHubMs: hubMs, positionMs }),
  /** What follows the current track without a gap (null: nothing, the session ends with it). */
  z.object({ command: z.literal('next'), session, next: trackRefSchema.nullable(), upcoming: upcomingSchema }),
  /** Stop the session now (pause, stop, or a new session replacing it). */
  z.object({ command: z.literal('stop'), session }),
  /**
   * Between sessions: what a play would start (the group's current track, at its saved
   * position). A node that holds it keeps a decode of it going there and says so ('kept'),
   * so that play starts at once. `upcoming`: the tracks after it in play order, whose
   * starts a node decodes ahead when idle (so a next from there starts at once too).
   * Ignored while a session plays.
   */
  z.object({ command: z.literal('cue'), track: trackRefSchema, positionMs, upcoming: upcomingSchema }),
]);
export type NodeCommand = z.infer<typeof nodeCommandSchema>;

/** Node → hub on `<prefix>/node/<uuid>/player`. */
export const playerEventSchema = z.discriminatedUnion('event', [
  /** Enough audio of the session's track is decoded to start at once. */
  z.object({
    event: z.literal('ready'),
    session,
    /** How long after it is written a frame sounds on this node (output buffer and device, plus its latency offset; ms): the hub starts no sooner than this. */
    outputDelayMs: z.number().nonnegative().max(10_000).optional(),
  }),
  /** The node continued into the next track without a gap: its first frame plays at hub time `startHubMs`. */
  z.object({ event: z.literal('track'), session, entryId, startHubMs: hubMs }),
  /** The last track of the session ended (nothing followed). */
  z.object({ event: z.literal('ended'), session, entryId }),
  /** The node's audio fell behind the play position (its download is too slow): it went silent; the group plays on. */
  z.object({ event: z.literal('behind'), session, entryId }),
  /** …and it has a safe margin again: it plays along in sync from where the group is. */
  z.object({ event: z.literal('rejoined'), session, entryId, silentMs: z.number().nonnegative() }),
  /** The track cannot be played (missing chunks, undecodable or truncated audio). */
  z.object({ event: z.literal('error'), session, entryId, message: z.string().max(1000) }),
  /**
   * Between sessions: the decodes this node keeps going (after a stop or pause, of a track
   * it holds whole), each covering track positions fromMs..toMs already decoded. A prepare
   * of one of these at a position inside is ready at once, so the hub may send the start
   * with the prepare instead of waiting for the barrier. Any prepare ends them all.
   */
  z.object({
    event: z.literal('kept'),
    spots: z.array(z.object({ entryId, contentId: contentIdHex, fromMs: positionMs, toMs: positionMs })).max(4),
    outputDelayMs: z.number().nonnegative().max(10_000),
  }),
  /**
   * The tracks whose start this node keeps decoded (its recently played ones; replaces the
   * last list): a prepare of one of them at position 0 is ready at once, whether or not a
   * session plays, so the hub may send the start with the prepare.
   */
  z.object({
    event: z.literal('intros'),
    intros: z.array(z.object({ entryId, contentId: contentIdHex })).max(1024),
    outputDelayMs: z.number().nonnegative().max(10_000),
  }),
]);
export type PlayerEvent = z.infer<typeof playerEventSchema>;

// ---------------------------------------------------------------------------------------
// Groups

export const groupMemberSchema = z.object({
  nodeId: id,
  name,
  volume,
  online: z.boolean(),
  muted: z.boolean(),
  latencyMs,
  /** Absent for native nodes of hubs before devices existed; 'native' otherwise for nodes. */
  kind: z.enum(PLAYER_KINDS).optional(),
  /** Cast and Sonos: how late (+) the device sounds against the group's timeline, as last measured (ms); null until measured. */
  measuredOffsetMs: z.number().nullable().optional(),
  /** Cast and Sonos: the start delay the hub compensates for (ms), learnt from measurements. */
  startDelayMs: z.number().nullable().optional(),
});

export const REPEAT_MODES = ['off', 'one', 'all'] as const;

/**
 * What a group plays. While playing, the position moves with the hub's clock: track
 * position `anchor.positionMs` plays at hub time `anchor.hubMs`; `positionMs` is the
 * position when the state was published.
 */
export const groupPlaybackSchema = z.object({
  state: z.enum(['stopped', 'playing', 'paused']),
  /** The catalogue entry id (as a string) of the current track. */
  trackId: z.string().max(128).nullable(),
  positionMs: z.number().nonnegative(),
  entryId: id.nullable(),
  title: z.string().max(512).nullable(),
  durationMs: z.number().nonnegative().nullable(),
  session: session.nullable(),
  anchor: z.object({ positionMs, hubMs }).nullable(),
  shuffle: z.boolean(),
  repeat: z.enum(REPEAT_MODES),
  muted: z.boolean(),
});
export type GroupPlayback = z.infer<typeof groupPlaybackSchema>;

/** The play queue: items in the user's order; `current` is the item playing (or next to play). */
export const groupQueueSchema = z.object({
  items: z.array(z.object({ itemId: id, entryId: id })),
  /** Items in the queue; `items` holds at most the first 200. */
  length: z.int().min(0),
  current: id.nullable(),
});
export type GroupQueue = z.infer<typeof groupQueueSchema>;

export const playbackErrorSchema = z.object({ nodeId: id.nullable(), entryId: id.nullable(), message: z.string().max(1000), at: timestamp });
export type PlaybackError = z.infer<typeof playbackErrorSchema>;
export type GroupMember = z.infer<typeof groupMemberSchema>;

export const groupStateSchema = z.object({
  groupId: id,
  name,
  volume,
  members: z.array(groupMemberSchema),
  playback: groupPlaybackSchema,
  queue: groupQueueSchema,
  /** Recent playback errors reported by members (newest last, at most 10). */
  errors: z.array(playbackErrorSchema),
  /** True while at least one member is online. */
  available: z.boolean(),
  at: timestamp,
});
export type GroupState = z.infer<typeof groupStateSchema>;

export const groupListSchema = z.object({ groups: z.array(groupStateSchema), at: timestamp });
export type GroupList = z.infer<typeof groupListSchema>;

// ---------------------------------------------------------------------------------------
// Playlists

/** A saved playlist: a name and library entries in order (an entry may appear twice). */
export const playlistSchema = z.object({
  playlistId: id,
  name,
  entryIds: z.array(id).max(10_000),
  /** Total playing time of the entries whose duration is known (ms). */
  durationMs: z.number().nonnegative(),
});
export type Playlist = z.infer<typeof playlistSchema>;

/** Most entries in one page of a playlist (a page of 10-digit ids stays far below MAX_PAYLOAD_BYTES). */
export const PLAYLIST_PAGE_ENTRIES = 2000;

/**
 * A playlist as the retained list carries it: no entries, their count. (A list of whole
 * playlists of up to 10,000 entries each would pass the 64 KiB payload limit.) The
 * entries come in pages: `playlist/get`, or whole from `GET /api/playlists/<id>`. A list
 * from an older hub (entries, no count) still reads: the count is taken from the entries.
 */
export const playlistSummarySchema = z.preprocess(
  (v) => (v && typeof v === 'object' && !('entryCount' in v) && Array.isArray((v as { entryIds?: unknown }).entryIds) ? { ...v, entryCount: (v as { entryIds: unknown[] }).entryIds.length } : v),
  z.object({
    playlistId: id,
    name,
    entryCount: z.int().min(0).max(10_000),
    /** Total playing time of the entries whose duration is known (ms). */
    durationMs: z.number().nonnegative(),
  }),
);
export type PlaylistSummary = z.infer<typeof playlistSummarySchema>;

/** Retained on `<prefix>/hub/playlists`: every saved playlist, without entries. */
export const playlistListSchema = z.object({ playlists: z.array(playlistSummarySchema), at: timestamp });
export type PlaylistList = z.infer<typeof playlistListSchema>;

/**
 * Entries `offset` to `offset + entryIds.length` of a playlist with its summary: the reply
 * of `playlist/get` and of the playlist/* commands that change one (their first page).
 */
export const playlistPageSchema = z.object({
  playlistId: id,
  name,
  entryCount: z.int().min(0).max(10_000),
  durationMs: z.number().nonnegative(),
  offset: z.int().min(0),
  entryIds: z.array(id).max(PLAYLIST_PAGE_ENTRIES),
});
export type PlaylistPage = z.infer<typeof playlistPageSchema>;

export const welcomeSchema = z.object({
  nodeId: id,
  uuid,
  name,
  volume,
  group: groupStateSchema.nullable(),
  libraryVersion: z.int().min(0),
  /** With credentials on: what this node presents to its peers' chunk servers, and requires from them. */
  swarmToken: z.string().min(1).max(128).optional(),
});
export type Welcome = z.infer<typeof welcomeSchema>;

// ---------------------------------------------------------------------------------------
// Commands to the hub

/** Every command may carry a request id and a topic (under `<prefix>/reply/`) for the reply. */
const commandBase = {
  id: z.string().min(1).max(64).optional(),
  replyTo: z.string().min(1).max(256).optional(),
};

export const commandSchemas = {
  'group/create': z.strictObject({ ...commandBase, name, members: z.array(id).max(256).optional() }),
  'group/rename': z.strictObject({ ...commandBase, groupId: id, name }),
  'group/delete': z.strictObject({ ...commandBase, groupId: id }),
  'group/add': z.strictObject({ ...commandBase, groupId: id, nodeId: id }),
  'group/remove': z.strictObject({ ...commandBase, groupId: id, nodeId: id }),
  'group/volume': z.strictObject({ ...commandBase, groupId: id, volume }),
  'node/volume': z.strictObject({ ...commandBase, nodeId: id, volume }),
  /** Without entries: play the queue (resume if paused). With entries: replace the queue with them and play the first. */
  play: z
    .strictObject({ ...commandBase, groupId: id, entryId: id.optional(), entryIds: z.array(id).min(1).max(1000).optional(), playlistId: id.optional() })
    .refine((c) => c.playlistId === undefined || (c.entryId === undefined && c.entryIds === undefined), 'give a playlistId or entries, not both'),
  pause: z.strictObject({ ...commandBase, groupId: id }),
  resume: z.strictObject({ ...commandBase, groupId: id }),
  stop: z.strictObject({ ...commandBase, groupId: id }),
  seek: z.strictObject({ ...commandBase, groupId: id, seconds: z.number().nonnegative().max(24 * 3600) }),
  next: z.strictObject({ ...commandBase, groupId: id }),
  previous: z.strictObject({ ...commandBase, groupId: id }),
  /** Appends the entries (or inserts them before queue index `at`). */
  'queue/add': z.strictObject({ ...commandBase, groupId: id, entryIds: z.array(id).min(1).max(1000), at: z.int().min(0).optional() }),
  'queue/remove': z.strictObject({ ...commandBase, groupId: id, itemId: id }),
  /** Moves an item to queue index `to`. */
  'queue/move': z.strictObject({ ...commandBase, groupId: id, itemId: id, to: z.int().min(0) }),
  'queue/clear': z.strictObject({ ...commandBase, groupId: id }),
  shuffle: z.strictObject({ ...commandBase, groupId: id, on: z.boolean() }),
  repeat: z.strictObject({ ...commandBase, groupId: id, mode: z.enum(REPEAT_MODES) }),
  /** Mutes or unmutes a group or one node: exactly one of groupId and nodeId. */
  mute: z
    .strictObject({ ...commandBase, groupId: id.optional(), nodeId: id.optional(), muted: z.boolean() })
    .refine((c) => (c.groupId === undefined) !== (c.nodeId === undefined), 'give exactly one of groupId and nodeId'),
  /** A node's latency offset: how much later than the software thinks its speaker sounds (ms). */
  'node/latency': z.strictObject({ ...commandBase, nodeId: id, latencyMs }),
  'playlist/create': z.strictObject({ ...commandBase, name, entryIds: z.array(id).max(10_000).optional() }),
  'playlist/rename': z.strictObject({ ...commandBase, playlistId: id, name }),
  'playlist/delete': z.strictObject({ ...commandBase, playlistId: id }),
  /** Appends the entries (or inserts them before index `at`). */
  'playlist/add': z.strictObject({ ...commandBase, playlistId: id, entryIds: z.array(id).min(1).max(1000), at: z.int().min(0).optional() }),
  /** Removes the entry at index `index`. */
  'playlist/remove': z.strictObject({ ...commandBase, playlistId: id, index: z.int().min(0) }),
  /** A page of a playlist's entries (reply: a playlist page); `limit` defaults to PLAYLIST_PAGE_ENTRIES. */
  'playlist/get': z.strictObject({ ...commandBase, playlistId: id, offset: z.int().min(0).max(10_000).optional(), limit: z.int().min(1).max(PLAYLIST_PAGE_ENTRIES).optional() }),
} as const satisfies Record<CommandName, z.ZodType>;

export type CommandPayload<N extends CommandName> = z.infer<(typeof commandSchemas)[N]>;

/** What went wrong, as a short stable code, in replies and error events. */
export const ERROR_CODES = ['too-large', 'bad-utf8', 'bad-json', 'invalid', 'unknown-command', 'unknown-topic', 'not-found', 'conflict', 'internal'] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export const issueSchema = z.object({ path: z.string(), message: z.string() });
export type PayloadIssue = z.infer<typeof issueSchema>;

export const commandReplySchema = z.object({
  id: z.string().nullable(),
  command: z.string(),
  ok: z.boolean(),
  result: z.unknown().optional(),
  error: z.object({ code: z.enum(ERROR_CODES), message: z.string(), issues: z.array(issueSchema).optional() }).optional(),
});
export type CommandReply = z.infer<typeof commandReplySchema>;

export const errorEventSchema = z.object({
  code: z.enum(ERROR_CODES),
  message: z.string(),
  /** The topic of the refused message. */
  topic: z.string(),
  /** The request id, when the payload was readable enough to carry one. */
  id: z.string().nullable(),
  issues: z.array(issueSchema).optional(),
  at: timestamp,
});
export type ErrorEvent = z.infer<typeof errorEventSchema>;

// ---------------------------------------------------------------------------------------
// Plain command topics and Home Assistant (hub/homeassistant/)

/** The one-word commands `<prefix>/group/<group>/set` takes (bare, or as a JSON string). */
export const GROUP_ACTIONS = ['play', 'pause', 'resume', 'stop', 'next', 'previous', 'mute', 'unmute'] as const;
export type GroupAction = (typeof GROUP_ACTIONS)[number];

const searchText = z.string().trim().min(1, 'must not be empty').max(200, 'at most 200 characters');
/** A playlist or group given by id, or by name (ignoring case). */
const idOrName = z.union([id, name]);

/**
 * `<prefix>/group/<group>/set`: what Home Assistant (or anyone by hand) sends a group.
 * Several fields may come together; they apply in this order: volume, mute, shuffle,
 * repeat, then what to play (at most one of playlist, entry, entries, album, search,
 * action), then seek.
 */
export const groupSetObjectSchema = z
  .strictObject({
    action: z.enum(GROUP_ACTIONS).optional(),
    volume: volume.optional(),
    muted: z.boolean().optional(),
    shuffle: z.boolean().optional(),
    repeat: z.enum(REPEAT_MODES).optional(),
    playlist: idOrName.optional(),
    entry: entryId.optional(),
    entries: z.array(entryId).min(1).max(1000).optional(),
    album: searchText.optional(),
    search: searchText.optional(),
    seek: z.number().nonnegative().max(24 * 3600).optional(),
  })
  .refine((c) => Object.values(c).some((v) => v !== undefined), 'give at least one of action, volume, muted, shuffle, repeat, playlist, entry, entries, album, search, seek')
  .refine(
    (c) => [c.action, c.playlist, c.entry, c.entries, c.album, c.search].filter((v) => v !== undefined).length <= 1,
    'give at most one of action, playlist, entry, entries, album and search',
  );
export const groupSetSchema = z.union([z.enum(GROUP_ACTIONS), groupSetObjectSchema]);
export type GroupSet = z.infer<typeof groupSetSchema>;

/** `<prefix>/node/<node>/set`: a node's own volume, mute, and its group (null or "None": no group). */
export const nodeSetSchema = z.union([
  z.enum(['mute', 'unmute']),
  z
    .strictObject({ volume: volume.optional(), muted: z.boolean().optional(), group: idOrName.nullable().optional() })
    .refine((c) => c.volume !== undefined || c.muted !== undefined || c.group !== undefined, 'give at least one of volume, muted, group'),
]);
export type NodeSet = z.infer<typeof nodeSetSchema>;

/** Retained on `<prefix>/group/<groupId>/media`: what a group plays, for dashboards. */
export const groupMediaSchema = z.object({
  groupId: id,
  name,
  state: z.enum(['stopped', 'playing', 'paused']),
  entryId: id.nullable(),
  title: z.string().max(512).nullable(),
  artist: z.string().max(512).nullable(),
  album: z.string().max(512).nullable(),
  /** Position when published (ms); while playing it is published again every few seconds. */
  positionMs: z.number().nonnegative(),
  durationMs: z.number().nonnegative().nullable(),
  volume,
  muted: z.boolean(),
  /** The saved playlist the queue holds (same entries in the same order), else null. */
  playlist: z.string().max(64).nullable(),
  playlistId: id.nullable(),
  /** True when the cover topic holds this track's cover. */
  cover: z.boolean(),
  /** The worst clock error among online members (ms), null when none reports one. */
  syncErrorMs: z.number().nonnegative().nullable(),
  membersOnline: z.int().min(0),
  at: timestamp,
});
export type GroupMedia = z.infer<typeof groupMediaSchema>;

/** Retained on `<prefix>/node/<uuid>/state`: one node as Home Assistant shows it. */
export const nodeStateSchema = z.object({
  nodeId: id,
  uuid,
  name,
  online: z.boolean(),
  groupId: id.nullable(),
  /** The group's name, or "None". */
  group: z.string().max(64),
  volume,
  muted: z.boolean(),
  latencyMs,
  playback: z.enum(['idle', 'buffering', 'playing', 'paused']).nullable(),
  clock: clockQualitySchema.nullable(),
  at: timestamp,
});
export type NodeState = z.infer<typeof nodeStateSchema>;

// ---------------------------------------------------------------------------------------
// Parsing

export type ParseResult<T> = { ok: true; value: T } | { ok: false; code: ErrorCode; message: string; issues?: PayloadIssue[] };

const utf8 = new TextDecoder('utf-8', { fatal: true });

function describeIssues(error: z.ZodError): PayloadIssue[] {
  return error.issues.slice(0, 10).map((i) => ({ path: i.path.map(String).join('.') || '(payload)', message: i.message }));
}

/**
 * Bytes → checked value, or a reason naming what was wrong. Never throws: a hostile
 * payload (huge, invalid UTF-8, deeply nested, wrong types) is just a failed result.
 */
export function parsePayload<S extends z.ZodType>(schema: S, payload: Buffer | Uint8Array | string, maxBytes = MAX_PAYLOAD_BYTES): ParseResult<z.infer<S>> {
  try {
    const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength;
    if (size > maxBytes) return { ok: false, code: 'too-large', message: `payload is ${size} bytes; the limit is ${maxBytes}` };
    let text: string;
    if (typeof payload === 'string') text = payload;
    else {
      try {
        text = utf8.decode(payload);
      } catch {
        return { ok: false, code: 'bad-utf8', message: 'payload is not valid UTF-8' };
      }
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      return { ok: false, code: 'bad-json', message: `payload is not JSON: ${(err as Error).message.slice(0, 200)}` };
    }
    const result = schema.safeParse(json);
    if (result.success) return { ok: true, value: result.data };
    const issues = describeIssues(result.error);
    return { ok: false, code: 'invalid', message: issues.map((i) => `${i.path}: ${i.message}`).join('; ').slice(0, 1000), issues };
  } catch (err) {
    // Stack overflow on absurd nesting and the like.
    return { ok: false, code: 'invalid', message: `payload cannot be read: ${(err as Error).message.slice(0, 200)}` };
  }
}

/**
 * The `id` and `replyTo` of a command payload when it can be read at all, so that even a
 * refused command gets its reply and an error event naming its request.
 */
export function envelopeOf(payload: Buffer | string): { id: string | null; replyTo: string | null } {
  const out = { id: null as string | null, replyTo: null as string | null };
  try {
    if (payload.length > MAX_PAYLOAD_BYTES) return out;
    const json: unknown = JSON.parse(typeof payload === 'string' ? payload : utf8.decode(payload));
    if (typeof json !== 'object' || json === null || Array.isArray(json)) return out;
    const { id, replyTo } = json as Record<string, unknown>;
    if (typeof id === 'string' && id.length > 0 && id.length <= 64) out.id = id;
    if (typeof replyTo === 'string' && replyTo.length > 0 && replyTo.length <= 256) out.replyTo = replyTo;
  } catch {
    // Unreadable payloads simply have neither.
  }
  return out;
}

export function encode(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}
