import { createSocket, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { monotonicMs } from '../../src/clock/local-clock.js';
import type { Logger } from '../../src/log.js';
import { clockMac, clockTagValid, decodeClockPacket, encodeClockPacket } from '../../src/protocol/clock-packet.js';
import { RateLimiter } from '../../src/transfer/rate-limit.js';

export interface ClockServerOptions {
  host: string;
  /** 0: any free port (tests); the port taken is logged and in `port`. */
  port: number;
  /** Requests answered per second from one address and port (default 250: a node's start-up burst of 200 a second); more are dropped. */
  perSourceRate?: number;
  /**
   * Requests answered per second from one address, whatever its ports (a flood from many
   * ports); default 2000: room for 10 nodes on one machine (benchmarks) at their start-up
   * rate of 200 a second.
   */
  perAddressRate?: number;
  /** The hub's clock (ms); default the machine's monotonic clock. */
  now?: () => number;
  /**
   * With credentials on: the secret of a user allowed to use the clock (a node, not
   * revoked), else undefined. Given, only authenticated requests (clock-packet.ts,
   * version 2) with a valid tag are answered, and replies are tagged with the same key.
   */
  secretFor?: (user: string) => string | undefined;
}

/**
 * The hub's side of the clock exchange: answers each request on UDP with the hub's
 * receive and send times on its clock (hub/clock/hub-time.ts: the timebase of every
 * schedule). Malformed packets and floods from one source are dropped silently
 * (counted, logged at debug).
 */
export class ClockServer {
  private socket?: Socket;
  private buckets = new Map<string, { tokens: number; at: number }>();
  private sweep?: NodeJS.Timeout;
  private dropped = { malformed: 0, limited: 0, unauthenticated: 0 };
  private perAddress: RateLimiter;
  private lastAuthWarning = -Infinity;
  port = 0;

  constructor(
    private readonly options: ClockServerOptions,
    private readonly log: Logger,
  ) {
    const rate = options.perAddressRate ?? 2000;
    this.perAddress = new RateLimiter(rate, rate, 10_000);
  }

  async start(): Promise<void> {
    const { host, port } = this.options;
    const socket = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' });
    this.socket = socket;
    socket.on('message', (msg, from) => this.onMessage(msg, from.address, from.port));
    await new Promise<void>((resolve, reject) => {
      socket.once('error', (err) => reject(new Error(`clock server cannot listen on UDP ${host}:${port} (setting clock.port): ${err.message}`)));
      socket.bind(port, host, () => resolve());
    });
    socket.on('error', (err) => this.log.warn({ err: err.message }, 'clock server socket error'));
    this.port = socket.address().port;
    this.sweep = setInterval(() => this.forgetIdle(), 10_000);
    this.sweep.unref();
    this.log.info({ host, port: this.port }, 'clock server listening (UDP)');
  }

  async stop(): Promise<void> {
    clearInterval(this.sweep);
    const socket = this.socket;
    this.socket = undefined;
    if (socket) await new Promise<void>((r) => socket.close(() => r()));
    if (this.dropped.malformed || this.dropped.limited || this.dropped.unauthenticated) this.log.debug(this.dropped, 'clock server dropped packets');
  }

  private onMessage(msg: Buffer, address: string, port: number): void {
    const now = this.options.now ?? monotonicMs;
    const t2 = now();
    const request = decodeClockPacket(msg);
    if (!request || request.kind !== 'request') {
      this.dropped.malformed++;
      return;
    }
    // Limits first: they are cheap, and a flood should not cost a MAC per packet.
    if (!this.perAddress.allow(address) || !this.admit(`${address}:${port}`, t2)) {
      this.dropped.limited++;
      return;
    }
    const secretFor = this.options.secretFor;
    if (!secretFor) {
      // Credentials off: plain replies (an authenticated request gets one too; its node then says the hub's auth is off).
      this.socket?.send(encodeClockPacket({ kind: 'reply', seq: request.seq, t1: request.t1, t2, t3: now() }), port, address);
      return;
    }
    const secret = request.user === undefined ? undefined : secretFor(request.user);
    if (!secret || !clockTagValid(request, secret)) {
      this.dropped.unauthenticated++;
      // Once a minute at most: a misconfigured node would otherwise log ten lines a second.
      if (t2 - this.lastAuthWarning > 60_000) {
        this.lastAuthWarning = t2;
        this.log.warn({ from: `${address}:${port}`, user: request.user ?? null, dropped: this.dropped.unauthenticated }, request.user === undefined ? 'clock request without credentials dropped (this hub requires them: nodes need security.token)' : 'clock request with a bad tag or an unknown or revoked user dropped');
      }
      return;
    }
    // Keyed before t3 is read: only the digest sits between t3 and the send.
    const auth = { user: request.user!, secret };
    const mac = clockMac(auth);
    this.socket?.send(encodeClockPacket({ kind: 'reply', seq: request.seq, t1: request.t1, t2, t3: now() }, auth, mac), port, address);
  }

  /** Packets dropped so far, by reason (tests and benchmarks). */
  get drops(): Readonly<{ malformed: number; limited: number; unauthenticated: number }> {
    return this.dropped;
  }

  /** Token bucket per source: a burst of one second's worth, refilled at perSourceRate. */
  private admit(source: string, now: number): boolean {
    const rate = this.options.perSourceRate ?? 250;
    const bucket = this.buckets.get(source) ?? { tokens: rate, at: now };
    bucket.tokens = Math.min(rate, bucket.tokens + ((now - bucket.at) / 1000) * rate);
    bucket.at = now;
    this.buckets.set(source, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  private forgetIdle(): void {
    const now = monotonicMs();
    for (const [source, bucket] of this.buckets) if (now - bucket.at > 10_000) this.buckets.delete(source);
  }
}
