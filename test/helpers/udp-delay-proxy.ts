/**
 * A user-space UDP proxy that delays every datagram, each way, by its own random time
 * in [0, maxDelayMs) drawn from a seeded generator: a LAN with jitter (and asymmetric
 * paths) on loopback, for the clock-sync test and the sync benchmark.
 */
import { createSocket, type Socket } from 'node:dgram';

/** mulberry32: small, fast, seeded. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface UdpDelayProxyOptions {
  /** Where datagrams go (the hub's clock port). */
  target: { host: string; port: number };
  maxDelayMs: number;
  seed: number;
  /** Listen address (default 127.0.0.1) and port (default any free one). */
  host?: string;
  port?: number;
}

export class UdpDelayProxy {
  /** Datagrams forwarded towards the target and back. */
  readonly counts = { up: 0, down: 0 };
  port = 0;
  private listener?: Socket;
  /** One upstream socket per client, so replies find their way back. */
  private upstream = new Map<string, Socket>();
  private timers = new Set<NodeJS.Timeout>();
  private readonly random: () => number;

  constructor(private readonly options: UdpDelayProxyOptions) {
    this.random = seededRandom(options.seed);
  }

  async start(): Promise<number> {
    const listener = createSocket('udp4');
    this.listener = listener;
    listener.on('message', (msg, from) => {
      const key = `${from.address}:${from.port}`;
      let up = this.upstream.get(key);
      if (!up) {
        up = createSocket('udp4');
        up.on('message', (reply) => this.later(() => (this.counts.down++, listener.send(reply, from.port, from.address))));
        up.on('error', () => undefined);
        this.upstream.set(key, up);
      }
      const socket = up;
      this.later(() => (this.counts.up++, socket.send(msg, this.options.target.port, this.options.target.host)));
    });
    await new Promise<void>((resolve) => listener.bind(this.options.port ?? 0, this.options.host ?? '127.0.0.1', () => resolve()));
    this.port = listener.address().port;
    return this.port;
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const sockets = [...this.upstream.values(), ...(this.listener ? [this.listener] : [])];
    this.upstream.clear();
    this.listener = undefined;
    await Promise.all(sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }

  /** Runs `send` after a fresh random delay; under a millisecond (timer granularity) at once. */
  private later(send: () => void): void {
    const delay = this.random() * this.options.maxDelayMs;
    if (delay < 1) return send();
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (this.listener) send();
    }, delay);
    this.timers.add(timer);
  }
}
