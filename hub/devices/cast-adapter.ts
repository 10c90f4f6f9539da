import castv2Client, { type CastMediaStatus, type Client as CastClient, type DefaultMediaReceiver as Receiver } from 'castv2-client';
import type { Logger } from '../../src/log.js';
import { DeviceGoneError, DeviceRefusedError, withTimeout, type DeviceStatus, type DeviceTransport } from './transport.js';

const { Client, DefaultMediaReceiver } = castv2Client as unknown as { Client: new () => CastClient; DefaultMediaReceiver: typeof Receiver };

export const CAST_PORT = 8009;

/**
 * A Chromecast through castv2-client: TLS to port 8009, the Default Media Receiver
 * launched, tracks loaded by URL from the hub's streams. castv2-client has no timeouts, so
 * every request here is raced against one; a dropped connection, a receiver closing the
 * session or a heartbeat timeout reports the device lost.
 */
export class CastAdapter implements DeviceTransport {
  readonly kind = 'cast' as const;
  readonly seekGranularityMs = 1;
  onLost?: (reason: string) => void;
  onFailed?: (reason: string) => void;
  private client?: CastClient;
  private app?: Receiver;

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly timeoutMs: number,
    private readonly log: Logger,
  ) {}

  async connect(): Promise<void> {
    await this.close();
    const client = new Client();
    this.client = client;
    const where = `Cast device ${this.host}:${this.port}`;
    guardMessages(client.client, (err) => {
      if (this.client !== client) return;
      this.log.warn({ err: err.message }, 'Cast device sent a message that cannot be read; dropping the connection');
      this.onLost?.(`${where} sent an unreadable message: ${err.message.slice(0, 200)}`);
    });
    let connected = false;
    await withTimeout(
      `connecting to ${where}`,
      this.timeoutMs,
      new Promise<void>((resolve, reject) => {
        client.on('error', (err: Error) => {
          if (!connected) return reject(new DeviceGoneError(`${where}: ${err.message}`));
          if (this.client === client) this.onLost?.(`${where}: ${err.message}`);
        });
        client.connect({ host: this.host, port: this.port }, () => {
          connected = true;
          resolve();
        });
      }),
    ).catch(async (err) => {
      await this.close();
      throw err;
    });
    client.client.once('close', () => {
      if (this.client === client) this.onLost?.(`${where} closed the connection`);
    });
    const app = await withTimeout(`launching the Default Media Receiver on ${where}`, this.timeoutMs, callback<Receiver>((cb) => client.launch(DefaultMediaReceiver, cb)));
    this.app = app;
    app.once('close', () => {
      if (this.app === app) this.onLost?.(`${where}: the receiver closed the media session`);
    });
    // Status updates the receiver broadcasts: a stream that broke mid-play ends in IDLE with reason ERROR.
    app.on('status', (st: CastMediaStatus) => {
      if (this.app === app && st.playerState === 'IDLE' && st.idleReason === 'ERROR') this.onFailed?.(`${where}: playback stopped with an error`);
    });
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.app = undefined;
    try {
      client?.close();
    } catch {
      // castv2-client throws when closed twice; closed is what we want.
    }
  }

  async load(url: string, contentType: string, positionMs: number, title: string | null): Promise<void> {
    const media = { contentId: url, contentType, streamType: 'BUFFERED', metadata: { type: 0, metadataType: 0, title: title ?? undefined } };
    await this.request('LOAD', (app, cb) => app.load(media, { autoplay: false, currentTime: Math.max(0, positionMs) / 1000 }, cb));
  }

  async play(): Promise<void> {
    await this.request('PLAY', (app, cb) => app.play(cb));
  }

  async pause(): Promise<void> {
    await this.request('PAUSE', (app, cb) => app.pause(cb));
  }

  async seek(positionMs: number): Promise<void> {
    await this.request('SEEK', (app, cb) => app.seek(Math.max(0, positionMs) / 1000, cb));
  }

  async stop(): Promise<void> {
    await this.request('STOP', (app, cb) => app.stop(cb));
  }

  async setVolume(level: number): Promise<void> {
    const client = this.requireClient();
    await withTimeout(`SET_VOLUME on Cast device ${this.host}`, this.timeoutMs, callback((cb) => client.setVolume({ level: Math.min(1, Math.max(0, level / 100)) }, cb)));
  }

  async setMuted(muted: boolean): Promise<void> {
    const client = this.requireClient();
    await withTimeout(`SET_VOLUME (mute) on Cast device ${this.host}`, this.timeoutMs, callback((cb) => client.setVolume({ muted }, cb)));
  }

  async status(): Promise<DeviceStatus> {
    const s = await this.request<CastMediaStatus | undefined>('GET_STATUS', (app, cb) => app.getStatus(cb));
    const ms = (s?.currentTime ?? 0) * 1000;
    const state = s?.playerState === 'PLAYING' ? 'playing' : s?.playerState === 'PAUSED' ? 'paused' : s?.playerState === 'BUFFERING' ? 'buffering' : 'idle';
    return { state, loMs: ms, hiMs: ms };
  }

  private requireClient(): CastClient {
    if (!this.client) throw new DeviceGoneError(`Cast device ${this.host}:${this.port} is not connected`);
    return this.client;
  }

  private request<T = CastMediaStatus>(what: string, call: (app: Receiver, cb: (err: Error | null, v: T) => void) => void): Promise<T> {
    const app = this.app;
    if (!app) return Promise.reject(new DeviceGoneError(`Cast device ${this.host}:${this.port} is not connected`));
    return withTimeout(
      `${what} on Cast device ${this.host}:${this.port}`,
      this.timeoutMs,
      callback<T>((cb) => call(app, cb)).catch((err: Error) => {
        if (err instanceof DeviceGoneError) throw err;
        throw new DeviceRefusedError(`${what}: ${err.message}`);
      }),
    );
  }
}

/**
 * castv2 parses each message's JSON inside its event handlers, so one malformed message from
 * a device would throw out of the socket's data handler and take the hub down. Exceptions
 * thrown by the listeners of the connection's own events are caught here and reported.
 */
function guardMessages(bus: NodeJS.EventEmitter, onError: (err: Error) => void): void {
  const emit = bus.emit.bind(bus);
  bus.emit = ((event: string | symbol, ...args: unknown[]) => {
    try {
      return emit(event, ...args);
    } catch (err) {
      onError(err as Error);
      return true;
    }
  }) as typeof bus.emit;
}

/** A node-style callback call as a promise; a synchronous throw (no media session yet) rejects it. */
function callback<T>(call: (cb: (err: Error | null, value: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    try {
      call((err, value) => (err ? reject(err) : resolve(value)));
    } catch (err) {
      reject(err as Error);
    }
  });
}
