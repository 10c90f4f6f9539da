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
});
export type ClockQuality = z.infer<typeof clockQualitySchema>;

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

export const nodeCommandSchema = z.discriminatedUnion('command', [
  /** The node plays at volume × groupVolume / 10000 of full scale. */
  z.object({ command: z.literal('volume'), volume, groupVolume: volume }),
  z.object({ command: z.literal('sync'), libraryVersion: z.int().min(0) }),
]);
export type NodeCommand = z.infer<typeof nodeCommandSchema>;

// ---------------------------------------------------------------------------------------
// Groups

export const groupMemberSchema = z.object({ nodeId: id, name, volume, online: z.boolean() });
export type GroupMember = z.infer<typeof groupMemberSchema>;

export const groupStateSchema = z.object({
  groupId: id,
  name,
  volume,
  members: z.array(groupMemberSchema),
  playback: z.object({
    state: z.enum(['stopped', 'playing', 'paused']),
    trackId: z.string().max(128).nullable(),
    positionMs: z.number().nonnegative(),
  }),
  /** True while at least one member is online. */
  available: z.boolean(),
  at: timestamp,
});
export type GroupState = z.infer<typeof groupStateSchema>;

export const groupListSchema = z.object({ groups: z.array(groupStateSchema), at: timestamp });
export type GroupList = z.infer<typeof groupListSchema>;

export const welcomeSchema = z.object({
  nodeId: id,
  uuid,
  name,
  volume,
  group: groupStateSchema.nullable(),
  libraryVersion: z.int().min(0),
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
