import { z } from 'zod';
import { DEFAULT_TOPIC_PREFIX } from '../protocol/topics.js';

/**
 * The plugin's settings: the platform block of Homebridge's config.json, which the
 * Homebridge UI edits through config.schema.json. This zod schema is what the plugin
 * checks at start; test/homebridge-config.test.ts keeps the two in agreement (the same
 * configurations pass and fail under AJV and under zod). The embedded hub's own settings
 * are then checked once more by the hub's schema (src/config/schema.ts).
 */

/** The same broker address forms `firefly` accepts (src/config/schema.ts): mqtt://HOST:PORT, HOST:PORT or HOST. */
export const BROKER_ADDRESS_PATTERN = '^((mqtts?|wss?|tcp|ssl)://)?[^\\s/]+(/.*)?$';
/** MQTT topic prefix, as src/config/schema.ts allows it. */
export const TOPIC_PREFIX_PATTERN = '^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$';

export const ACCESSORY_TYPES = ['fan', 'lightbulb', 'switch'] as const;
export type AccessoryType = (typeof ACCESSORY_TYPES)[number];

const port = z.int().min(0).max(65535);
const flag = z.boolean();

export const embeddedHubSchema = z.strictObject({
  /** Music folders the embedded hub indexes and watches. */
  library: z.array(z.string().min(1)).min(1),
  mqttHost: z.string().min(1).default('0.0.0.0'),
  mqttPort: port.default(1883),
  grpcHost: z.string().min(1).default('0.0.0.0'),
  grpcPort: port.default(7420),
  clockPort: port.default(7421),
  httpHost: z.string().min(1).default('0.0.0.0'),
  httpPort: port.default(8081),
  /** The hub's name on the LAN (mDNS); default: the machine's host name. */
  hubName: z.string().min(1).max(63).optional(),
  advertise: flag.default(true),
  logLevel: z.enum(['error', 'warn', 'info', 'debug']).default('info'),
});
export type EmbeddedHubSettings = z.infer<typeof embeddedHubSchema>;

export const groupOverrideSchema = z.strictObject({
  /** The group's id or its name (ignoring case). */
  group: z.string().min(1).max(64),
  /** `none` leaves the group out of HomeKit. */
  accessoryType: z.enum([...ACCESSORY_TYPES, 'none']).optional(),
  smartSpeaker: flag.optional(),
  television: flag.optional(),
});
export type GroupOverride = z.infer<typeof groupOverrideSchema>;

/** Keys Homebridge itself puts into a platform block. */
const HOMEBRIDGE_KEYS = ['platform', '_bridge'];

const pluginConfigObject = z.looseObject({
    platform: z.string().optional(),
    name: z.string().min(1).max(64).default('Firefly'),
    mode: z.enum(['external', 'embedded']).default('external'),
    /** External mode: the broker the hub uses (its embedded one, or Mosquitto…). */
    mqttUrl: z.string().regex(new RegExp(BROKER_ADDRESS_PATTERN), 'expected mqtt://HOST:PORT, HOST:PORT or HOST').optional(),
    mqttUsername: z.string().min(1).optional(),
    mqttPassword: z.string().optional(),
    topicPrefix: z.string().min(1).max(64).regex(new RegExp(TOPIC_PREFIX_PATTERN), 'letters, digits, _ and -, levels separated by /').default(DEFAULT_TOPIC_PREFIX),
    embedded: embeddedHubSchema.optional(),
    accessoryType: z.enum(ACCESSORY_TYPES).default('fan'),
    smartSpeaker: flag.default(false),
    television: flag.default(false),
    groups: z.array(groupOverrideSchema).max(256).default([]),
});

export const pluginConfigSchema = pluginConfigObject.superRefine((c, ctx) => {
    if (c.mode === 'embedded' && !c.embedded) ctx.addIssue({ code: 'custom', path: ['embedded', 'library'], message: 'the embedded hub needs a music folder' });
  });
export type PluginConfig = z.infer<typeof pluginConfigSchema>;

export type ConfigCheck = { ok: true; config: PluginConfig; unknownKeys: string[] } | { ok: false; problems: string[] };

/** Checks a platform block; problems name the setting and what is wrong with it. */
export function checkPluginConfig(raw: unknown): ConfigCheck {
  const parsed = pluginConfigSchema.safeParse(raw ?? {});
  if (!parsed.success) {
    return { ok: false, problems: parsed.error.issues.map((i) => `setting ${i.path.map(String).join('.') || '(the platform block)'}: ${i.message}`) };
  }
  const known = new Set([...Object.keys(pluginConfigObject.shape), ...HOMEBRIDGE_KEYS]);
  const unknownKeys = Object.keys(raw as object).filter((k) => !known.has(k));
  return { ok: true, config: parsed.data, unknownKeys };
}

/** Which accessories one group gets. */
export interface GroupExposure {
  accessoryType: AccessoryType | 'none';
  smartSpeaker: boolean;
  television: boolean;
}

export function exposureOf(config: PluginConfig, group: { groupId: number; name: string }): GroupExposure {
  const o = config.groups.find((g) => g.group === String(group.groupId) || g.group.trim().toLowerCase() === group.name.trim().toLowerCase());
  return {
    accessoryType: o?.accessoryType ?? config.accessoryType,
    smartSpeaker: o?.smartSpeaker ?? config.smartSpeaker,
    television: o?.television ?? config.television,
  };
}
