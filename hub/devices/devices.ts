import { monotonicMs } from '../../src/clock/local-clock.js';
import { networkInterfaces } from 'node:os';
import type { HubConfig } from '../../src/config/schema.js';
import type { Logger } from '../../src/log.js';
import { nodeCommandSchema, parsePayload, PROTOCOL_VERSION, type GroupState, type Heartbeat, type PlayerEvent, type TrackRef } from '../../src/protocol/schemas.js';
import type { Db } from '../../src/storage/sqlite.js';
import { SOFTWARE_VERSION } from '../../src/version.js';
import type { ControlChannel, IncomingMessage } from '../control/channel.js';
import type { Groups } from '../groups/groups.js';
import type { HttpServer } from '../http/server.js';
import type { Catalogue } from '../library/catalogue.js';
import { CAST_PORT, CastAdapter } from './cast-adapter.js';
import { DeviceStore, type DeviceKind, type DeviceRecord } from './device-store.js';
import { DeviceDiscovery, type FoundDevice } from './discovery.js';
import { DevicePlayer, type MediaSource } from './device-player.js';
import { SONOS_PORT, SonosAdapter } from './sonos-adapter.js';
import { CONTENT_TYPES, streamRoutes } from './streams.js';
import type { StreamSigner } from '../security/stream-urls.js';
import type { DeviceTransport } from './transport.js';

export type DevicesConfig = HubConfig['devices'];

/** Formats each kind plays from the file itself; anything else is transcoded to MP3. */
const NATIVE_FORMATS: Record<DeviceKind, ReadonlySet<string>> = {
  cast: new Set(['mp3', 'flac', 'wav', 'ogg', 'opus', 'm4a', 'aac']),
  sonos: new Set(['mp3', 'flac', 'wav', 'ogg', 'm4a', 'aac']),
};

/** Start delay assumed for a device never measured before (ms). */
const DEFAULT_START_DELAY_MS = 300;

/**
 * The host stream URLs carry: the configured one, else the first non-internal IPv4 address.
 * Never loopback unless configured: a speaker fetching 127.0.0.1 would ask itself.
 */
export function advertiseHost(configured: string | undefined, interfaces = networkInterfaces()): string | undefined {
  if (configured) return configured;
  for (const list of Object.values(interfaces)) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal && !a.address.startsWith('169.254.')) return a.address;
  }
  return undefined;
}

/** A node uuid for a device found at an address (topics allow letters, digits and . _ : -). */
export function deviceUuid(kind: DeviceKind, host: string, port: number): string {
  return `${kind}-${host}-${port}`.replace(/[^A-Za-z0-9._:-]/g, '_');
}

/** "HOST", "HOST:PORT" or "[v6]:PORT" → host and port. */
export function parseAddress(text: string, defaultPort: number): { host: string; port: number } {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (v6) return { host: v6[1], port: v6[2] ? Number(v6[2]) : defaultPort };
  const [host, port] = text.split(':');
  return { host, port: port ? Number(port) : defaultPort };
}

interface Managed {
  record: DeviceRecord;
  transport: DeviceTransport;
  player: DevicePlayer;
  heartbeat?: NodeJS.Timeout;
  measuredTimer?: NodeJS.Timeout;
  seq: number;
  lastMeasuredPublish: number;
}

/**
 * Chromecast and Sonos speakers as group members. Each device gets a node row (kind cast
 * or sonos) and speaks the node protocol on MQTT through the hub's own connection: it
 * joins, heartbeats while reachable and goes offline when lost, takes the node commands
 * the coordinator sends to any member, and answers with player events — so groups,
 * volume, mute, latency offsets and the start barrier treat it as any node. Its
 * DevicePlayer turns those commands into device requests with latency compensation.
 */
export class Devices {
  readonly store: DeviceStore;
  private readonly managed = new Map<string, Managed>();
  private discovery?: DeviceDiscovery;
  private host?: string;

  constructor(
    private readonly config: DevicesConfig,
    db: Db,
    private readonly channel: ControlChannel,
    catalogue: Catalogue,
    private readonly groups: Groups,
    private readonly http: HttpServer,
    private readonly log: Logger,
    /** Hub time (the clock session anchors are written in); the machine's monotonic clock when not given. */
    private readonly hubNow: () => number = monotonicMs,
    /** With credentials on: signs the stream URLs devices are handed (they cannot log in). */
    private readonly signer?: StreamSigner,
  ) {
    this.store = new DeviceStore(db);
    http.use('streams', streamRoutes(catalogue, signer));
  }

  async start(): Promise<void> {
    this.groups.devices = this;
    this.host = advertiseHost(this.config.advertiseHost);
    if (!this.host) this.log.warn('no LAN address found for stream URLs: speakers cannot fetch audio (set devices.advertiseHost)');
    else if (/^(127\.|::1$|localhost$)/.test(this.host)) this.log.warn({ host: this.host }, 'stream URLs use a loopback address: only speakers on this machine can fetch them');
    for (const r of this.store.list()) this.manage(r);
    for (const [kind, list] of [['cast', this.config.cast], ['sonos', this.config.sonos]] as const) {
      for (const text of list) {
        const { host, port } = parseAddress(text, kind === 'cast' ? CAST_PORT : SONOS_PORT);
        this.add({ kind, host, port, name: `${kind === 'cast' ? 'Cast' : 'Sonos'} ${host}${port === (kind === 'cast' ? CAST_PORT : SONOS_PORT) ? '' : `:${port}`}` }, 'manual');
      }
    }
    if (this.config.discovery) {
      this.discovery = new DeviceDiscovery((d) => this.add(d, 'discovered'), this.log.child({ part: 'discovery' }));
      await this.discovery.start();
    }
    this.log.info({ devices: this.managed.size, discovery: this.config.discovery, streamHost: this.host }, 'devices started');
  }

  async stop(): Promise<void> {
    await this.discovery?.stop();
    for (const m of this.managed.values()) {
      clearInterval(m.heartbeat);
      clearTimeout(m.measuredTimer);
      if (m.player.isOnline) this.publishAvailability(m, false, 'clean');
      await m.player.stop();
    }
    this.managed.clear();
  }

  list(): { record: DeviceRecord; online: boolean; startDelayMs: number; measuredOffsetMs: number | null }[] {
    return [...this.managed.values()].map((m) => ({ record: m.record, online: m.player.isOnline, startDelayMs: m.player.startDelayMs, measuredOffsetMs: m.player.measuredOffsetMs }));
  }

  /** What the group state shows of a member that is a device. */
  memberDetails(nodeId: number): Partial<GroupState['members'][number]> | undefined {
    for (const m of this.managed.values()) {
      if (this.store.nodeId(m.record.uuid) !== nodeId) continue;
      return { kind: m.record.kind, measuredOffsetMs: m.player.measuredOffsetMs, startDelayMs: Math.round(m.player.startDelayMs) };
    }
    return undefined;
  }

  private add(d: FoundDevice, source: 'discovered' | 'manual'): void {
    const uuid = deviceUuid(d.kind, d.host, d.port);
    const known = this.store.get(uuid);
    const record = this.store.remember({ uuid, kind: d.kind, name: known && source === 'discovered' && known.source === 'manual' ? known.name : d.name, host: d.host, port: d.port, source });
    if (!this.managed.has(uuid)) this.manage(record);
  }

  private manage(record: DeviceRecord): void {
    if (this.managed.has(record.uuid)) return;
    const log = this.log.child({ device: record.uuid });
    const timeout = this.config.requestTimeoutMs;
    const transport: DeviceTransport = record.kind === 'cast' ? new CastAdapter(record.host, record.port, timeout, log) : new SonosAdapter(record.host, record.port, timeout, log);
    const m: Managed = { record, transport, seq: 0, lastMeasuredPublish: 0, player: undefined as unknown as DevicePlayer };
    m.player = new DevicePlayer(
      transport,
      {
        playerEvent: (event) => this.publishPlayer(m, event),
        availability: (online, reason) => this.publishAvailability(m, online, reason),
        media: (track, positionMs) => this.media(record.kind, track, positionMs),
        learnt: (ms) => this.store.saveStartDelay(record.uuid, ms),
        measured: () => this.publishMeasured(m),
      },
      { initialStartDelayMs: record.startDelayMs ?? DEFAULT_START_DELAY_MS, seekThresholdMs: this.config.seekThresholdMs, pollMs: this.config.pollMs, leadMs: 150, hubNow: this.hubNow },
      log,
    );
    this.managed.set(record.uuid, m);
    // Only this device's commands: a wildcard would echo every native node's commands back to the hub.
    void this.channel.handle(this.channel.topics.nodeCommand(record.uuid), (msg) => this.onCommand(msg)).catch((err: Error) => log.warn({ err: err.message }, 'cannot subscribe to the device command topic'));
    m.player.start();
  }

  /** The stream URL for a track: the file itself when the kind plays its format, else an MP3 transcode from the position. */
  media(kind: DeviceKind, track: TrackRef, positionMs: number): MediaSource {
    if (!this.host) throw new Error('no stream host: set devices.advertiseHost');
    const h = this.host.includes(':') ? `[${this.host}]` : this.host;
    // The scheme the server speaks: HTTPS when the hub has a certificate (security.tls).
    const scheme = this.http.localUrl.startsWith('https:') ? 'https' : 'http';
    const base = `${scheme}://${h}:${this.http.port}/stream/`;
    // With credentials on, the URL carries its own permission (hub/security/stream-urls.ts).
    const signed = (file: string, transcode: boolean, start?: string) => (this.signer ? this.signer.sign({ file, transcode, start }) : '');
    if (NATIVE_FORMATS[kind].has(track.format)) {
      const file = `${track.entryId}.${track.format}`;
      const sig = signed(file, false);
      return { url: `${base}${file}${sig ? `?${sig}` : ''}`, contentType: CONTENT_TYPES[track.format] ?? 'application/octet-stream', offsetMs: 0, seekable: true };
    }
    const start = Math.max(0, Math.floor(positionMs / 1000));
    const file = `${track.entryId}.mp3`;
    const sig = signed(file, true, String(start));
    return { url: `${base}${file}?transcode&start=${start}${sig ? `&${sig}` : ''}`, contentType: CONTENT_TYPES.mp3, offsetMs: start * 1000, seekable: false };
  }

  private onCommand(message: IncomingMessage): void {
    const where = this.channel.topics.parseNodeTopic(message.topic);
    const m = where && this.managed.get(where.uuid);
    if (!m) return; // a native node's command
    const parsed = parsePayload(nodeCommandSchema, message.payload);
    if (!parsed.ok) return this.channel.error(message.topic, parsed.code, `node command: ${parsed.message}`, null, parsed.issues);
    m.player.command(parsed.value);
  }

  private publishPlayer(m: Managed, event: PlayerEvent): void {
    this.channel.publish(this.channel.topics.nodePlayer(m.record.uuid), event);
  }

  private publishAvailability(m: Managed, online: boolean, reason: string): void {
    const t = this.channel.topics;
    const uuid = m.record.uuid;
    clearInterval(m.heartbeat);
    if (online) {
      // A Sonos speaker found or named by address is called by its room once it has said it.
      const room = m.transport instanceof SonosAdapter ? m.transport.roomName?.trim().slice(0, 64) : undefined;
      if (room && m.record.name !== room && /^Sonos /.test(m.record.name)) m.record = this.store.rename(uuid, room);
      this.channel.publish(t.nodeJoin(uuid), { uuid, name: m.record.name, software: SOFTWARE_VERSION, protocol: PROTOCOL_VERSION });
      this.channel.publish(t.nodeAvailability(uuid), { state: 'online', uuid, name: m.record.name, at: Date.now() }, { retain: true });
      m.heartbeat = setInterval(() => this.publishHeartbeat(m), 1000);
      this.publishHeartbeat(m);
    } else {
      this.log.info({ device: uuid, reason }, 'device unavailable');
      this.channel.publish(t.nodeAvailability(uuid), { state: 'offline', uuid, name: m.record.name, reason: reason === 'clean' ? 'clean' : 'lost', at: Date.now() }, { retain: true });
    }
  }

  private publishHeartbeat(m: Managed): void {
    const p = m.player;
    const hb: Heartbeat = {
      seq: m.seq++,
      at: Date.now(),
      nodeId: this.store.nodeId(m.record.uuid) ?? null,
      libraryVersion: 0,
      store: { chunks: 0, bytes: 0, budgetBytes: 0 },
      playback: p.heartbeatPlayback(),
      // A device has no clock of its own to sync: what it reports is its measured offset to the group's timeline.
      clock: { synced: p.measuredOffsetMs !== null, offsetMs: p.measuredOffsetMs, errorMs: null, rttMs: null },
      volume: p.volume.volume,
    };
    this.channel.publish(this.channel.topics.nodeHeartbeat(m.record.uuid), hb, { qos: 0 });
  }

  /** A device's measured offset changed: republish its group's state, at most once a second (the last change always goes out). */
  private publishMeasured(m: Managed): void {
    if (m.measuredTimer) return;
    const wait = Math.max(0, m.lastMeasuredPublish + 1000 - Date.now());
    m.measuredTimer = setTimeout(() => {
      m.measuredTimer = undefined;
      m.lastMeasuredPublish = Date.now();
      this.publishGroupOf(m);
    }, wait);
  }

  private publishGroupOf(m: Managed): void {
    const nodeId = this.store.nodeId(m.record.uuid);
    const groupId = nodeId === undefined ? null : this.groups.groupIdOfNode(nodeId);
    if (groupId !== null) this.groups.publishGroup(groupId);
  }
}
