/**
 * Watches the MQTT frames on one connection as bytes arrive and says when one declares a
 * length over the limit, so the connection is cut before the broker buffers it (an MQTT
 * length field allows 256 MB). Bytes are only read, never changed: the broker parses
 * them itself.
 */
export class MqttFrameLimit {
  /** 0: reading the type byte; 1: reading the length; 2: skipping the body. */
  private state: 0 | 1 | 2 = 0;
  private length = 0;
  private shift = 0;
  private lengthBytes = 0;
  private remaining = 0;

  constructor(readonly maxFrameBytes: number) {}

  /** Feeds the next bytes; false once a frame over the limit (or a malformed length) is seen. */
  accept(chunk: Uint8Array): boolean {
    let i = 0;
    while (i < chunk.length) {
      if (this.state === 0) {
        this.state = 1;
        this.length = 0;
        this.shift = 0;
        this.lengthBytes = 0;
        i++;
      } else if (this.state === 1) {
        const b = chunk[i++];
        this.length += (b & 0x7f) * 2 ** this.shift;
        this.shift += 7;
        this.lengthBytes++;
        if (b & 0x80) {
          if (this.lengthBytes >= 4) return false;
          continue;
        }
        if (this.length > this.maxFrameBytes) return false;
        this.remaining = this.length;
        this.state = this.remaining > 0 ? 2 : 0;
      } else {
        const take = Math.min(this.remaining, chunk.length - i);
        this.remaining -= take;
        i += take;
        if (this.remaining === 0) this.state = 0;
      }
    }
    return true;
  }
}
