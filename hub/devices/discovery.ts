import { createSocket, type Socket } from 'node:dgram';
import { isIPv4 } from 'node:net';
import { Bonjour, type Browser, type Service } from 'bonjour-service';
import type { Logger } from '../../src/log.js';
import type { DeviceKind } from './device-store.js';

export interface FoundDevice {
  kind: DeviceKind;
  name: string;
  host: string;
  port: number;
}

/** A Cast device's mDNS answer (_googlecast._tcp) as a device, or undefined when it has no usable address. */
export function castFromService(s: Pick<Service, 'name' | 'addresses' | 'port' | 'txt' | 'referer'>): FoundDevice | undefined {
  const host = s.addresses?.find((a) => isIPv4(a)) ?? s.referer?.address ?? s.addresses?.[0];
  if (!host || !s.port) return undefined;
  const txt = (s.txt ?? {}) as Record<string, unknown>;
  const name = typeof txt.fn === 'string' && txt.fn.trim() ? txt.fn.trim() : s.name;
  return { kind: 'cast', name: name.slice(0, 64), host, port: s.port };
}

export const SSDP_ADDRESS = '239.255.255.250';
export const SSDP_PORT = 1900;
const SONOS_ST = 'urn:schemas-upnp-org:device:ZonePlayer:1';

/** One SSDP answer from a Sonos speaker (its LOCATION names the description URL on port 1400), or undefined. */
export function sonosFromSsdp(text: string): FoundDevice | undefined {
  if (!/^HTTP\/1\.1 200/i.test(text) && !/^NOTIFY /i.test(text)) return undefined;
  const header = (name: string) => new RegExp(`^${name}:\\s*(.+?)\\s*$`, 'im').exec(text)?.[1];
  const st = header('ST') ?? header('NT') ?? '';
  const server = header('SERVER') ?? '';
  if (!st.includes('ZonePlayer') && !/sonos/i.test(server)) return undefined;
  const location = header('LOCATION');
  if (!location) return undefined;
  try {
    const u = new URL(location);
    if (u.protocol !== 'http:') return undefined;
    const port = Number(u.port || 80);
    return { kind: 'sonos', name: `Sonos ${u.hostname}`, host: u.hostname, port };
  } catch {
    return undefined;
  }
}

/**
 * Looks for speakers on the LAN: Cast over mDNS (bonjour-service), Sonos over SSDP
 * (M-SEARCH every `intervalMs`). Each find is reported once per address.
 */
export class DeviceDiscovery {
  private bonjour?: Bonjour;
  private browser?: Browser;
  private ssdp?: Socket;
  private timer?: NodeJS.Timeout;
  private readonly seen = new Set<string>();

  constructor(
    private readonly onFound: (d: FoundDevice) => void,
    private readonly log: Logger,
    private readonly options: { intervalMs: number; ssdpTarget?: { host: string; port: number }; mdns?: boolean } = { intervalMs: 30_000 },
  ) {}

  async start(): Promise<void> {
    if (this.options.mdns !== false) this.browseMdns();
    const socket = createSocket({ type: 'udp4', reuseAddr: true });
    this.ssdp = socket;
    socket.on('error', (err) => this.log.warn({ err: err.message }, 'SSDP unavailable: Sonos speakers are not discovered (set devices.sonos addresses)'));
    socket.on('message', (msg) => {
      const d = sonosFromSsdp(msg.toString('utf8'));
      if (d) this.found(d);
    });
    await new Promise<void>((resolve) => socket.bind(0, () => resolve()));
    this.search();
    this.timer = setInterval(() => {
      this.search();
      this.browser?.update();
    }, this.options.intervalMs);
    this.timer.unref();
  }

  private browseMdns(): void {
    try {
      this.bonjour = new Bonjour({}, (err: Error) => this.log.debug({ err: err.message }, 'mDNS send failed'));
      const mdns = (this.bonjour as unknown as { server: { mdns: NodeJS.EventEmitter } }).server.mdns;
      mdns.on('error', (err: Error) => this.log.warn({ err: err.message }, 'mDNS unavailable: Cast devices are not discovered (set devices.cast addresses)'));
      mdns.on('warning', (err: Error) => this.log.debug({ err: err.message }, 'mDNS warning'));
      this.browser = this.bonjour.find({ type: 'googlecast', protocol: 'tcp' }, (s: Service) => {
        const d = castFromService(s);
        if (d) this.found(d);
      });
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'mDNS browse failed to start');
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.browser?.stop();
    await new Promise<void>((resolve) => (this.bonjour ? this.bonjour.destroy(() => resolve()) : resolve()));
    try {
      this.ssdp?.close();
    } catch {
      // already closed
    }
  }

  private search(): void {
    const target = this.options.ssdpTarget ?? { host: SSDP_ADDRESS, port: SSDP_PORT };
    const msg = Buffer.from(['M-SEARCH * HTTP/1.1', `HOST: ${SSDP_ADDRESS}:${SSDP_PORT}`, 'MAN: "ssdp:discover"', 'MX: 1', `ST: ${SONOS_ST}`, '', ''].join('\r\n'));
    this.ssdp?.send(msg, target.port, target.host, (err) => {
      if (err) this.log.debug({ err: err.message }, 'SSDP search not sent');
    });
  }

  private found(d: FoundDevice): void {
    const key = `${d.kind}:${d.host}:${d.port}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.log.info(d, 'device discovered');
    this.onFound(d);
  }
}
