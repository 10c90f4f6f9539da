import { status } from '@grpc/grpc-js';
import type { HubConfig } from '../../src/config/schema.js';
import type { Logger } from '../../src/log.js';
import { readPem, serverAuth, peerHost, type AccessToken } from '../../src/protocol/access.js';
import { isLoopbackHost } from '../discovery/advertiser.js';
import { Credentials, type Principal } from './credentials.js';
import { StreamSigner } from './stream-urls.js';
import { RateLimiter } from '../../src/transfer/rate-limit.js';
import type { ServerInterceptor } from '@grpc/grpc-js';

/** Does this hub need credentials? `auto`: yes as soon as any listener is reachable beyond loopback. */
export function authRequired(config: HubConfig): { on: boolean; reason: string } {
  const mode = config.security.auth;
  if (mode !== 'auto') return { on: mode === 'on', reason: `security.auth is ${mode}` };
  const listeners: [string, string][] = [
    ['grpc.host', config.grpc.host],
    ['http.host', config.http.host],
    ...(config.mqtt.url ? [] : ([['mqtt.host', config.mqtt.host]] as [string, string][])),
  ];
  const open = listeners.filter(([, host]) => !isLoopbackHost(host));
  return open.length > 0
    ? { on: true, reason: `${open.map(([s, h]) => `${s} ${h}`).join(', ')} reachable beyond loopback` }
    : { on: false, reason: 'every listener is on loopback' };
}

/**
 * The hub's security in one place: whether credentials are required, the credentials
 * themselves (made on first start, shown once), the TLS certificate, and the gRPC check
 * with its rate limit. The broker, the data plane and the HTTP server take their parts
 * from here.
 */
export class HubSecurity {
  /** Present when auth is on. */
  readonly credentials?: Credentials;
  readonly tls?: { cert: Buffer; key: Buffer };
  readonly grpcLimit: RateLimiter;
  /** Present when auth is on: signs the audio stream URLs handed to Cast and Sonos devices. */
  readonly streamSigner?: StreamSigner;

  constructor(
    readonly config: HubConfig,
    dataDir: string,
    private readonly log: Logger,
  ) {
    const { on, reason } = authRequired(config);
    if (on) {
      this.credentials = Credentials.inDataDir(dataDir);
      this.streamSigner = new StreamSigner(this.credentials);
      if (this.credentials.created) {
        const admin = this.credentials.tokenFor('controller:admin');
        // Shown once: the file keeps only the secret, and this token is derived from it.
        log.warn(
          { token: admin, file: this.credentials.file },
          'credentials created. Controller token (shown once; keep it): use it with `firefly ctl --token` and to log in to the web page. Add nodes with `firefly ctl credentials add-node --data-dir <hub data folder>` (docs/security.md)',
        );
        // The JSON line above is for logs and tests; a person starting the hub by hand reads stderr.
        process.stderr.write(firstStartNotice(admin, this.credentials.file));
      }
    }
    log.info({ auth: on, reason, tls: Boolean(config.security.tls) }, on ? 'credentials required' : 'credentials not required');
    const tls = config.security.tls;
    if (tls) this.tls = { cert: readPem(tls.certFile, 'security.tls.certFile'), key: readPem(tls.keyFile, 'security.tls.keyFile') };
    const rate = on ? config.security.grpcCallsPerSecond : 0;
    this.grpcLimit = new RateLimiter(rate, rate * 2);
  }

  get authOn(): boolean {
    return this.credentials !== undefined;
  }

  /** The hub's own MQTT credentials (its control channel to the embedded broker). */
  hubToken(): AccessToken | undefined {
    return this.credentials?.issue('hub');
  }

  /** What nodes present to each other's chunk servers; handed out in the welcome. */
  swarmToken(): string | undefined {
    return this.credentials?.issue('swarm').secret;
  }

  /**
   * The clock exchange's key for a user: a node's credential secret when the name is a
   * node's and not revoked, else undefined. Kept a second per user, so a node's packets
   * cost one MAC to check, not a derivation and a revocation check each.
   */
  clockSecret(user: string): string | undefined {
    const credentials = this.credentials;
    if (!credentials) return undefined;
    const now = performance.now();
    const hit = this.clockKeys.get(user);
    if (hit && now - hit.at < 1000) return hit.secret;
    let secret: string | undefined;
    try {
      const issued = credentials.issue(user).secret;
      secret = credentials.verify(user, issued)?.kind === 'node' ? issued : undefined;
    } catch {
      secret = undefined; // not a credential name
    }
    if (this.clockKeys.size >= 10_000) this.clockKeys.clear();
    this.clockKeys.set(user, { secret, at: now });
    return secret;
  }

  private readonly clockKeys = new Map<string, { secret: string | undefined; at: number }>();

  /** Whom a token belongs to; undefined when auth is off. */
  who(token: string | undefined): Principal | undefined {
    return this.credentials?.verifyToken(token);
  }

  /** The data plane's gate: a token of the hub, a node or a controller, and a per-address call rate. */
  grpcInterceptors(): ServerInterceptor[] {
    const credentials = this.credentials;
    if (!credentials) return [];
    return [
      serverAuth((token, peer, method) => {
        const host = peerHost(peer);
        if (!this.grpcLimit.allow(host)) return { code: status.RESOURCE_EXHAUSTED, details: `too many calls from ${host}; limit ${this.grpcLimit.perSecond}/s (security.grpcCallsPerSecond)` };
        if (!token) {
          this.log.warn({ peer, method }, 'gRPC call refused: no token');
          return { code: status.UNAUTHENTICATED, details: 'this hub requires a token (Authorization: Bearer USER:SECRET; see docs/security.md)' };
        }
        const who = credentials.verifyToken(token);
        if (!who || who.kind === 'swarm') {
          this.log.warn({ peer, method }, 'gRPC call refused: bad token');
          return { code: status.UNAUTHENTICATED, details: 'token refused' };
        }
        return undefined;
      }),
    ];
  }
}

/** The plain-text notice of the first start's controller token, framed so a person notices it among JSON log lines. */
export function firstStartNotice(token: string, file: string): string {
  const rule = '='.repeat(72);
  return [
    '',
    rule,
    '  Firefly: credentials created (first start). Controller token, shown once:',
    '',
    `    ${token}`,
    '',
    '  Keep it: log in to the web page with it and use `firefly ctl --token <token>`.',
    `  The secret it derives from is in ${file} (mode 0600).`,
    '  Add nodes: firefly ctl credentials add-node --data-dir <hub data folder>',
    '  (docs/security.md)',
    rule,
    '',
    '',
  ].join('\n');
}
