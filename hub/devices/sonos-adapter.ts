import sonosPackage from 'sonos';
import type { Logger } from '../../src/log.js';
import { DeviceGoneError, DeviceRefusedError, withTimeout, type DeviceStatus, type DeviceTransport } from './transport.js';

const { Sonos } = sonosPackage as unknown as { Sonos: typeof import('sonos').Sonos };
type SonosDevice = InstanceType<typeof Sonos>;

export const SONOS_PORT = 1400;

/**
 * A Sonos speaker through the `sonos` package (UPnP SOAP on port 1400). Transport commands
 * (URI, play, pause, seek, position) go to the coordinator of the speaker's Sonos group, as
 * Sonos requires; volume and mute go to the speaker itself. No event subscription is made:
 * attaching a listener to a `sonos` device would open an HTTP listener on all interfaces
 * (port 4000), so state is polled. Every request has a timeout.
 */
export class SonosAdapter implements DeviceTransport {
  readonly kind = 'sonos' as const;
  /** Sonos seeks, and reports positions, in whole seconds. */
  readonly seekGranularityMs = 1000;
  onLost?: (reason: string) => void;
  private readonly member: SonosDevice;
  private coordinator: SonosDevice;
  /** The Sonos room name, once read from the device description. */
  roomName?: string;

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly timeoutMs: number,
    private readonly log: Logger,
  ) {
    this.member = new Sonos(host, port);
    this.coordinator = this.member;
  }

  async connect(): Promise<void> {
    const description = await this.call('device description', () => this.member.deviceDescription());
    this.roomName = description?.roomName ?? description?.friendlyName;
    this.coordinator = this.member;
    try {
      const groups = await this.call('zone groups', () => this.member.getAllGroups());
      const mine = groups.find((g) => g.ZoneGroupMember.some((m) => sameAddress(m.Location, this.host, this.port)));
      if (mine?.host && mine.port && !(mine.host === this.host && mine.port === this.port)) {
        this.coordinator = new Sonos(mine.host, mine.port);
        this.log.info({ coordinator: `${mine.host}:${mine.port}` }, 'Sonos speaker is grouped; transport commands go to its coordinator');
      }
    } catch (err) {
      if (err instanceof DeviceGoneError) throw err;
      this.log.warn({ err: (err as Error).message }, 'Sonos zone groups unreadable; treating the speaker as its own coordinator');
    }
  }

  get coordinatorAddress(): string {
    return `${this.coordinator.host}:${this.coordinator.port}`;
  }

  async close(): Promise<void> {
    // Nothing held open: every request is its own HTTP exchange.
  }

  async load(url: string, _contentType: string, positionMs: number, _title: string | null): Promise<void> {
    await this.call('SetAVTransportURI', () => this.coordinator.setAVTransportURI({ uri: url, metadata: '', onlySetUri: true }));
    if (positionMs >= 1000) await this.seek(positionMs);
  }

  async play(): Promise<void> {
    await this.call('Play', () => this.coordinator.play());
  }

  async pause(): Promise<void> {
    await this.call('Pause', () => this.coordinator.pause());
  }

  async seek(positionMs: number): Promise<void> {
    await this.call('Seek', () => this.coordinator.seek(Math.max(0, Math.round(positionMs / 1000))));
  }

  async stop(): Promise<void> {
    await this.call('Stop', () => this.coordinator.stop());
  }

  async setVolume(level: number): Promise<void> {
    await this.call('SetVolume', () => this.member.setVolume(Math.min(100, Math.max(0, Math.round(level)))));
  }

  async setMuted(muted: boolean): Promise<void> {
    await this.call('SetMute', () => this.member.setMuted(muted));
  }

  async status(): Promise<DeviceStatus> {
    const transport = await this.call('GetTransportInfo', () => this.coordinator.avTransportService().GetTransportInfo());
    const position = await this.call('GetPositionInfo', () => this.coordinator.avTransportService().GetPositionInfo());
    const seconds = parseTime(position.RelTime);
    const state = transport.CurrentTransportState === 'PLAYING' ? 'playing' : transport.CurrentTransportState === 'PAUSED_PLAYBACK' ? 'paused' : transport.CurrentTransportState === 'TRANSITIONING' ? 'buffering' : 'idle';
    return { state, loMs: seconds * 1000, hiMs: (seconds + 1) * 1000 };
  }

  private async call<T>(what: string, work: () => Promise<T>): Promise<T> {
    const where = `${what} on Sonos ${this.host}:${this.port}`;
    try {
      return await withTimeout(where, this.timeoutMs, work());
    } catch (err) {
      if (err instanceof DeviceGoneError) throw err;
      const e = err as Error & { code?: string };
      if (e.code && /^(ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|ENOTFOUND|EPIPE)$/.test(e.code)) throw new DeviceGoneError(`${where}: ${e.code}`);
      throw new DeviceRefusedError(`${where}: ${e.message ?? JSON.stringify(err).slice(0, 300)}`);
    }
  }
}

/** "H:MM:SS" (Sonos RelTime) → seconds; anything else (NOT_IMPLEMENTED) → 0. */
export function parseTime(text: string | undefined): number {
  const m = /^(\d+):(\d{1,2}):(\d{1,2})/.exec(text ?? '');
  return m ? Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]) : 0;
}

function sameAddress(location: string, host: string, port: number): boolean {
  try {
    const u = new URL(location);
    return u.hostname === host && Number(u.port || 80) === port;
  } catch {
    return false;
  }
}
