import { createHmac, timingSafeEqual, type Hmac } from 'node:crypto';

/**
 * The clock exchange's UDP datagram, the same 44 bytes both ways (a request is as large
 * as its reply, so the hub can never be used to amplify traffic):
 *
 *   0  magic "FFCK"   4  version (1)   5  kind (1 request, 2 reply)   6  reserved (0)
 *   8  seq (uint32, big-endian)
 *  12  t1: node send time, the node's clock, ms (float64, big-endian)
 *  20  t2: hub receive time, the hub's clock, ms (0 in a request)
 *  28  t3: hub send time, the hub's clock, ms (0 in a request)
 *  36  reserved (0)
 *
 * With credentials on, the authenticated form (version 2) follows the same 44 bytes
 * (version byte 2) with who sends it and a tag:
 *
 *  44  user length L (1..200)   45  user, e.g. "node:<uuid>" (L bytes)
 *  45+L  tag: the first 16 bytes of HMAC-SHA256 over bytes 0..45+L, keyed by that
 *        user's credential secret (the node's token; the hub derives it)
 *
 * The hub's reply carries the same user and a tag under the same key, so a reply is
 * still exactly as large as its request, and no one without the node's secret can make
 * a reply the node accepts (seq and t1 are covered by the tag).
 */
export const CLOCK_PACKET_BYTES = 44;
export const CLOCK_PACKET_VERSION = 1;
export const DEFAULT_CLOCK_PORT = 7421;
export const CLOCK_PACKET_VERSION_AUTH = 2;
export const CLOCK_TAG_BYTES = 16;
const MAX_USER_BYTES = 200;
const MAGIC = 0x4646434b; // "FFCK"

export type ClockPacketKind = 'request' | 'reply';

export interface ClockPacket {
  kind: ClockPacketKind;
  seq: number;
  t1: number;
  t2: number;
  t3: number;
}

/** Who signs a packet and with what: the user name and its credential secret (as in the token USER:SECRET). */
export interface ClockAuth {
  user: string;
  secret: string;
}

function tag(secret: string, body: Buffer): Buffer {
  return createHmac('sha256', secret).update(body).digest().subarray(0, CLOCK_TAG_BYTES);
}

/**
 * A keyed MAC for one packet, made before its timestamp is read: keying is most of a
 * tag's cost, so the sender reads its clock after this and leaves only the digest
 * between reading the clock and sending.
 */
export function clockMac(auth: ClockAuth): Hmac {
  return createHmac('sha256', auth.secret);
}

/** The plain packet, or with `auth` the authenticated one (version 2, user and tag appended; `mac` from clockMac, else made here). */
export function encodeClockPacket(p: ClockPacket, auth?: ClockAuth, mac?: Hmac): Buffer {
  const user = auth ? Buffer.from(auth.user) : undefined;
  if (user && (user.length === 0 || user.length > MAX_USER_BYTES)) throw new Error(`clock packet user must be 1 to ${MAX_USER_BYTES} bytes, not ${user.length}`);
  const b = Buffer.alloc(CLOCK_PACKET_BYTES + (user ? 1 + user.length + CLOCK_TAG_BYTES : 0));
  b.writeUInt32BE(MAGIC, 0);
  b.writeUInt8(user ? CLOCK_PACKET_VERSION_AUTH : CLOCK_PACKET_VERSION, 4);
  b.writeUInt8(p.kind === 'request' ? 1 : 2, 5);
  b.writeUInt32BE(p.seq >>> 0, 8);
  b.writeDoubleBE(p.t1, 12);
  b.writeDoubleBE(p.t2, 20);
  b.writeDoubleBE(p.t3, 28);
  if (user && auth) {
    b.writeUInt8(user.length, CLOCK_PACKET_BYTES);
    user.copy(b, CLOCK_PACKET_BYTES + 1);
    const end = CLOCK_PACKET_BYTES + 1 + user.length;
    (mac ? mac.update(b.subarray(0, end)).digest().subarray(0, CLOCK_TAG_BYTES) : tag(auth.secret, b.subarray(0, end))).copy(b, end);
  }
  return b;
}

/** A decoded packet; `user` is set for the authenticated form, whose tag `clockTagValid` checks. */
export interface DecodedClockPacket extends ClockPacket {
  user?: string;
  /** The bytes the tag covers, and the tag (authenticated form only). */
  signed?: { body: Buffer; tag: Buffer };
}

/** Whether an authenticated packet's tag is right for this secret (constant time). */
export function clockTagValid(p: DecodedClockPacket, secret: string): boolean {
  return p.signed !== undefined && timingSafeEqual(tag(secret, p.signed.body), p.signed.tag);
}

/**
 * The packet, or undefined for anything else (wrong size, magic, version or kind). The
 * authenticated form comes back with its user and signed bytes; its tag is not checked
 * here (the caller knows the key).
 */
export function decodeClockPacket(b: Buffer): DecodedClockPacket | undefined {
  if (b.length < CLOCK_PACKET_BYTES || b.readUInt32BE(0) !== MAGIC) return undefined;
  const version = b.readUInt8(4);
  let user: string | undefined;
  let signed: DecodedClockPacket['signed'];
  if (version === CLOCK_PACKET_VERSION) {
    if (b.length !== CLOCK_PACKET_BYTES) return undefined;
  } else if (version === CLOCK_PACKET_VERSION_AUTH) {
    const n = b.length > CLOCK_PACKET_BYTES ? b.readUInt8(CLOCK_PACKET_BYTES) : 0;
    const end = CLOCK_PACKET_BYTES + 1 + n;
    if (n === 0 || n > MAX_USER_BYTES || b.length !== end + CLOCK_TAG_BYTES) return undefined;
    user = b.toString('utf8', CLOCK_PACKET_BYTES + 1, end);
    signed = { body: b.subarray(0, end), tag: b.subarray(end) };
  } else return undefined;
  const kind = b.readUInt8(5);
  if (kind !== 1 && kind !== 2) return undefined;
  const p: DecodedClockPacket = { kind: kind === 1 ? 'request' : 'reply', seq: b.readUInt32BE(8), t1: b.readDoubleBE(12), t2: b.readDoubleBE(20), t3: b.readDoubleBE(28) };
  if (user !== undefined) Object.assign(p, { user, signed });
  return Number.isFinite(p.t1) && Number.isFinite(p.t2) && Number.isFinite(p.t3) ? p : undefined;
}
