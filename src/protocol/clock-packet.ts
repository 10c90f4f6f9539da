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
 */
export const CLOCK_PACKET_BYTES = 44;
export const CLOCK_PACKET_VERSION = 1;
export const DEFAULT_CLOCK_PORT = 7421;
const MAGIC = 0x4646434b; // "FFCK"

export type ClockPacketKind = 'request' | 'reply';

export interface ClockPacket {
  kind: ClockPacketKind;
  seq: number;
  t1: number;
  t2: number;
  t3: number;
}

export function encodeClockPacket(p: ClockPacket): Buffer {
  const b = Buffer.alloc(CLOCK_PACKET_BYTES);
  b.writeUInt32BE(MAGIC, 0);
  b.writeUInt8(CLOCK_PACKET_VERSION, 4);
  b.writeUInt8(p.kind === 'request' ? 1 : 2, 5);
  b.writeUInt32BE(p.seq >>> 0, 8);
  b.writeDoubleBE(p.t1, 12);
  b.writeDoubleBE(p.t2, 20);
  b.writeDoubleBE(p.t3, 28);
  return b;
}

/** The packet, or undefined for anything else (wrong size, magic, version or kind). */
export function decodeClockPacket(b: Buffer): ClockPacket | undefined {
  if (b.length !== CLOCK_PACKET_BYTES || b.readUInt32BE(0) !== MAGIC || b.readUInt8(4) !== CLOCK_PACKET_VERSION) return undefined;
  const kind = b.readUInt8(5);
  if (kind !== 1 && kind !== 2) return undefined;
  const p: ClockPacket = { kind: kind === 1 ? 'request' : 'reply', seq: b.readUInt32BE(8), t1: b.readDoubleBE(12), t2: b.readDoubleBE(20), t3: b.readDoubleBE(28) };
  return Number.isFinite(p.t1) && Number.isFinite(p.t2) && Number.isFinite(p.t3) ? p : undefined;
}
