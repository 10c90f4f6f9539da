import { createSocket, type Socket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { ClockEstimator, type ClockEstimate, type ClockEstimatorOptions } from '../clock/estimator.js';
import type { HubClock } from '../clock/hub-clock.js';
import { monotonicMs, type LocalClock } from '../clock/local-clock.js';
import type { Logger } from '../log.js';
import { clockMac, clockTagValid, decodeClockPacket, encodeClockPacket, type ClockAuth } from '../protocol/clock-packet.js';

export interface ClockSyncOptions {
  /** The hub's host (name or address; IPv6 may be in brackets) and clock port. */
  host: string;
  port: number;
  /** Exchanges per second during the first burstSeconds (and after a reset), then steadyRate. */
  burstRate?: number;
  burstSeconds?: number;
  steadyRate?: number;
  /** Seconds between "clock estimate" debug log lines (0: none). */
  logEverySeconds?: number;
  estimator?: Partial<ClockEstimatorOptions>;
  /**
   * The node's credential (security.token). Given, requests carry it (tagged, not the
   * secret itself) and only replies tagged with it are used: a spoofed reply cannot move
   * the estimate. The hub must have credentials on (it then requires them).
   */
  auth?: ClockAuth;
}

/**
 * Exchanges per second at first (and after a reset), for how long, and then. The burst
 * is what makes a node's first seconds good: with 0–20 ms of jitter on the path only a
 * few exchanges in a thousand get through nearly undelayed, and the drift can be read
 * only once enough of them span a few seconds. At 40 a second the nodes of the sync
 * benchmark were up to 300 µs apart 3–10 s after they started; at 200 a second, within
 * 86–121 µs from 2.5–6 s on (recorded exchanges replayed through the estimator,
 * docs/audio.md). 200 a second is 9 KB/s each way, for 15 s.
 */
export const CLOCK_RATES = { burstRate: 200, burstSeconds: 15, steadyRate: 20 };

/**
 * The node's side of the clock exchange: sends four-timestamp requests to the hub over
 * UDP, quickly at first and then steadily for as long as the node runs (the estimate
 * keeps improving and follows drift while playing), and feeds the replies to a
 * ClockEstimator. `hubClock` is the mapping the player reads.
 */
export class ClockSync {
  readonly estimator: ClockEstimator;
  private socket?: Socket;
  private timer?: NodeJS.Timeout;
  private logTimer?: NodeJS.Timeout;
  private address?: string;
  private seq = 0;
  /** Requests in flight: seq → t1; a reply must echo both. */
  private pending = new Map<number, number>();
  private startedAt = 0;
  private resets = 0;
  private wasSynced = false;
  /** Replies dropped because they were not authenticated with this node's credential. */
  private unauthenticated = 0;

  constructor(
    readonly clock: LocalClock,
    private readonly options: ClockSyncOptions,
    private readonly log: Logger,
  ) {
    this.estimator = new ClockEstimator(options.estimator);
  }

  get hubClock(): HubClock {
    return this.estimator;
  }

  quality(): ClockEstimate {
    return this.estimator.quality(this.clock.now());
  }

  async start(): Promise<void> {
    const host = this.options.host.replace(/^\[(.*)\]$/, '$1');
    const socket = createSocket({ type: host.includes(':') ? 'udp6' : 'udp4' });
    this.socket = socket;
    socket.on('message', (msg) => this.onReply(msg));
    socket.on('error', (err) => this.log.warn({ err: err.message }, 'clock exchange socket error'));
    await new Promise<void>((resolve) => socket.bind(0, () => resolve()));
    this.startedAt = this.clock.now();
    const tick = () => {
      void this.send(host);
      this.timer = setTimeout(tick, 1000 / this.rate());
    };
    tick();
    const every = this.options.logEverySeconds ?? 5;
    if (every > 0) this.logTimer = setInterval(() => this.logEstimate('clock estimate', 'debug'), every * 1000);
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    clearInterval(this.logTimer);
    this.timer = undefined;
    const socket = this.socket;
    this.socket = undefined;
    if (socket) await new Promise<void>((r) => socket.close(() => r()));
  }

  private rate(): number {
    const burstMs = (this.options.burstSeconds ?? CLOCK_RATES.burstSeconds) * 1000;
    return this.clock.now() - this.startedAt < burstMs ? (this.options.burstRate ?? CLOCK_RATES.burstRate) : (this.options.steadyRate ?? CLOCK_RATES.steadyRate);
  }

  private async send(host: string): Promise<void> {
    const socket = this.socket;
    if (!socket) return;
    if (!this.address) {
      try {
        this.address = (await lookup(host, { family: socket.address().family === 'IPv6' ? 6 : 4 })).address;
      } catch (err) {
        this.log.warn({ err: (err as Error).message, host }, 'cannot resolve the hub for the clock exchange; will retry');
        return;
      }
    }
    const seq = this.seq++ >>> 0;
    // Keyed before t1 is read: only the digest sits between t1 and the send.
    const mac = this.options.auth ? clockMac(this.options.auth) : undefined;
    const t1 = this.clock.now();
    this.pending.set(seq, t1);
    // Replies two burst-rate seconds' worth of requests behind (2 s in the burst, 20 s after) are not coming, or too slow to be any use.
    this.pending.delete((seq - 2 * (this.options.burstRate ?? CLOCK_RATES.burstRate)) >>> 0);
    socket.send(encodeClockPacket({ kind: 'request', seq, t1, t2: 0, t3: 0 }, this.options.auth, mac), this.options.port, this.address);
  }

  private onReply(msg: Buffer): void {
    const t4 = this.clock.now();
    const reply = decodeClockPacket(msg);
    if (!reply || reply.kind !== 'reply' || this.pending.get(reply.seq) !== reply.t1) return;
    const auth = this.options.auth;
    if (auth && (reply.user !== auth.user || !clockTagValid(reply, auth.secret))) {
      // Counted, not used; said once and then every 100th, so a flood cannot flood the log.
      if (this.unauthenticated++ % 100 === 0) {
        this.log.warn(
          { dropped: this.unauthenticated, tagged: reply.user !== undefined },
          reply.user === undefined ? "clock reply without authentication ignored: the hub's credentials are off (remove security.token from this node) or someone spoofs replies" : 'clock reply with a bad tag ignored (spoofed, or the hub has other credentials)',
        );
      }
      return;
    }
    this.pending.delete(reply.seq);
    this.log.trace({ t1: reply.t1, t2: reply.t2, t3: reply.t3, t4, machineMs: monotonicMs() }, 'clock sample');
    const resetsBefore = this.estimator.stats().resets;
    this.estimator.add({ t1: reply.t1, t2: reply.t2, t3: reply.t3, t4 });
    if (this.estimator.stats().resets !== resetsBefore) {
      this.resets++;
      this.startedAt = t4;
      this.wasSynced = false;
      this.log.warn({ resets: this.resets }, "the hub's clock changed; clock estimate started over");
    }
    if (this.estimator.synced && !this.wasSynced) {
      this.wasSynced = true;
      this.logEstimate('clock synced', 'info');
    }
  }

  /** The estimate with the local time it was taken at, so a test can compare with the truth. */
  private logEstimate(msg: string, level: 'info' | 'debug'): void {
    const localMs = this.clock.now();
    // The machine's clock read with it: on one machine, tests and benchmarks compare nodes' estimates on it.
    const machineMs = monotonicMs();
    const q = this.estimator.quality(localMs);
    this.log[level]({ ...q, localMs, machineMs, hubMs: q.offsetMs === null ? null : this.estimator.toHub(localMs), ...this.estimator.stats() }, msg);
  }
}
