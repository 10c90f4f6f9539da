import { isIP } from 'node:net';
import { Bonjour } from 'bonjour-service';
import type { Logger } from '../../src/log.js';
import { encodeTxt, instanceName, SERVICE_NAME, SERVICE_PROTOCOL, SERVICE_TYPE, type HubAdvert } from '../../src/discovery/txt.js';

export interface AdvertiserOptions {
  /** The hub's name (the DNS-SD instance name). */
  name: string;
  /** Where the data plane listens (grpc.host): a loopback address means nobody on the LAN could connect. */
  host: string;
  /** Read at start(), after the listeners are up (ports may have been 0). */
  advert: () => Omit<HubAdvert, 'name'>;
}

/** True for addresses only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\./.test(h) || h === '::ffff:127.0.0.1';
}

/**
 * Advertises the hub over mDNS as `_firefly._tcp` (instance name: the hub's name; SRV
 * port: the gRPC port; TXT: the other ports and versions, see src/discovery/txt.ts), so
 * nodes started without --hub find it. When the data plane listens on one specific
 * address, only that interface is used; on a loopback address nothing is advertised.
 */
export class Advertiser {
  private bonjour?: Bonjour;

  constructor(
    private readonly options: AdvertiserOptions,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const { host } = this.options;
    if (isLoopbackHost(host)) {
      this.log.info({ host }, 'not advertising over mDNS: the data plane listens on loopback only');
      return;
    }
    const wildcard = host === '0.0.0.0' || host === '::' || !isIP(host);
    // One specific IPv4 address: multicast on that interface only (still bound to 0.0.0.0:5353
    // to receive the multicast queries).
    const mdnsOptions = !wildcard && isIP(host) === 4 ? { interface: host, bind: '0.0.0.0' } : {};
    // bonjour-service hands these to multicast-dns; its typings name the wrong type.
    const bonjour = new Bonjour(mdnsOptions as NonNullable<ConstructorParameters<typeof Bonjour>[0]>, (err: Error) => this.log.debug({ err: err.message }, 'mDNS answer not sent'));
    const mdns = (bonjour as unknown as { server: { mdns: NodeJS.EventEmitter } }).server.mdns;
    // Port 5353 taken without SO_REUSEADDR, or not allowed: the hub runs on without advertising.
    mdns.on('error', (err: Error) => this.log.warn({ err: err.message }, 'mDNS advertising failed; nodes need --hub to find this hub'));
    mdns.on('warning', (err: Error) => this.log.debug({ err: err.message }, 'mDNS warning'));
    const advert = this.options.advert();
    const name = instanceName(this.options.name);
    const txt = encodeTxt(advert);
    // No probing: it would only delay the announcement, and on a name clash bonjour-service
    // prints to stdout and withdraws. Give each hub on a LAN its own name (setting `name`).
    bonjour.publish({ name, type: SERVICE_TYPE, protocol: SERVICE_PROTOCOL, port: advert.grpcPort, txt, probe: false });
    this.bonjour = bonjour;
    this.log.info({ service: SERVICE_NAME, name, txt, interface: wildcard ? 'all' : host }, 'advertising the hub over mDNS');
  }

  async stop(): Promise<void> {
    const bonjour = this.bonjour;
    this.bonjour = undefined;
    if (!bonjour) return;
    // Send the goodbye (TTL 0) so browsers forget the hub at once, then close the socket.
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 1000);
      bonjour.unpublishAll(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    await new Promise<void>((resolve) => bonjour.destroy(() => resolve()));
  }
}
