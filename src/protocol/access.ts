import { InterceptingCall, Metadata, ServerInterceptingCall, type Interceptor, type ServerInterceptor, type status as Status } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';

/**
 * Credentials as clients carry them (see docs/security.md). A token is `USER:SECRET`:
 * USER is who the client is (`node:<uuid>`, `controller:<name>`, `hub`), SECRET the
 * hub's HMAC of that name. Over MQTT the two halves are the user name and password; over
 * gRPC and HTTP the whole token travels as `Authorization: Bearer USER:SECRET`.
 */
export interface AccessToken {
  user: string;
  secret: string;
}

/** The secret half never holds a colon (base64url), so the last colon splits the two. */
export function parseToken(text: string): AccessToken | undefined {
  const at = text.lastIndexOf(':');
  if (at <= 0 || at === text.length - 1 || text.length > 512) return undefined;
  const user = text.slice(0, at);
  const secret = text.slice(at + 1);
  if (!/^[A-Za-z0-9_-]+$/.test(secret) || /[\s\u0000]/.test(user)) return undefined;
  return { user, secret };
}

export function formatToken(token: AccessToken): string {
  return `${token.user}:${token.secret}`;
}

/** The node uuid a `node:<uuid>` token names, if it is one. */
export function nodeUuidOf(user: string): string | undefined {
  return user.startsWith('node:') && user.length > 5 ? user.slice(5) : undefined;
}

/** The gRPC metadata key (and HTTP header) that carries a token. */
export const AUTH_METADATA = 'authorization';

export function bearer(token: string): string {
  return `Bearer ${token}`;
}

/** The token of an `Authorization: Bearer …` value, or undefined. */
export function fromBearer(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const m = /^Bearer\s+(\S+)$/i.exec(value.trim());
  return m?.[1];
}

/**
 * A client interceptor that puts the token on every call. It is read per call, so a
 * token learned later (the swarm token a node gets in its welcome) is used from then on.
 */
export function tokenInterceptor(token: () => string | undefined): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        const t = token();
        if (t) metadata.set(AUTH_METADATA, bearer(t));
        next(metadata, listener);
      },
    });
}

/** How a client reaches a server: the token it presents and whether it speaks TLS (with which CA). */
export interface ClientAccess {
  token?: () => string | undefined;
  /** Use TLS; `ca` (PEM) trusts that certificate authority, else the system's. */
  tls?: { ca?: Buffer };
}

/** Reads a PEM file named in a setting, with the setting in the error. */
export function readPem(file: string, setting: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new Error(`cannot read ${file} (setting ${setting}): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

export type ServerCheck = (token: string | undefined, peer: string, method: string) => { code: Status; details: string } | undefined;

/**
 * A server interceptor that checks each call's token before any handler sees it: a call
 * without one, or with one the check refuses, ends with the check's status (e.g.
 * UNAUTHENTICATED) and never reaches the service.
 */
export function serverAuth(check: ServerCheck): ServerInterceptor {
  return (method, call) =>
    new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, mdNext) {
            const value = metadata.get(AUTH_METADATA)[0];
            const refusal = check(fromBearer(value?.toString()), call.getPeer(), method.path);
            if (refusal) call.sendStatus({ ...refusal, metadata: new Metadata() });
            else mdNext(metadata);
          },
        });
      },
    });
}

/** The host of a gRPC peer string (`ipv4:1.2.3.4:5678`, `ipv6:[::1]:5678`, `1.2.3.4:5678`): what rate limits key on. */
export function peerHost(peer: string): string {
  const p = peer.replace(/^ipv[46]:/, '');
  const v6 = /^\[(.*)\]:\d+$/.exec(p);
  if (v6) return v6[1];
  const at = p.lastIndexOf(':');
  return at > 0 && p.indexOf(':') === at ? p.slice(0, at) : p;
}
