import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * The small part of PulseAudio's native protocol a player needs, spoken directly over
 * the server's Unix socket: authenticate, open a playback stream, send audio as the
 * server asks for it, flush, and ask for the latency. PipeWire's pipewire-pulse speaks
 * the same protocol. No shared memory: audio goes over the socket, which for one stereo
 * stream is a few hundred kB/s.
 *
 * Packets are a 20-byte header (length, channel, offset hi/lo, flags; big-endian) and a
 * payload; commands travel on channel 0xFFFFFFFF as a "tagstruct" (typed values), audio
 * on the stream's channel.
 */

export const Command = {
  ERROR: 0,
  REPLY: 2,
  CREATE_PLAYBACK_STREAM: 3,
  DELETE_PLAYBACK_STREAM: 4,
  AUTH: 8,
  SET_CLIENT_NAME: 9,
  GET_PLAYBACK_LATENCY: 14,
  GET_SERVER_INFO: 20,
  FLUSH_PLAYBACK_STREAM: 42,
  REQUEST: 61,
  OVERFLOW: 62,
  UNDERFLOW: 63,
  PLAYBACK_STREAM_KILLED: 64,
  STARTED: 86,
} as const;

/** What we speak: 32 is PulseAudio 10; the server answers with the lower of its and ours. */
export const PROTOCOL_VERSION = 32;
const CONTROL_CHANNEL = 0xffffffff;
export const INVALID_INDEX = 0xffffffff;
const COOKIE_BYTES = 256;

const ERRORS: Record<number, string> = {
  1: 'access denied (no matching cookie; set PULSE_COOKIE or allow anonymous access)',
  2: 'unknown command',
  3: 'invalid argument',
  4: 'entity exists',
  5: 'no such sink',
  6: 'connection refused',
  7: 'protocol error',
  8: 'timeout',
  10: 'internal error',
  11: 'connection terminated',
  12: 'entity killed',
  13: 'invalid server',
  15: 'bad state',
  17: 'incompatible protocol version',
  19: 'not supported',
};

/** Builds a tagstruct. */
export class TagWriter {
  private parts: Buffer[] = [];

  private push(b: Buffer): this {
    this.parts.push(b);
    return this;
  }

  u32(n: number): this {
    const b = Buffer.alloc(5);
    b[0] = 0x4c; // 'L'
    b.writeUInt32BE(n >>> 0, 1);
    return this.push(b);
  }

  u8(n: number): this {
    return this.push(Buffer.from([0x42, n & 0xff])); // 'B'
  }

  bool(v: boolean): this {
    return this.push(Buffer.from([v ? 0x31 : 0x30]));
  }

  string(s: string | null): this {
    if (s === null) return this.push(Buffer.from([0x4e])); // 'N'
    return this.push(Buffer.concat([Buffer.from([0x74]), Buffer.from(s, 'utf8'), Buffer.from([0])]));
  }

  arbitrary(data: Buffer): this {
    const b = Buffer.alloc(5);
    b[0] = 0x78; // 'x'
    b.writeUInt32BE(data.length, 1);
    return this.push(Buffer.concat([b, data]));
  }

  timeval(ms: number): this {
    const b = Buffer.alloc(9);
    b[0] = 0x54; // 'T'
    b.writeUInt32BE(Math.floor(ms / 1000), 1);
    b.writeUInt32BE(Math.floor((ms % 1000) * 1000), 5);
    return this.push(b);
  }

  sampleSpec(rate: number, channels: number): this {
    const b = Buffer.alloc(7);
    b[0] = 0x61; // 'a'
    b[1] = 3; // PA_SAMPLE_S16LE
    b[2] = channels;
    b.writeUInt32BE(rate, 3);
    return this.push(b);
  }

  channelMap(channels: number): this {
    // Mono; front left/right; beyond two, auxiliary positions (AUX0 = 12).
    const positions = channels === 1 ? [0] : Array.from({ length: channels }, (_, i) => (i < 2 ? i + 1 : 12 + i - 2));
    return this.push(Buffer.from([0x6d, channels, ...positions])); // 'm'
  }

  cvolume(channels: number, volume = 0x10000): this {
    const b = Buffer.alloc(2 + 4 * channels);
    b[0] = 0x76; // 'v'
    b[1] = channels;
    for (let i = 0; i < channels; i++) b.writeUInt32BE(volume, 2 + 4 * i);
    return this.push(b);
  }

  proplist(props: Record<string, string>): this {
    this.push(Buffer.from([0x50])); // 'P'
    for (const [k, v] of Object.entries(props)) {
      const value = Buffer.concat([Buffer.from(v, 'utf8'), Buffer.from([0])]);
      this.string(k).u32(value.length).arbitrary(value);
    }
    return this.string(null);
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** Reads a tagstruct, checking each tag. */
export class TagReader {
  private at = 0;

  constructor(private readonly b: Buffer) {}

  private tag(expected: number, what: string): void {
    if (this.at >= this.b.length) throw new Error(`PulseAudio reply too short (wanted ${what})`);
    const t = this.b[this.at++];
    if (t !== expected) throw new Error(`PulseAudio reply: expected ${what}, got tag 0x${t.toString(16)}`);
  }

  u32(): number {
    this.tag(0x4c, 'u32');
    const v = this.b.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }

  /** A 64-bit microsecond value ('U'). */
  usec(): number {
    this.tag(0x55, 'usec');
    const v = Number(this.b.readBigUInt64BE(this.at));
    this.at += 8;
    return v;
  }

  s64(): number {
    this.tag(0x72, 's64');
    const v = Number(this.b.readBigInt64BE(this.at));
    this.at += 8;
    return v;
  }

  bool(): boolean {
    const t = this.b[this.at++];
    if (t === 0x31) return true;
    if (t === 0x30) return false;
    throw new Error(`PulseAudio reply: expected a boolean, got tag 0x${t?.toString(16)}`);
  }

  timevalMs(): number {
    this.tag(0x54, 'timeval');
    const v = this.b.readUInt32BE(this.at) * 1000 + this.b.readUInt32BE(this.at + 4) / 1000;
    this.at += 8;
    return v;
  }

  get done(): boolean {
    return this.at >= this.b.length;
  }
}

function packet(channel: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt32BE(payload.length, 0);
  h.writeUInt32BE(channel, 4);
  // offset hi/lo 0, flags 0: write at the stream's write index (PA_SEEK_RELATIVE).
  return Buffer.concat([h, payload]);
}

/** Where the server listens, the way libpulse looks: PULSE_SERVER, then the runtime folder. */
export function pulseSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  const server = env.PULSE_SERVER;
  if (server) {
    const unix = server.split(/\s+/).find((s) => s.startsWith('unix:') || s.startsWith('/'));
    if (unix) return unix.replace(/^unix:/, '');
  }
  if (env.PULSE_RUNTIME_PATH) return join(env.PULSE_RUNTIME_PATH, 'native');
  const xdg = env.XDG_RUNTIME_DIR ?? (typeof process.getuid === 'function' ? `/run/user/${process.getuid()}` : undefined);
  return join(xdg ?? '/tmp', 'pulse', 'native');
}

/** The auth cookie, where libpulse would find it; zeros if none (the server may allow anonymous clients). */
export function pulseCookie(env: NodeJS.ProcessEnv = process.env): Buffer {
  const candidates = [env.PULSE_COOKIE, join(homedir(), '.config', 'pulse', 'cookie'), join(homedir(), '.pulse-cookie')];
  for (const file of candidates) {
    if (!file) continue;
    try {
      const c = readFileSync(file);
      if (c.length >= COOKIE_BYTES) return c.subarray(0, COOKIE_BYTES);
    } catch {
      // Try the next place.
    }
  }
  return Buffer.alloc(COOKIE_BYTES);
}

export type ServerEvent = (command: number, args: TagReader) => void;

/** One authenticated connection to the server, with request/reply matching. */
export class PulseConnection {
  private socket?: Socket;
  private nextTag = 1;
  private readonly pending = new Map<number, { resolve: (r: TagReader) => void; reject: (e: Error) => void; what: string }>();
  private inbox: Buffer = Buffer.alloc(0);
  version = 0;
  onEvent?: ServerEvent;
  onClose?: (err?: Error) => void;
  private closed = false;

  constructor(readonly path: string = pulseSocketPath()) {}

  async open(clientName: string, timeoutMs = 2000): Promise<void> {
    const socket = connect(this.path);
    this.socket = socket;
    socket.setNoDelay?.(true);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no PulseAudio server answered at ${this.path} within ${timeoutMs} ms`)), timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`no PulseAudio server at ${this.path}: ${err.message}`));
      });
    });
    socket.on('data', (d: Buffer) => this.receive(d));
    socket.on('error', (err) => this.shut(err));
    socket.on('close', () => this.shut(new Error('the PulseAudio server closed the connection')));
    const auth = await this.request(Command.AUTH, (t) => t.u32(PROTOCOL_VERSION).arbitrary(pulseCookie()), timeoutMs);
    this.version = Math.min(PROTOCOL_VERSION, auth.u32() & 0xffff);
    if (this.version < 13) throw new Error(`PulseAudio server protocol ${this.version} is too old (need 13 or newer)`);
    await this.request(Command.SET_CLIENT_NAME, (t) => t.proplist({ 'application.name': clientName, 'application.process.id': String(process.pid) }), timeoutMs);
  }

  /** Sends a command and resolves with its reply's arguments. */
  request(command: number, args: (t: TagWriter) => void = () => {}, timeoutMs = 5000): Promise<TagReader> {
    if (!this.socket || this.closed) return Promise.reject(new Error('not connected to PulseAudio'));
    const tag = this.nextTag++;
    const t = new TagWriter().u32(command).u32(tag);
    args(t);
    return new Promise<TagReader>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(tag);
        reject(new Error(`PulseAudio did not answer command ${command} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(tag, {
        resolve: (r) => (clearTimeout(timer), resolve(r)),
        reject: (e) => (clearTimeout(timer), reject(e)),
        what: String(command),
      });
      this.socket!.write(packet(CONTROL_CHANNEL, t.toBuffer()));
    });
  }

  /** Sends audio on a stream's channel; false if the socket asks us to wait (drain). */
  sendAudio(channel: number, data: Buffer): boolean {
    if (!this.socket || this.closed) return true;
    return this.socket.write(packet(channel, data));
  }

  /** Resolves when the socket has room again. */
  drained(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.socket || this.closed || !this.socket.writableNeedDrain) return resolve();
      this.socket.once('drain', resolve);
      this.socket.once('close', resolve);
    });
  }

  private receive(d: Buffer): void {
    this.inbox = this.inbox.length ? Buffer.concat([this.inbox, d]) : d;
    while (this.inbox.length >= 20) {
      const len = this.inbox.readUInt32BE(0);
      if (this.inbox.length < 20 + len) break;
      const channel = this.inbox.readUInt32BE(4);
      const payload = this.inbox.subarray(20, 20 + len);
      this.inbox = this.inbox.subarray(20 + len);
      if (channel !== CONTROL_CHANNEL) continue; // audio from the server: we record nothing
      try {
        this.dispatch(new TagReader(payload));
      } catch (err) {
        this.shut(err as Error);
        return;
      }
    }
  }

  private dispatch(r: TagReader): void {
    const command = r.u32();
    const tag = r.u32();
    if (command === Command.REPLY || command === Command.ERROR) {
      const p = this.pending.get(tag);
      if (!p) return;
      this.pending.delete(tag);
      if (command === Command.REPLY) p.resolve(r);
      else {
        const code = r.u32();
        p.reject(new Error(`PulseAudio refused command ${p.what}: ${ERRORS[code] ?? `error ${code}`}`));
      }
      return;
    }
    this.onEvent?.(command, r);
  }

  private shut(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.pending.values()) p.reject(err ?? new Error('PulseAudio connection closed'));
    this.pending.clear();
    this.socket?.destroy();
    this.onClose?.(err);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.pending.values()) p.reject(new Error('PulseAudio connection closed'));
    this.pending.clear();
    this.socket?.end();
    this.socket?.destroy();
  }
}
