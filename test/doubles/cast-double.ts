/**
 * A Chromecast stand-in on castv2's own Server (TLS, a self-signed certificate made with
 * openssl at start): the platform receiver (connection, heartbeat, receiver namespaces)
 * and the Default Media Receiver (media namespace). LOAD fetches the URL the way a device
 * would (HEAD, then ranged GETs) and fails the load when that fails; PLAY and SEEK sound
 * after a configurable start delay; GET_STATUS reports the position by the double's own
 * clock. `vanish()` drops every connection and stops answering, as a speaker unplugged.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import castv2 from 'castv2';
import { tempDir } from '../helpers/processes.js';
import { fetchLikeADevice, type Fetched } from './device-fetch.js';
import { Playhead } from './playhead.js';

const { Server } = castv2 as unknown as { Server: typeof import('castv2').Server };
const run = promisify(execFile);

const NS = {
  connection: 'urn:x-cast:com.google.cast.tp.connection',
  heartbeat: 'urn:x-cast:com.google.cast.tp.heartbeat',
  receiver: 'urn:x-cast:com.google.cast.receiver',
  media: 'urn:x-cast:com.google.cast.media',
};
const DEFAULT_MEDIA_RECEIVER = 'CC1AD845';

/** A self-signed certificate for 127.0.0.1, made once per test process. */
let certificate: Promise<{ key: Buffer; cert: Buffer }> | undefined;
function selfSigned(): Promise<{ key: Buffer; cert: Buffer }> {
  certificate ??= (async () => {
    const dir = await tempDir('firefly-cast-cert-');
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=cast-double']);
    return { key: await readFile(key), cert: await readFile(cert) };
  })();
  return certificate;
}

export interface CastRequestLog {
  namespace: string;
  type: string;
  at: number;
}

export class CastDouble {
  readonly playhead: Playhead;
  readonly fetches: Fetched[] = [];
  readonly requests: CastRequestLog[] = [];
  readonly fetchErrors: string[] = [];
  volume = { level: 1, muted: false };
  port = 0;
  /** Answer nothing at all (a hung device): requests must time out on the hub's side. */
  silent = false;
  /** Answer media status requests with bytes that are not JSON (a broken device). */
  garbled = false;
  private server?: InstanceType<typeof Server>;
  private app?: { sessionId: string; transportId: string };
  private mediaSessionId = 0;
  private contentType: string | null = null;
  private lastMediaClient?: { clientId: string; transportId: string };

  constructor(startDelayMs: number) {
    this.playhead = new Playhead(startDelayMs);
  }

  async start(port = 0): Promise<this> {
    const { key, cert } = await selfSigned();
    const server = new Server({ key, cert });
    this.server = server;
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
    // castv2 loads its protobuf definitions asynchronously.
    await new Promise((r) => setTimeout(r, 50));
    this.port = (server.server.address() as { port: number }).port;
    server.on('message', (clientId: string, sourceId: string, destinationId: string, namespace: string, data: string) => {
      try {
        this.onMessage(clientId, sourceId, destinationId, namespace, JSON.parse(data) as Record<string, unknown>);
      } catch (err) {
        this.fetchErrors.push(`bad message: ${(err as Error).message}`);
      }
    });
    return this;
  }

  /** Unplugged: every connection dropped, nothing listens any more. */
  vanish(): void {
    this.playhead.stop();
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.server.close();
    for (const c of Object.values(s.clients)) c.socket.destroy();
  }

  async stop(): Promise<void> {
    this.vanish();
  }

  /** The stream breaks mid-play: the receiver goes IDLE with reason ERROR and says so to its senders. */
  failPlayback(): void {
    this.playhead.stop();
    const to = this.lastMediaClient;
    if (!to || !this.mediaSessionId) return;
    const status = { mediaSessionId: this.mediaSessionId, playbackRate: 1, playerState: 'IDLE', idleReason: 'ERROR', currentTime: 0, volume: this.volume };
    this.send(to.clientId, to.transportId, '*', NS.media, { type: 'MEDIA_STATUS', status: [status], requestId: 0 });
  }

  count(type: string): number {
    return this.requests.filter((r) => r.type === type).length;
  }

  private send(clientId: string, from: string, to: string, namespace: string, data: object): void {
    const text = JSON.stringify(data);
    this.server?.send(clientId, from, to, namespace, this.garbled && namespace === NS.media ? `${text.slice(0, 20)}\u0000{{` : text);
  }

  private onMessage(clientId: string, sourceId: string, destinationId: string, namespace: string, data: Record<string, unknown>): void {
    const type = String(data.type);
    this.requests.push({ namespace, type, at: Date.now() });
    if (this.silent) return;
    const reply = (payload: object) => this.send(clientId, destinationId, sourceId, namespace, { ...payload, requestId: data.requestId });
    switch (namespace) {
      case NS.connection:
        return;
      case NS.heartbeat:
        if (type === 'PING') this.send(clientId, destinationId, sourceId, namespace, { type: 'PONG' });
        return;
      case NS.receiver:
        if (type === 'LAUNCH') {
          if (data.appId !== DEFAULT_MEDIA_RECEIVER) return reply({ type: 'LAUNCH_ERROR', reason: 'NOT_FOUND' });
          this.app ??= { sessionId: `session-${Date.now()}`, transportId: 'web-1' };
        } else if (type === 'SET_VOLUME') {
          const v = data.volume as { level?: number; muted?: boolean };
          if (typeof v.level === 'number') this.volume.level = v.level;
          if (typeof v.muted === 'boolean') this.volume.muted = v.muted;
        } else if (type === 'STOP') {
          this.app = undefined;
        }
        return reply({ type: 'RECEIVER_STATUS', status: this.receiverStatus() });
      case NS.media:
        if (!this.app || destinationId !== this.app.transportId) return;
        this.lastMediaClient = { clientId, transportId: destinationId };
        return void this.onMedia(type, data, reply, (payload) => this.send(clientId, destinationId, '*', namespace, payload));
    }
  }

  private async onMedia(type: string, data: Record<string, unknown>, reply: (p: object) => void, broadcast: (p: object) => void): Promise<void> {
    const p = this.playhead;
    switch (type) {
      case 'LOAD': {
        const media = data.media as { contentId: string; contentType: string };
        try {
          const got = await fetchLikeADevice(media.contentId);
          this.fetches.push(got);
          if (got.contentType?.split(';')[0] !== media.contentType.split(';')[0]) throw new Error(`served as ${got.contentType}, loaded as ${media.contentType}`);
        } catch (err) {
          this.fetchErrors.push(`${media.contentId}: ${(err as Error).message}`);
          return reply({ type: 'LOAD_FAILED' });
        }
        this.mediaSessionId++;
        this.contentType = media.contentType;
        p.load(media.contentId, Number(data.currentTime ?? 0) * 1000);
        if (data.autoplay) p.play();
        break;
      }
      case 'PLAY':
        p.play();
        break;
      case 'PAUSE':
        p.pause();
        break;
      case 'SEEK':
        p.seek(Number(data.currentTime) * 1000);
        break;
      case 'STOP':
        p.stop();
        break;
      case 'GET_STATUS':
        break;
      default:
        return reply({ type: 'INVALID_REQUEST', reason: 'INVALID_COMMAND' });
    }
    const status = this.mediaStatus();
    // A real receiver broadcasts every change; castv2-client needs it to learn the media session.
    if (status && type !== 'GET_STATUS') broadcast({ type: 'MEDIA_STATUS', status: [status], requestId: 0 });
    reply({ type: 'MEDIA_STATUS', status: status ? [status] : [] });
  }

  private mediaStatus(): object | undefined {
    if (!this.mediaSessionId) return undefined;
    const p = this.playhead;
    const playerState = { idle: 'IDLE', paused: 'PAUSED', buffering: 'BUFFERING', playing: 'PLAYING' }[p.state];
    return { mediaSessionId: this.mediaSessionId, playbackRate: 1, playerState, currentTime: p.positionMs() / 1000, supportedMediaCommands: 15, volume: this.volume, media: { contentId: p.url, contentType: this.contentType } };
  }

  private receiverStatus(): object {
    return {
      applications: this.app ? [{ appId: DEFAULT_MEDIA_RECEIVER, displayName: 'Default Media Receiver', sessionId: this.app.sessionId, transportId: this.app.transportId, namespaces: [{ name: NS.media }] }] : [],
      volume: this.volume,
    };
  }
}
