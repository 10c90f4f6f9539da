import type { AudioOutput, FrameTag } from './output.js';
import { Command, INVALID_INDEX, PulseConnection, pulseSocketPath, type TagReader } from './pulse-protocol.js';

export interface PulseOutputOptions {
  sampleRate: number;
  channels: number;
  /** Sink name; default: the server's default sink. */
  device?: string;
  /** Target buffer in the server (tlength), in ms. Smaller is quicker to react; larger survives a busy CPU. */
  bufferMs?: number;
  /** The server's socket (default: where libpulse would look). */
  socketPath?: string;
  /** How often the latency is asked for while open, in ms. */
  latencyPollMs?: number;
}

/** One answer to GET_PLAYBACK_LATENCY, and when we had sent how much at the time. */
interface LatencySnapshot {
  /** Bytes the server holds for this stream (write index − read index). */
  bufferedBytes: number;
  /** The sink's own latency: from leaving the stream buffer to the speaker. */
  sinkUsec: number;
  playing: boolean;
  /** Our bytes sent before the query (the server counted them in bufferedBytes). */
  sentAtQuery: number;
  /** Local time (ms) the server most likely took the snapshot: mid-way through the round trip. */
  at: number;
}

/**
 * PulseAudio or PipeWire (pipewire-pulse) through the native protocol, no libpulse:
 * the stream's buffer and the sink's latency come straight from the server
 * (GET_PLAYBACK_LATENCY, as libpulse's pa_stream_get_latency uses), so delayFrames()
 * is what the server knows, not an estimate of a pipe. Between answers (every
 * `latencyPollMs`) it is advanced by the local clock and by what we sent since.
 */
export class PulseOutput implements AudioOutput {
  readonly kind = 'pulse' as const;
  readonly sampleRate: number;
  readonly channels: number;
  private readonly frameBytes: number;
  private readonly conn: PulseConnection;
  private channel = -1;
  /** Bytes the server has asked for and not yet received. */
  private credit = 0;
  /** Audio waiting for credit, with the callbacks of the writes it belongs to. */
  private queue: { data: Buffer; done?: () => void }[] = [];
  private queuedBytes = 0;
  private sentBytes = 0;
  private snapshot?: LatencySnapshot;
  private poll?: NodeJS.Timeout;
  private failure?: Error;
  private underrunEvents = 0;

  constructor(private readonly options: PulseOutputOptions) {
    this.sampleRate = options.sampleRate;
    this.channels = options.channels;
    this.frameBytes = 2 * options.channels;
    this.conn = new PulseConnection(options.socketPath ?? pulseSocketPath());
  }

  /** Underruns the server reported since open (the buffer ran dry). */
  underruns(): number {
    return this.underrunEvents;
  }

  async open(): Promise<void> {
    const c = this.conn;
    c.onEvent = (command, r) => this.event(command, r);
    c.onClose = (err) => this.fail(err ?? new Error('the PulseAudio server went away'));
    await c.open('Firefly');
    const bytesPerMs = (this.sampleRate * this.frameBytes) / 1000;
    const align = (n: number) => Math.max(this.frameBytes, Math.floor(n / this.frameBytes) * this.frameBytes);
    const tlength = align((this.options.bufferMs ?? 100) * bytesPerMs);
    const minreq = align(Math.min(20 * bytesPerMs, tlength / 4));
    const reply = await c.request(Command.CREATE_PLAYBACK_STREAM, (t) => {
      t.sampleSpec(this.sampleRate, this.channels).channelMap(this.channels);
      t.u32(INVALID_INDEX).string(this.options.device ?? null);
      t.u32(INVALID_INDEX) // maxlength: server default
        .bool(false) // corked
        .u32(tlength)
        .u32(INVALID_INDEX) // prebuf: default (= tlength): start once the buffer is full
        .u32(minreq)
        .u32(0) // sync id
        .cvolume(this.channels);
      // v12: no_remap, no_remix, fix_format, fix_rate, fix_channels, no_move, variable_rate
      t.bool(false).bool(false).bool(false).bool(false).bool(false).bool(false).bool(false);
      // v13: muted, adjust_latency, proplist
      t.bool(false).bool(false).proplist({ 'media.name': 'Firefly', 'media.role': 'music' });
      // v14: volume_set, early_requests; v15: muted_set, dont_inhibit_auto_suspend, fail_on_suspend
      t.bool(false).bool(false).bool(false).bool(false).bool(false);
      if (c.version >= 17) t.bool(false); // relative_volume
      if (c.version >= 18) t.bool(false); // passthrough
      if (c.version >= 21) t.u8(0); // no format list: the sample spec says it
    });
    this.channel = reply.u32();
    reply.u32(); // sink input index
    this.credit += reply.u32();
    this.poll = setInterval(() => void this.refreshLatency(), this.options.latencyPollMs ?? 50);
    this.poll.unref();
    await this.refreshLatency();
  }

  private event(command: number, r: TagReader): void {
    if (command === Command.REQUEST) {
      if (r.u32() !== this.channel) return;
      this.credit += r.u32();
      this.pump();
    } else if (command === Command.UNDERFLOW) {
      if (r.u32() === this.channel) this.underrunEvents++;
    } else if (command === Command.PLAYBACK_STREAM_KILLED) {
      if (r.u32() === this.channel) this.fail(new Error('the PulseAudio server ended the stream (sink removed?)'));
    }
  }

  private async refreshLatency(): Promise<void> {
    if (this.channel < 0 || this.failure) return;
    const sent = this.sentBytes;
    const t0 = performance.now();
    try {
      const r = await this.conn.request(Command.GET_PLAYBACK_LATENCY, (t) => t.u32(this.channel).timeval(Date.now()));
      const t1 = performance.now();
      const sinkUsec = r.usec();
      r.usec(); // source latency: not ours
      const playing = r.bool();
      r.timevalMs();
      r.timevalMs();
      const writeIndex = r.s64();
      const readIndex = r.s64();
      this.snapshot = { bufferedBytes: Math.max(0, writeIndex - readIndex), sinkUsec, playing, sentAtQuery: sent, at: (t0 + t1) / 2 };
    } catch (err) {
      if (!this.failure) this.fail(err as Error);
    }
  }

  delayFrames(): number {
    const s = this.snapshot;
    if (!s) return this.queuedBytes / this.frameBytes;
    const sentSince = this.sentBytes - s.sentAtQuery;
    let frames = (s.bufferedBytes + sentSince + this.queuedBytes) / this.frameBytes + (s.sinkUsec * this.sampleRate) / 1e6;
    if (s.playing) frames -= ((performance.now() - s.at) * this.sampleRate) / 1000;
    return Math.max(0, Math.round(frames));
  }

  write(pcm: Int16Array, _tag: FrameTag): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (pcm.length === 0) return Promise.resolve();
    // Copy: the caller may reuse its buffer once we resolve, and we may still hold part of it.
    const data = Buffer.from(new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength));
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ data, done: resolve });
      this.queuedBytes += data.length;
      this.pump();
      if (this.failure) reject(this.failure);
    });
  }

  /** Sends what the server has room for, in packets of at most 64 kB. */
  private pump(): void {
    while (this.queue.length && this.credit >= this.frameBytes && !this.failure) {
      const head = this.queue[0];
      const n = Math.min(head.data.length, this.credit - (this.credit % this.frameBytes), 65536);
      const part = head.data.subarray(0, n);
      this.conn.sendAudio(this.channel, part);
      this.credit -= n;
      this.sentBytes += n;
      this.queuedBytes -= n;
      if (n === head.data.length) {
        this.queue.shift();
        head.done?.();
      } else {
        head.data = head.data.subarray(n);
      }
    }
  }

  async flush(): Promise<void> {
    const dropped = this.queue;
    this.queue = [];
    this.queuedBytes = 0;
    for (const w of dropped) w.done?.();
    if (this.channel < 0 || this.failure) return;
    await this.conn.request(Command.FLUSH_PLAYBACK_STREAM, (t) => t.u32(this.channel));
    await this.refreshLatency();
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    clearInterval(this.poll);
    // Writes waiting for credit will never be sent: let them go rather than hang the scheduler.
    for (const w of this.queue) w.done?.();
    this.queue = [];
    this.queuedBytes = 0;
  }

  async close(): Promise<void> {
    clearInterval(this.poll);
    if (this.channel >= 0 && !this.failure) {
      await this.conn.request(Command.DELETE_PLAYBACK_STREAM, (t) => t.u32(this.channel)).catch(() => {});
    }
    this.fail(new Error('the output is closed'));
    this.conn.close();
  }
}

/** Whether a PulseAudio (or pipewire-pulse) server answers and lets us in. */
export async function pulseAvailable(socketPath = pulseSocketPath(), timeoutMs = 1000): Promise<{ ok: true } | { ok: false; reason: string }> {
  const c = new PulseConnection(socketPath);
  try {
    await c.open('Firefly (probe)', timeoutMs);
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  } finally {
    c.close();
  }
}
