import { isIPv4 } from 'node:net';
import { Bonjour, type Service } from 'bonjour-service';
import type { Logger } from '../log.js';
import { decodeTxt, SERVICE_NAME, SERVICE_PROTOCOL, SERVICE_TYPE, type HubAdvert } from './txt.js';

export interface DiscoveredHub extends HubAdvert {
  /** The address to reach the hub at (IPv4 preferred; IPv6 in brackets-free form). */
  address: string;
  /** Every address the hub advertised. */
  addresses: string[];
}

export interface DiscoverOptions {
  /** Give up after this long. */
  timeoutMs: number;
  /** Only a hub advertising this instance name (case-insensitive); default: the first one found. */
  name?: string;
}

export class HubNotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HubNotFoundError';
  }
}

/** The address a node should use: the one the answer came from if the hub listed it, else its first IPv4. */
export function pickAddress(service: Pick<Service, 'addresses' | 'referer' | 'host'>): string {
  const addresses = service.addresses ?? [];
  const from = service.referer?.address;
  if (from && (addresses.length === 0 || addresses.includes(from))) return from;
  return addresses.find((a) => isIPv4(a)) ?? addresses[0] ?? from ?? service.host;
}

/**
 * Browses the LAN for a hub (`_firefly._tcp`) and resolves with the first one that
 * answers (or the one named), or rejects with HubNotFoundError after the timeout.
 * Queries are repeated every second while waiting: a lost multicast packet costs a second,
 * not the whole wait.
 */
export function discoverHub(options: DiscoverOptions, log: Logger): Promise<DiscoveredHub> {
  return new Promise((resolve, reject) => {
    let done = false;
    const ignored = new Set<string>();
    const bonjour = new Bonjour({}, (err: Error) => log.debug({ err: err.message }, 'mDNS send failed'));
    // multicast-dns emits 'error' when it cannot bind port 5353; unhandled it would crash the node.
    const mdns = (bonjour as unknown as { server: { mdns: NodeJS.EventEmitter } }).server.mdns;
    let socketError: string | undefined;
    mdns.on('error', (err: Error) => {
      socketError = err.message;
      finish(new HubNotFoundError(`cannot browse for a hub over mDNS: ${err.message} (set the hub's address: --hub HOST[:PORT] or FIREFLY_HUB)`));
    });
    mdns.on('warning', (err: Error) => log.debug({ err: err.message }, 'mDNS warning'));
    const browser = bonjour.find({ type: SERVICE_TYPE, protocol: SERVICE_PROTOCOL });
    const requery = setInterval(() => browser.update(), 1000);
    const timer = setTimeout(() => {
      const wanted = options.name ? ` named "${options.name}"` : '';
      const seen = ignored.size ? `; seen but not used: ${[...ignored].join(', ')}` : '';
      finish(
        new HubNotFoundError(
          `no Firefly hub${wanted} answered on the LAN (mDNS ${SERVICE_NAME}) within ${options.timeoutMs / 1000} s${seen}${socketError ? ` (${socketError})` : ''}; ` +
            'is the hub running with advertising on, and is multicast allowed here? Otherwise give its address: --hub HOST[:PORT] or FIREFLY_HUB',
        ),
      );
    }, options.timeoutMs);

    function finish(result: DiscoveredHub | Error): void {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearInterval(requery);
      browser.stop();
      bonjour.destroy();
      if (result instanceof Error) reject(result);
      else resolve(result);
    }

    const consider = (service: Service) => {
      if (done) return;
      const decoded = decodeTxt(service.name, service.txt);
      if (!decoded.ok) {
        if (!ignored.has(service.name)) log.warn({ hub: service.name, err: decoded.message }, 'ignoring an mDNS answer that is not a usable Firefly hub');
        ignored.add(service.name);
        return;
      }
      if (options.name && service.name.toLowerCase() !== options.name.toLowerCase()) {
        if (!ignored.has(service.name)) log.info({ hub: service.name, wanted: options.name }, 'found another hub; still looking');
        ignored.add(service.name);
        return;
      }
      finish({ ...decoded.advert, address: pickAddress(service), addresses: service.addresses ?? [] });
    };
    browser.on('up', consider);
    // A hub first seen with an old TXT record (or none yet) may be usable after an update.
    browser.on('txt-update', consider);
    browser.on('srv-update', consider);
  });
}
