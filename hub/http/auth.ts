import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Logger } from '../../src/log.js';
import { fromBearer } from '../../src/protocol/access.js';
import { sameSecret, type Credentials, type Principal } from '../security/credentials.js';
import { RateLimiter } from '../../src/transfer/rate-limit.js';

export const SESSION_COOKIE = 'firefly_session';
const SESSION_DAYS = 30;
const loginSchema = z.strictObject({ token: z.string().min(1).max(512) });

export interface HttpAuthOptions {
  /** Absent: no login needed (auth off). */
  credentials?: Credentials;
  /** Requests per second one address may make (bursts of twice that); 0: no limit. */
  requestsPerSecond: number;
  /** Cookies get the Secure flag (served over HTTPS). */
  secure: boolean;
  log: Logger;
}

/** Routes may set `config: { public: true }` (no login: device streams with their own signed URL) or `{ auth: true }` (login even for a page GET). */
interface RouteAuthConfig {
  public?: boolean;
  auth?: boolean;
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** A session cookie: `v1.<expires ms>.<nonce>.<MAC>`, signed with the hub's secret, so it survives a hub restart. */
export function makeSession(credentials: Credentials, user: string, now = Date.now()): string {
  const body = `v1.${now + SESSION_DAYS * 86_400_000}.${randomBytes(9).toString('base64url')}.${Buffer.from(user).toString('base64url')}`;
  return `${body}.${credentials.mac(body)}`;
}

export function checkSession(credentials: Credentials, value: string | undefined, now = Date.now()): Principal | undefined {
  if (!value || value.length > 512) return undefined;
  const at = value.lastIndexOf('.');
  const body = value.slice(0, at);
  const parts = body.split('.');
  if (at <= 0 || parts.length !== 4 || parts[0] !== 'v1' || !sameSecret(value.slice(at + 1), credentials.mac(body))) return undefined;
  if (!(Number(parts[1]) > now)) return undefined;
  const user = Buffer.from(parts[3], 'base64url').toString();
  // A revoked controller's sessions end with it: the user is checked again, not just the MAC.
  return credentials.verify(user, credentials.issue(user).secret);
}

/** Which requests need a login: the API and anything that is not a page GET, unless the route says otherwise. */
function needsLogin(request: FastifyRequest): boolean {
  const config = (request.routeOptions.config ?? {}) as RouteAuthConfig;
  if (config.public) return false;
  if (config.auth) return true;
  // The route's own pattern, not the raw URL: the router decodes percent-escapes, so
  // `/%61pi/state` reaches `/api/state` while its raw text does not start with /api/.
  // Unrouted requests (404) are judged on their decoded path, failing closed.
  const pattern = request.routeOptions.url;
  let path = pattern ?? request.url.split('?')[0];
  if (pattern === undefined) {
    try {
      path = decodeURIComponent(path);
    } catch {
      return true;
    }
  }
  if (path === '/api/login' || path === '/api/logout') return false;
  return path.startsWith('/api/') || path === '/api' || (request.method !== 'GET' && request.method !== 'HEAD');
}

/**
 * The HTTP server's gate, added to the root instance before any route plugin so it
 * covers them all: a per-address rate limit, then (with auth on) a login for the REST
 * API: `Authorization: Bearer <controller token>`, or the HttpOnly session cookie
 * `POST /api/login {"token": …}` sets. The page's own files stay public (they hold no
 * data) so it can show its login form on a 401.
 */
export function installHttpAuth(app: FastifyInstance, options: HttpAuthOptions): void {
  const limit = new RateLimiter(options.requestsPerSecond, options.requestsPerSecond * 2);
  const { credentials, log } = options;
  app.decorateRequest('principal', null);
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    if (!limit.allow(request.ip)) {
      return reply.code(429).header('retry-after', '1').send({ error: { code: 'too-many-requests', message: `more than ${limit.perSecond} requests per second from ${request.ip} (security.httpRequestsPerSecond)` } });
    }
    if (!credentials || !needsLogin(request)) return;
    const token = fromBearer(request.headers.authorization);
    const who = token !== undefined ? credentials.verifyToken(token) : checkSession(credentials, cookieValue(request.headers.cookie, SESSION_COOKIE));
    if (who && (who.kind === 'controller' || who.kind === 'hub')) {
      (request as FastifyRequest & { principal: Principal }).principal = who;
      return;
    }
    log.debug({ url: request.url, ip: request.ip, bearer: token !== undefined }, 'HTTP request refused: login required');
    return reply
      .code(401)
      .header('www-authenticate', 'Bearer realm="firefly"')
      .send({ error: { code: 'unauthorized', message: token !== undefined ? 'token refused' : 'log in first: POST /api/login {"token": "<controller token>"} or send Authorization: Bearer <token>' } });
  });

  app.post('/api/login', { bodyLimit: 4096, config: { public: true } }, async (request, reply) => {
    const body = loginSchema.safeParse(request.body);
    if (!body.success) {
      return reply.code(400).send({ error: { code: 'invalid', message: `expected {"token": "<controller token>"}: ${body.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ')}` } });
    }
    if (!credentials) return reply.send({ ok: true, auth: false });
    const who = credentials.verifyToken(body.data.token);
    if (!who || (who.kind !== 'controller' && who.kind !== 'hub')) {
      log.warn({ ip: request.ip }, 'HTTP login refused');
      return reply.code(401).send({ error: { code: 'unauthorized', message: 'token refused' } });
    }
    const user = who.kind === 'controller' ? `controller:${who.name}` : 'hub';
    const cookie = [`${SESSION_COOKIE}=${makeSession(credentials, user)}`, 'Path=/', 'HttpOnly', 'SameSite=Strict', `Max-Age=${SESSION_DAYS * 86_400}`, ...(options.secure ? ['Secure'] : [])];
    return reply.header('set-cookie', cookie.join('; ')).send({ ok: true, auth: true, user });
  });

  app.post('/api/logout', { config: { public: true } }, async (_request, reply) =>
    reply.header('set-cookie', `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`).send({ ok: true }),
  );
}
