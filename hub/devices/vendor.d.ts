// The parts of castv2, castv2-client and sonos Firefly uses (the packages ship no types).

declare module 'castv2' {
  import type { EventEmitter } from 'node:events';
  import type { TlsOptions } from 'node:tls';
  export class Server extends EventEmitter {
    constructor(options: TlsOptions);
    server: import('node:tls').Server;
    clients: Record<string, { socket: import('node:tls').TLSSocket }>;
    listen(port: number, host: string, callback?: () => void): void;
    close(): void;
    send(clientId: string, sourceId: string, destinationId: string, namespace: string, data: string | Buffer): void;
  }
}

declare module 'castv2-client' {
  import type { EventEmitter } from 'node:events';
  type Callback<T> = (err: Error | null, value: T) => void;
  export interface CastMediaStatus {
    mediaSessionId?: number;
    playerState?: 'IDLE' | 'PLAYING' | 'PAUSED' | 'BUFFERING';
    currentTime?: number;
    idleReason?: string;
    volume?: { level?: number; muted?: boolean };
  }
  export class DefaultMediaReceiver extends EventEmitter {
    static APP_ID: string;
    session: { sessionId: string; transportId: string } | null;
    load(media: object, options: object, callback: Callback<CastMediaStatus>): void;
    play(callback: Callback<CastMediaStatus>): void;
    pause(callback: Callback<CastMediaStatus>): void;
    stop(callback: Callback<CastMediaStatus>): void;
    seek(seconds: number, callback: Callback<CastMediaStatus>): void;
    getStatus(callback: Callback<CastMediaStatus | undefined>): void;
    close(): void;
  }
  export class Client extends EventEmitter {
    connect(options: { host: string; port: number }, callback: () => void): void;
    launch(app: typeof DefaultMediaReceiver, callback: Callback<DefaultMediaReceiver>): void;
    setVolume(volume: { level?: number; muted?: boolean }, callback: Callback<unknown>): void;
    getStatus(callback: Callback<unknown>): void;
    close(): void;
    client: EventEmitter & { socket?: import('node:tls').TLSSocket | null };
  }
}

declare module 'sonos' {
  import type { EventEmitter } from 'node:events';
  export class Sonos extends EventEmitter {
    constructor(host: string, port?: number, options?: object);
    host: string;
    port: number;
    setAVTransportURI(options: { uri: string; metadata?: string; onlySetUri?: boolean } | string): Promise<unknown>;
    play(): Promise<boolean>;
    pause(): Promise<boolean>;
    stop(): Promise<boolean>;
    seek(seconds: number): Promise<boolean>;
    setVolume(volume: number): Promise<unknown>;
    setMuted(muted: boolean): Promise<unknown>;
    getCurrentState(): Promise<string>;
    getAllGroups(): Promise<{ Coordinator?: string; host?: string; port?: number; ZoneGroupMember: { UUID: string; Location: string; ZoneName: string }[] }[]>;
    deviceDescription(): Promise<{ roomName?: string; UDN?: string; friendlyName?: string }>;
    avTransportService(): { GetPositionInfo(): Promise<{ RelTime: string; TrackDuration: string; TrackURI?: string }>; GetTransportInfo(): Promise<{ CurrentTransportState: string }> };
  }
}
