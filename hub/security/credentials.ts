import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { formatToken, nodeUuidOf, parseToken, type AccessToken } from '../../src/protocol/access.js';

/** Who a client is, once its credentials checked out. */
export type Principal =
  | { kind: 'hub' }
  | { kind: 'node'; uuid: string }
  | { kind: 'controller'; name: string }
  /** Node chunk servers accept this from peers; the hub hands it to nodes in their welcome. */
  | { kind: 'swarm' };

interface CredentialsFile {
  version: 1;
  /** 32 random bytes, base64url: every credential is an HMAC of its user name under it. */
  secret: string;
  createdAt: string;
  /** User names refused even with the right secret (`firefly ctl credentials revoke`). */
  revoked: string[];
}

export const CREDENTIALS_FILE = 'credentials.json';

const NAME = /^[A-Za-z0-9._-]{1,64}$/;
const UUID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Constant-time comparison of two secrets. */
export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Writes the file whole or not at all, readable by its owner only. */
function writePrivate(file: string, text: string): void {
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

/**
 * The hub's credentials: one secret in `<dataDir>/credentials.json` (mode 0600), made on
 * first start. Every credential is derived from it (HMAC-SHA256 of the user name), so
 * the hub keeps no list of issued credentials, a node's credential names its uuid (and
 * cannot act as any other node), and anyone who can read the file can issue more
 * (`firefly ctl credentials add-node|add-controller` on the hub machine).
 */
export class Credentials {
  private data: CredentialsFile;
  private mtimeMs = 0;
  private lastStat = 0;
  /** True when this call made the file (first start): the caller shows the admin token once. */
  readonly created: boolean;

  private constructor(
    readonly file: string,
    created: boolean,
  ) {
    this.created = created;
    this.data = this.read();
  }

  /** Opens the data folder's credentials, making them on first use. */
  static inDataDir(dataDir: string, options: { create?: boolean } = {}): Credentials {
    const file = join(dataDir, CREDENTIALS_FILE);
    let created = false;
    try {
      statSync(file);
    } catch {
      if (options.create === false) throw new Error(`no credentials in ${dataDir} (${CREDENTIALS_FILE}): start the hub with this data folder once, or pass the hub's --data-dir`);
      mkdirSync(dataDir, { recursive: true });
      const fresh: CredentialsFile = { version: 1, secret: randomBytes(32).toString('base64url'), createdAt: new Date().toISOString(), revoked: [] };
      writePrivate(file, `${JSON.stringify(fresh, null, 2)}\n`);
      created = true;
    }
    return new Credentials(file, created);
  }

  private read(): CredentialsFile {
    const st = statSync(this.file);
    // Secrets readable by others are not secrets: refuse rather than run with them.
    if ((st.mode & 0o077) !== 0) throw new Error(`${this.file} is readable by other users (mode ${(st.mode & 0o777).toString(8)}); run: chmod 600 ${this.file}`);
    let parsed: CredentialsFile;
    try {
      parsed = JSON.parse(readFileSync(this.file, 'utf8')) as CredentialsFile;
    } catch (err) {
      throw new Error(`${this.file} is not valid JSON: ${(err as Error).message}`);
    }
    if (parsed.version !== 1 || typeof parsed.secret !== 'string' || Buffer.from(parsed.secret, 'base64url').length < 32) {
      throw new Error(`${this.file}: expected {"version":1,"secret":"<32+ bytes, base64url>"}; remove it to make new credentials (every node and controller then needs new ones)`);
    }
    this.mtimeMs = st.mtimeMs;
    return { ...parsed, revoked: Array.isArray(parsed.revoked) ? parsed.revoked.filter((r) => typeof r === 'string') : [] };
  }

  /** Picks up revocations made by `firefly ctl credentials revoke` while the hub runs (checked at most once a second). */
  private refresh(): void {
    const now = Date.now();
    if (now - this.lastStat < 1000) return;
    this.lastStat = now;
    try {
      if (statSync(this.file).mtimeMs !== this.mtimeMs) this.data = this.read();
    } catch {
      // Keep what was read: a file being replaced is back in a moment.
    }
  }

  private derive(user: string): string {
    return createHmac('sha256', Buffer.from(this.data.secret, 'base64url')).update(`firefly-credential\u0000${user}`).digest('base64url').slice(0, 32);
  }

  /** The token of a user name; for names that are not valid, an error saying why. */
  issue(user: string): AccessToken {
    if (!principalOf(user)) throw new Error(`${JSON.stringify(user)} is not a credential name: node:<uuid>, controller:<name> (letters, digits, . _ -), hub or swarm`);
    return { user, secret: this.derive(user) };
  }

  tokenFor(user: string): string {
    return formatToken(this.issue(user));
  }

  /** Who these credentials belong to, or undefined when they are wrong or revoked. */
  verify(user: string | undefined, secret: string | undefined): Principal | undefined {
    if (!user || !secret) return undefined;
    const principal = principalOf(user);
    if (!principal) return undefined;
    this.refresh();
    if (this.data.revoked.includes(user)) return undefined;
    return sameSecret(secret, this.derive(user)) ? principal : undefined;
  }

  /** A whole `USER:SECRET` token. */
  verifyToken(text: string | undefined): Principal | undefined {
    const t = text ? parseToken(text) : undefined;
    return t ? this.verify(t.user, t.secret) : undefined;
  }

  /** Refuses a user name from now on, even with the right secret (the running hub notices within a second). */
  revoke(user: string): void {
    if (!principalOf(user)) throw new Error(`${JSON.stringify(user)} is not a credential name`);
    const data = this.read();
    if (!data.revoked.includes(user)) data.revoked.push(user);
    writePrivate(this.file, `${JSON.stringify(data, null, 2)}\n`);
    this.data = this.read();
  }

  /** Keyed MAC of any text under the secret (signed HTTP session cookies). */
  mac(text: string): string {
    return createHmac('sha256', Buffer.from(this.data.secret, 'base64url')).update(`firefly-mac\u0000${text}`).digest('base64url');
  }
}

/** What a user name stands for, or undefined when it is not one Firefly issues. */
export function principalOf(user: string): Principal | undefined {
  if (user === 'hub') return { kind: 'hub' };
  if (user === 'swarm') return { kind: 'swarm' };
  const uuid = nodeUuidOf(user);
  if (uuid !== undefined) return UUID.test(uuid) ? { kind: 'node', uuid } : undefined;
  if (user.startsWith('controller:')) {
    const name = user.slice('controller:'.length);
    return NAME.test(name) ? { kind: 'controller', name } : undefined;
  }
  return undefined;
}
