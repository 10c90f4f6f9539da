import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../../src/log.js';
import { heartbeatSchema, parsePayload, playlistListSchema } from '../../src/protocol/schemas.js';
import type { Hub } from '../hub.js';
import type { UploadStatus } from './api-types.js';


/** A library scan: files done of files seen since the scan began. */
export interface ScanStatus {
  active: boolean;
  done: number;
  total: number;
  /** True once the hub's first walk of the library folders is over. */
  ready: boolean;
}

/** Scan progress goes out at most this often (ms). */
const SCAN_EVENT_MS = 250;

/** Bytes of events waiting for one slow client before its stream is closed. */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

interface Client {
  reply: FastifyReply;
}

/**
 * Live updates for the web page over server-sent events (GET /api/events). The hub's own
 * publications are the source: every state topic the hub publishes on MQTT (groups,
 * nodes, library version) is forwarded as it is published, the retained playlists as the
 * broker holds them, plus what MQTT does not carry as state: heartbeats (clock quality,
 * downloads; at most once a second per node), scan progress and uploads.
 */
export class LiveEvents {
  private readonly clients = new Set<Client>();
  private readonly latest = new Map<string, unknown>();
  private readonly untap: (() => void)[] = [];
  private keepalive?: NodeJS.Timeout;
  private scan: ScanStatus = { active: false, done: 0, total: 0, ready: false };
  private scanTimer?: NodeJS.Timeout;
  private lastScanSent = 0;
  private readonly lastBeat = new Map<string, number>();
  readonly uploads: UploadStatus[] = [];
  private nextUploadId = 1;

  constructor(
    private readonly hub: Hub,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const t = this.hub.channel.topics;
    const names = new Map<string, string>([
      [t.groups, 'groups'],
      [t.nodes, 'nodes'],
      [t.library, 'library'],
      [t.nodeEvents, 'node-event'],
    ]);
    this.untap.push(
      this.hub.channel.onPublish((topic, value) => {
        const event = names.get(topic);
        if (!event) return;
        if (event !== 'node-event') this.latest.set(event, value);
        this.send(event, event === 'library' ? this.libraryState() : value);
      }),
    );
    // Playlists are kept by hub/playlists and retained on their topic: read them from the
    // broker, so the page has them from the start, whichever module publishes them.
    await this.hub.channel.handle(t.playlists, (m) => {
      if (m.payload.length === 0) {
        this.latest.delete('playlists');
        return this.send('playlists', { playlists: [], at: Date.now() });
      }
      const list = parsePayload(playlistListSchema, m.payload);
      if (!list.ok) return this.log.warn({ topic: m.topic, err: list.message }, 'playlists not shown: bad payload');
      this.latest.set('playlists', list.value);
      this.send('playlists', list.value);
    });
    await this.hub.channel.handle(t.anyNode('heartbeat'), (m) => {
      const where = t.parseNodeTopic(m.topic);
      if (!where) return;
      const now = Date.now();
      if (now - (this.lastBeat.get(where.uuid) ?? 0) < 900) return;
      const beat = parsePayload(heartbeatSchema, m.payload);
      if (!beat.ok) return;
      this.lastBeat.set(where.uuid, now);
      const { nodeId, clock, playback, downloads, store, libraryVersion, volume } = beat.value;
      this.send('heartbeat', { uuid: where.uuid, nodeId, clock, playback, downloads: downloads ?? null, store, libraryVersion, volume, at: now });
    });
    const library = this.hub.library;
    this.scan.ready = library.progress().ready;
    // 'progress' comes after each file the library finished: count them while work is pending.
    const onProgress = (p: { pending: number; ready: boolean }) => {
      if (!this.scan.active && p.pending === 0) {
        this.scan = { ...this.scan, active: false, ready: p.ready };
      } else {
        const done = this.scan.active ? this.scan.done + 1 : 1;
        this.scan = { active: p.pending > 0, done, total: done + p.pending, ready: p.ready };
      }
      this.sendScanSoon();
    };
    library.on('progress', onProgress);
    this.untap.push(() => library.off('progress', onProgress));
    const onIndexed = (info: { root: string; path: string; entryId: number; status: string; error?: string }) => {
      const upload = this.uploads.find((u) => u.state === 'indexing' && u.path === info.path && info.root === this.uploadRoot);
      if (!upload) return;
      upload.state = info.status === 'ok' ? 'indexed' : 'failed';
      upload.entryId = info.entryId;
      upload.error = info.error ?? (info.status === 'ok' ? null : info.status);
      upload.at = Date.now();
      this.send('upload', upload);
    };
    library.on('indexed', onIndexed);
    this.untap.push(() => library.off('indexed', onIndexed));
    // A comment line now and then keeps proxies and idle timeouts from closing the stream.
    this.keepalive = setInterval(() => {
      for (const c of this.clients) c.reply.raw.write(': keepalive\n\n');
    }, 15_000);
    this.keepalive.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.keepalive);
    clearTimeout(this.scanTimer);
    for (const u of this.untap.splice(0)) u();
    for (const c of this.clients) c.reply.raw.end();
    this.clients.clear();
  }

  get uploadRoot(): string | undefined {
    return this.hub.library.roots[0];
  }

  /** The library as the page shows it: version, counts and the scan. */
  libraryState(): { version: number; counts: ReturnType<Hub['catalogue']['counts']>; scan: ScanStatus } {
    return { version: this.hub.catalogue.version(), counts: this.hub.catalogue.counts(), scan: this.scan };
  }

  /** The last published value of a state topic (playlists), if the hub published one. */
  last(event: 'playlists'): unknown {
    return this.latest.get(event);
  }

  /** Starts following an upload stored under `path` (library-relative) until it is indexed. */
  trackUpload(name: string, path: string, size: number): UploadStatus {
    const upload: UploadStatus = { uploadId: this.nextUploadId++, name, path, size, state: 'indexing', entryId: null, error: null, at: Date.now() };
    this.uploads.push(upload);
    if (this.uploads.length > 100) this.uploads.splice(0, this.uploads.length - 100);
    this.send('upload', upload);
    return upload;
  }

  /** The first message of every stream: the whole state, so the page needs no other request. */
  snapshot(): Record<string, unknown> {
    return {
      groups: this.hub.groups.list(),
      nodes: this.hub.registry.list(),
      library: this.libraryState(),
      playlists: (this.latest.get('playlists') as { playlists?: unknown[] } | undefined)?.playlists ?? [],
      uploads: this.uploads,
      at: Date.now(),
    };
  }

  /** Serves one event stream until the client goes away. */
  serve(request: FastifyRequest, reply: FastifyReply): void {
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    const client: Client = { reply };
    this.clients.add(client);
    raw.write(`retry: 2000\nevent: snapshot\ndata: ${JSON.stringify(this.snapshot())}\n\n`);
    request.raw.on('close', () => this.clients.delete(client));
    this.log.debug({ clients: this.clients.size }, 'live-update client connected');
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /** At most one scan update per 250 ms: the first at once (a scan shows as soon as it starts), the last always. */
  private sendScanSoon(): void {
    if (this.scanTimer) return;
    const wait = this.lastScanSent + SCAN_EVENT_MS - Date.now();
    const fire = () => {
      this.scanTimer = undefined;
      this.lastScanSent = Date.now();
      this.send('library', this.libraryState());
    };
    if (wait <= 0) fire();
    else this.scanTimer = setTimeout(fire, wait);
  }

  private send(event: string, data: unknown): void {
    if (this.clients.size === 0) return;
    const text = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const c of this.clients) {
      // A client that stopped reading must not make the hub buffer without end: it
      // reconnects (EventSource does by itself) and starts again from a snapshot.
      if (c.reply.raw.writableLength > MAX_BUFFERED_BYTES) {
        this.log.warn({ buffered: c.reply.raw.writableLength }, 'live-update client too slow; closing its stream');
        this.clients.delete(c);
        c.reply.raw.destroy();
        continue;
      }
      c.reply.raw.write(text);
    }
  }
}
