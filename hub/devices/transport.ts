import type { DeviceKind } from './device-store.js';

/** What a position read returns: the state, and the position interval (see PositionReading). */
export interface DeviceStatus {
  state: 'playing' | 'paused' | 'buffering' | 'idle';
  loMs: number;
  hiMs: number;
}

/**
 * One speaker behind one interface: what the Cast and Sonos adapters implement, and all
 * that DevicePlayer (the player protocol, compensation, availability) needs of them. Every
 * method rejects after the configured request timeout rather than hanging, and rejects with
 * DeviceGoneError when the device cannot be reached.
 */
export interface DeviceTransport {
  readonly kind: DeviceKind;
  /** Seek resolution: Sonos positions are whole seconds. */
  readonly seekGranularityMs: number;
  /** Called when the device drops the connection (Cast) or stops answering. */
  onLost?: (reason: string) => void;
  /** Called when the device reports that playback stopped by itself with an error (Cast: IDLE, reason ERROR). */
  onFailed?: (reason: string) => void;
  connect(): Promise<void>;
  close(): Promise<void>;
  /** Loads the URL paused at the position (ms). */
  load(url: string, contentType: string, positionMs: number, title: string | null): Promise<void>;
  play(): Promise<void>;
  pause(): Promise<void>;
  seek(positionMs: number): Promise<void>;
  stop(): Promise<void>;
  /** 0..100 */
  setVolume(level: number): Promise<void>;
  setMuted(muted: boolean): Promise<void>;
  status(): Promise<DeviceStatus>;
}

/** The device cannot be reached (connection refused or dropped, or a request timed out). */
export class DeviceGoneError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DeviceGoneError';
  }
}

/** The device answered but refused (e.g. Cast LOAD_FAILED: it cannot play the stream). */
export class DeviceRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DeviceRefusedError';
  }
}

/** Wraps a promise with the timeout the client libraries lack. */
export function withTimeout<T>(what: string, ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeviceGoneError(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
