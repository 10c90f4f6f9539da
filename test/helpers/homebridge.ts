/**
 * Real Homebridge for tests: a storage folder with config.json, a plugin folder holding
 * a symlink homebridge-firefly → this repository, and `homebridge -U … -P … [-I]
 * --strict-plugin-resolution` run with this Node as a separate process (ciao advertiser,
 * bind 127.0.0.1, free ports). The HAP side is read over plain HTTP in insecure mode
 * (`Authorization: <PIN>`), characteristics found by their HAP type, never by fixed iids.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { REPO_ROOT, freePort, tempDir, waitFor } from './processes.js';

const require = createRequire(import.meta.url);
/** HAP-NodeJS as Homebridge uses it: service and characteristic type UUIDs. */
export const hap = require('@homebridge/hap-nodejs') as typeof import('@homebridge/hap-nodejs');

/**
 * The Homebridge to run: the devDependency (2.x), or another install named by
 * FIREFLY_HOMEBRIDGE_BIN (e.g. a Homebridge 1.x's bin/homebridge) to check compatibility.
 */
export const HOMEBRIDGE_BIN = process.env.FIREFLY_HOMEBRIDGE_BIN ?? join(REPO_ROOT, 'node_modules', 'homebridge', 'bin', 'homebridge.js');
export const PIN = '031-45-154';

/** A type UUID in the short form HAP-NodeJS writes for Apple's types (hap-controller gives the long form). */
export function hapType(uuid: string): string {
  return hap.uuid.toShortForm(uuid.length <= 8 ? hap.uuid.toLongForm(uuid) : uuid);
}

export interface HapCharacteristic {
  aid: number;
  iid: number;
  type: string;
  value?: unknown;
  perms: string[];
  status?: number;
}
export interface HapService {
  iid: number;
  type: string;
  primary?: boolean;
  characteristics: HapCharacteristic[];
}
export interface HapAccessory {
  aid: number;
  services: HapService[];
}

export interface BridgeOptions {
  /** The platform block (undefined: config.json has no Firefly block at all). */
  platform?: Record<string, unknown>;
  storage?: string;
  port?: number;
  username?: string;
  insecure?: boolean;
  /** Ports for external accessories. */
  ports?: { start: number; end: number };
  env?: NodeJS.ProcessEnv;
}

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** A random locally administered MAC for the bridge's username. */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0] & 0xfc) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0').toUpperCase()).join(':');
}

export class Bridge {
  readonly lines: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  private constructor(
    readonly child: ChildProcess,
    readonly storage: string,
    readonly port: number,
    readonly username: string,
  ) {
    children.add(child);
    let buf = '';
    const onData = (text: string) => {
      buf += text;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        // Strip colours, keep the line.
        this.lines.push(buf.slice(0, nl).replace(/\u001b\[[0-9;]*m/g, ''));
        buf = buf.slice(nl + 1);
      }
    };
    child.stdout!.setEncoding('utf8').on('data', onData);
    child.stderr!.setEncoding('utf8').on('data', onData);
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        children.delete(child);
        resolve({ code, signal, at: performance.now() });
      }),
    );
  }

  /** Writes the storage folder and starts Homebridge. */
  static async start(options: BridgeOptions = {}): Promise<Bridge> {
    const storage = options.storage ?? (await tempDir('firefly-homebridge-'));
    // Homebridge finds the plugin in a folder of its own (removed with the other temp folders; rm does not follow the link).
    const pluginDir = await tempDir('firefly-homebridge-plugins-');
    await symlink(REPO_ROOT, join(pluginDir, 'homebridge-firefly'));
    const port = options.port ?? (await freePort());
    const username = options.username ?? randomMac();
    const config = {
      bridge: { name: `Firefly Test ${username.slice(-5).replace(':', '')}`, username, port, pin: PIN, bind: ['127.0.0.1'], advertiser: 'ciao' },
      ...(options.ports ? { ports: options.ports } : {}),
      accessories: [],
      platforms: options.platform ? [options.platform] : [],
    };
    await writeFile(join(storage, 'config.json'), JSON.stringify(config, null, 2));
    const args = [HOMEBRIDGE_BIN, '-U', storage, '-P', pluginDir, '--strict-plugin-resolution', '-Q', '-C'];
    if (options.insecure !== false) args.push('-I');
    const child = spawn(process.execPath, args, { cwd: storage, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    return new Bridge(child, storage, port, username);
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The first log line (seen or to come) that matches. */
  waitForLine(match: RegExp | string, timeoutMs = 30_000): Promise<string> {
    const test = (l: string) => (typeof match === 'string' ? l.includes(match) : match.test(l));
    return waitFor(
      `a Homebridge log line matching ${String(match)}`,
      () => {
        const found = this.lines.find(test);
        if (found) return found;
        if (!this.running) throw new Error(`Homebridge exited; last lines:\n${this.tail()}`);
        return undefined;
      },
      timeoutMs,
      50,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n--- Homebridge log ---\n${this.tail(40)}`);
    });
  }

  /** Log lines the plugin wrote (Homebridge prefixes them with the platform's name). */
  pluginLines(): string[] {
    return this.lines.filter((l) => l.includes('[Firefly]'));
  }

  tail(n = 30): string {
    return this.lines.slice(-n).join('\n');
  }

  /** Homebridge's major version, from its start-up line (1 or 2). */
  get major(): number {
    const m = this.lines.map((l) => /Homebridge v(\d+)\.\d+\.\d+ \(HAP v/.exec(l)).find((x) => x !== null);
    return m ? Number(m[1]) : NaN;
  }

  /**
   * The exit code a clean SIGTERM gives: Homebridge 2 exits as soon as everything is
   * closed (0); Homebridge 1 always waits for its 5 s fallback timer and exits 143,
   * even with no plugin configured.
   */
  get cleanExitCode(): number {
    return this.major === 1 ? 143 : 0;
  }

  /** Once the bridge's HAP server answers. */
  async ready(timeoutMs = 60_000): Promise<void> {
    await this.waitForLine(/Homebridge v[\d.]+.* is running on port/, timeoutMs);
  }

  async request(method: 'GET' | 'PUT', path: string, body?: unknown, port = this.port): Promise<{ status: number; json: unknown }> {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      method,
      headers: { Authorization: PIN, 'Content-Type': 'application/hap+json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
    const text = await res.text();
    return { status: res.status, json: text ? (JSON.parse(text) as unknown) : undefined };
  }

  async accessories(port = this.port): Promise<HapAccessory[]> {
    const { status, json } = await this.request('GET', '/accessories', undefined, port);
    if (status !== 200) throw new Error(`GET /accessories answered ${status}: ${JSON.stringify(json)}`);
    return (json as { accessories: HapAccessory[] }).accessories;
  }

  /** GET /characteristics for one characteristic: its value, or its HAP status when it failed. */
  async read(c: { aid: number; iid: number }, port = this.port): Promise<{ value?: unknown; status?: number }> {
    const { json } = await this.request('GET', `/characteristics?id=${c.aid}.${c.iid}`, undefined, port);
    const [got] = (json as { characteristics: { value?: unknown; status?: number }[] }).characteristics;
    return got;
  }

  /** PUT /characteristics; resolves to the HAP status of the write (0: done). */
  async write(c: { aid: number; iid: number }, value: unknown, port = this.port): Promise<number> {
    const { status, json } = await this.request('PUT', '/characteristics', { characteristics: [{ aid: c.aid, iid: c.iid, value }] }, port);
    if (status === 204) return 0;
    const got = (json as { characteristics?: { status?: number }[] } | undefined)?.characteristics?.[0];
    return got?.status ?? -1;
  }

  /** SIGTERM, and how long Homebridge took to exit (ms). */
  async stop(signal: NodeJS.Signals = 'SIGTERM', killAfterMs = 15_000): Promise<{ ms: number; code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.running) {
      const e = await this.exited;
      return { ms: 0, code: e.code, signal: e.signal };
    }
    const t0 = performance.now();
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), killAfterMs);
    const e = await this.exited;
    clearTimeout(timer);
    return { ms: e.at - t0, code: e.code, signal: e.signal };
  }
}

/** The accessory whose primary (or any) service has this type and whose Name is `name`. */
export function findAccessory(accessories: HapAccessory[], serviceType: string, name?: string): HapAccessory | undefined {
  const type = hapType(serviceType);
  const nameType = hapType(hap.Characteristic.Name.UUID);
  return accessories.find((a) =>
    a.services.some((s) => hapType(s.type) === type && (name === undefined || s.characteristics.some((c) => hapType(c.type) === nameType && c.value === name))),
  );
}

export function findService(accessory: HapAccessory, serviceType: string): HapService | undefined {
  return accessory.services.find((s) => hapType(s.type) === hapType(serviceType));
}

export function findCharacteristic(accessory: HapAccessory, serviceType: string, characteristicType: string): HapCharacteristic {
  const service = findService(accessory, serviceType);
  const c = service?.characteristics.find((x) => hapType(x.type) === hapType(characteristicType));
  if (!c) throw new Error(`accessory ${accessory.aid} has no ${characteristicType} in service ${serviceType}: ${JSON.stringify(accessory.services.map((s) => [s.type, s.characteristics.map((x) => x.type)]))}`);
  return { ...c, aid: accessory.aid };
}
