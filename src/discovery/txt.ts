import { z } from 'zod';

/**
 * How a hub describes itself over mDNS (DNS-SD): the service type, and the TXT record
 * that tells a node the hub's ports. Shared by the hub's advertiser and the node's
 * browser (and later anything else that looks for a hub, such as the Homebridge plugin).
 *
 * TXT keys (every value a short ASCII string, see docs/protocol.md):
 *   txtvers  format of this record, "1"
 *   sw       the hub's software version
 *   proto    control-plane protocol version
 *   grpc     data-plane (gRPC) port
 *   mqtt     embedded broker port, or "external" when the hub uses a broker of its own choosing
 *   clock    clock-sync UDP port (absent when the hub has none)
 *   prefix   MQTT topic prefix
 */
export const SERVICE_TYPE = 'firefly';
export const SERVICE_PROTOCOL = 'tcp';
/** The full DNS-SD type, for logs and docs. */
export const SERVICE_NAME = `_${SERVICE_TYPE}._${SERVICE_PROTOCOL}`;
export const TXT_VERSION = '1';

export interface HubAdvert {
  /** The DNS-SD instance name: the hub's name. */
  name: string;
  software: string;
  protocol?: number;
  grpcPort: number;
  /** The embedded broker's port, or 'external' (the node must be told the broker: --mqtt). */
  mqtt: number | 'external';
  clockPort?: number;
  topicPrefix?: string;
}

const portText = z
  .string()
  .regex(/^\d{1,5}$/)
  .transform(Number)
  .pipe(z.number().int().min(1).max(65535));

const txtSchema = z.object({
  txtvers: z.literal(TXT_VERSION),
  sw: z.string().min(1).max(64),
  proto: z
    .string()
    .regex(/^\d{1,6}$/)
    .transform(Number)
    .optional(),
  grpc: portText,
  mqtt: z.union([z.literal('external'), portText]),
  clock: portText.optional(),
  prefix: z.string().min(1).max(64).optional(),
});

/**
 * DNS-SD instance names are one DNS label: at most 63 bytes, and bonjour-service cannot
 * carry a dot in one. Dots become dashes; an empty name becomes "firefly".
 */
export function instanceName(name: string): string {
  let out = name.replace(/\./g, '-').trim();
  while (Buffer.byteLength(out) > 63) out = out.slice(0, -1);
  return out || 'firefly';
}

/** The TXT record for an advert (keys as above; absent fields are left out). */
export function encodeTxt(advert: Omit<HubAdvert, 'name'>): Record<string, string> {
  const txt: Record<string, string> = {
    txtvers: TXT_VERSION,
    sw: advert.software.slice(0, 64),
    grpc: String(advert.grpcPort),
    mqtt: String(advert.mqtt),
  };
  if (advert.protocol !== undefined) txt.proto = String(advert.protocol);
  if (advert.clockPort !== undefined) txt.clock = String(advert.clockPort);
  if (advert.topicPrefix !== undefined) txt.prefix = advert.topicPrefix;
  return txt;
}

/**
 * Reads a TXT record (as bonjour-service decodes it: key → string) back into an advert.
 * Anything missing or malformed gives an error naming the key, never a half advert.
 */
export function decodeTxt(name: string, txt: unknown): { ok: true; advert: HubAdvert } | { ok: false; message: string } {
  const parsed = txtSchema.safeParse(txt ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { ok: false, message: `TXT ${issue.path.join('.') || 'record'}: ${issue.message}` };
  }
  const t = parsed.data;
  const advert: HubAdvert = { name, software: t.sw, grpcPort: t.grpc, mqtt: t.mqtt };
  if (t.proto !== undefined) advert.protocol = t.proto;
  if (t.clock !== undefined) advert.clockPort = t.clock;
  if (t.prefix !== undefined) advert.topicPrefix = t.prefix;
  return { ok: true, advert };
}
