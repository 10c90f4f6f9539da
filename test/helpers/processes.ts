/**
 * Helpers for integration tests that run the real `firefly` command as separate
 * processes on loopback: temp folders, free ports, log lines, node reports, and
 * reading a node's store back after it exited.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StoreUsage } from '../../src/node/chunk-store.js';
import type { SyncReport } from '../../src/node/library-sync.js';
import { fileURLToPath } from 'node:url';
import { libraryClient } from '../../src/protocol/data-plane.js';
import { openNodeDb } from '../../src/node/node-db.js';
import { ChunkStore } from '../../src/node/chunk-store.js';
import { LibraryMirror, type MirrorEntry } from '../../src/node/library-mirror.js';
import type { ChangesReply__Output } from '../../src/generated/firefly/v1/ChangesReply.js';
import type { LibraryEntry__Output } from '../../src/generated/firefly/v1/LibraryEntry.js';

/** The repository root (this file runs from dist/test/helpers/). */
export const REPO_ROOT = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../../' : '../../', import.meta.url));
export const CLI = join(REPO_ROOT, 'dist', 'src', 'cli', 'firefly.js');

/** One pino log line, as the processes write them on stderr. */
export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** What a `firefly node --once` prints on stdout. */
export interface NodeReport extends SyncReport {
  store: StoreUsage;
}

const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();

// Last resort: never leave a hub running when the test process goes away.
process.once('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  // …nor a temp folder: files whose tests call no cleanup(), or made theirs after it ran.
  if (process.env.FIREFLY_TEST_KEEP) return;
  for (const d of tempDirs) {
    try {
      rmSync(d, { recursive: true, force: true, maxRetries: 2 });
    } catch {
      // A process killed just now may still be writing there; nothing more to do at exit.
    }
  }
});

export async function tempDir(prefix = 'firefly-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

/** Stops every process these helpers started and removes their temp folders; for `after` hooks. */
export async function cleanup(): Promise<void> {
  await Promise.all([...children].map((c) => stopProcess(c)));
  if (!process.env.FIREFLY_TEST_KEEP) await Promise.all([...tempDirs].map((d) => rm(d, { recursive: true, force: true })));
  tempDirs.clear();
}

/** A TCP port nobody listens on right now (bind port 0, read it, let it go). */
/**
 * Ports are picked at random below Linux's ephemeral range (32768–60999): a port the
 * kernel hands out for "port 0" or an outgoing connection elsewhere on the machine can
 * never take it between our check and the hub's bind. Ports given out once in this
 * process are not given out again.
 */
const LOW_PORT = 20_000;
const HIGH_PORT = 32_000;
const handedOut = new Set<number>();

function tryTcp(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

function tryUdp(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    socket.once('error', () => {
      socket.close();
      resolve(false);
    });
    socket.bind(port, host, () => socket.close(() => resolve(true)));
  });
}

async function pickPort(free: (port: number) => Promise<boolean>): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = LOW_PORT + Math.floor(Math.random() * (HIGH_PORT - LOW_PORT));
    if (handedOut.has(port)) continue;
    if (await free(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free port found between ${LOW_PORT} and ${HIGH_PORT}`);
}

/** A TCP port nobody listens on right now. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return pickPort((port) => tryTcp(port, host));
}

/** A UDP port nobody listens on right now. */
export function freeUdpPort(host = '127.0.0.1'): Promise<number> {
  return pickPort((port) => tryUdp(port, host));
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` until it returns something other than undefined/false, or fails after timeoutMs. */
export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${(lastErr as Error).message})` : ''}`);
    await delay(everyMs);
  }
}

async function stopProcess(child: ChildProcess, timeoutMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    children.delete(child);
    return;
  }
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
  children.delete(child);
}

/** A running `firefly` process whose stderr log lines are collected as they come. */
export class FireflyProcess {
  readonly logs: LogLine[] = [];
  /** stderr lines that are not JSON (e.g. "firefly: ..." errors). */
  readonly rawStderr: string[] = [];
  stdout = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: { match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];

  constructor(readonly child: ChildProcess) {
    children.add(child);
    let buf = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (text: string) => {
      buf += text;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        this.onLine(line);
      }
    });
    child.stderr!.on('end', () => {
      if (buf) this.onLine(buf);
    });
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (text: string) => (this.stdout += text));
    this.exited = new Promise((resolve) =>
      child.once('close', (code, signal) => {
        children.delete(child);
        resolve({ code, signal });
      }),
    );
  }

  private onLine(line: string): void {
    let parsed: LogLine | undefined;
    try {
      parsed = JSON.parse(line) as LogLine;
    } catch {
      this.rawStderr.push(line);
      return;
    }
    this.logs.push(parsed);
    this.waiters = this.waiters.filter((w) => {
      if (!w.match(parsed)) return true;
      w.resolve(parsed);
      return false;
    });
  }

  /** The first log line (already seen or still to come) that matches. */
  waitForLog(match: string | ((l: LogLine) => boolean), timeoutMs = 30_000): Promise<LogLine> {
    const pred = typeof match === 'string' ? (l: LogLine) => l.msg === match : match;
    const seen = this.logs.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = { match: pred, resolve: (l: LogLine) => (clearTimeout(timer), resolve(l)) };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no log line matching ${String(match)} within ${timeoutMs} ms; last lines:\n${this.tail()}`));
      }, timeoutMs);
      this.waiters.push(waiter);
      void this.exited.then(({ code, signal }) => {
        if (!this.waiters.includes(waiter)) return;
        this.waiters = this.waiters.filter((w) => w !== waiter);
        clearTimeout(timer);
        reject(new Error(`process exited (code ${code}, signal ${signal}) before a log line matching ${String(match)}; last lines:\n${this.tail()}`));
      });
    });
  }

  tail(n = 15): string {
    return [...this.logs.slice(-n).map((l) => JSON.stringify(l)), ...this.rawStderr.slice(-n)].join('\n');
  }

  stop(): Promise<void> {
    return stopProcess(this.child);
  }
}

/** Starts `node dist/src/cli/firefly.js ARGS`. */
export function firefly(args: string[], env: NodeJS.ProcessEnv = {}): FireflyProcess {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: REPO_ROOT,
    env: { ...stripFireflyEnv(process.env), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new FireflyProcess(child);
}

/** The tests must not pick up a developer's FIREFLY_* settings. */
function stripFireflyEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (!k.startsWith('FIREFLY_')) out[k] = v;
  return out;
}

let mqttFlags: boolean | undefined;
let deviceFlags: boolean | undefined;

/**
 * Flags that keep a test hub's other listeners on free loopback ports too. A hub with an
 * embedded MQTT broker would otherwise take port 1883 and collide with the next test hub.
 */
export async function isolationArgs(): Promise<string[]> {
  mqttFlags ??= spawnSync(process.execPath, [CLI, 'hub', '--help'], { encoding: 'utf8' }).stdout.includes('--mqtt-port');
  const mqtt = mqttFlags ? ['--mqtt-host', '127.0.0.1', '--mqtt-port', '0'] : [];
  // The clock exchange's UDP port (default 7421) would collide the same way.
  // And the web page's port (default 8081).
  // And no look-out for Cast and Sonos speakers (mDNS, SSDP) beyond loopback.
  deviceFlags ??= spawnSync(process.execPath, [CLI, 'hub', '--help'], { encoding: 'utf8' }).stdout.includes('--no-device-discovery');
  return [...mqtt, '--clock-port', '0', '--http-host', '127.0.0.1', '--http-port', '0', ...(deviceFlags ? ['--no-device-discovery'] : [])];
}

export interface HubHandle {
  proc: FireflyProcess;
  port: number;
  /** host:port for nodes and ctl. */
  address: string;
  dataDir: string;
  library: string[];
  stop(): Promise<void>;
}

/** Runs a hub on a free loopback port and waits for "library indexed". */
export async function startHub(options: { library: string[]; dataDir?: string; settleMs?: number; extraArgs?: string[]; waitIndexed?: boolean }): Promise<HubHandle> {
  const dataDir = options.dataDir ?? (await tempDir('firefly-hub-'));
  // Port 0: the hub binds whatever is free and logs it, so no other process can race us to it.
  const proc = firefly([
    'hub',
    '--library', options.library.join(':'),
    '--data-dir', dataDir,
    '--grpc-host', '127.0.0.1',
    '--grpc-port', '0',
    '--settle-ms', String(options.settleMs ?? 300),
    ...(await isolationArgs()),
    ...(options.extraArgs ?? []),
  ]);
  const listening = await proc.waitForLog('data plane (gRPC) listening', 20_000);
  const port = Number(listening.port);
  if (!(port > 0)) throw new Error(`hub did not say which gRPC port it bound: ${JSON.stringify(listening)}`);
  if (options.waitIndexed !== false) await proc.waitForLog('library indexed', 60_000);
  return { proc, port, address: `127.0.0.1:${port}`, dataDir, library: options.library, stop: () => proc.stop() };
}

/** Runs `firefly node --once` to completion and returns its report. */
export async function syncOnce(hub: string, dataDir: string, extraArgs: string[] = [], timeoutMs = 60_000): Promise<{ report: NodeReport; proc: FireflyProcess }> {
  const proc = firefly(['node', '--once', '--hub', hub, '--data-dir', dataDir, ...extraArgs]);
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), timeoutMs);
  const { code, signal } = await proc.exited;
  clearTimeout(timer);
  if (code !== 0) throw new Error(`firefly node --once exited with code ${code} signal ${signal}; stdout: ${proc.stdout}\n${proc.tail()}`);
  const lines = proc.stdout.trim().split('\n');
  return { report: JSON.parse(lines[lines.length - 1]) as NodeReport, proc };
}

/** One line of `firefly ctl library --json`. */
export interface CtlEntry {
  id: number;
  path: string;
  root: string;
  status: 'OK' | 'FAILED' | 'UNSUPPORTED';
  error?: string;
  format: string;
  title?: string;
  artist?: string;
  album?: string;
  duration?: number;
}

/** Runs `firefly ctl library --json [--failed]` against a hub. */
export async function ctlLibrary(hub: string, failed = false): Promise<CtlEntry[]> {
  const proc = firefly(['ctl', 'library', '--hub', hub, '--json', ...(failed ? ['--failed'] : [])]);
  const { code } = await proc.exited;
  if (code !== 0) throw new Error(`firefly ctl library exited with ${code}: ${proc.rawStderr.join('\n')}`);
  return proc.stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as CtlEntry);
}

/** Every entry the hub reports through the Changes call (removed ones included), and its version. */
export async function hubChanges(address: string, since = 0, token?: string): Promise<{ version: number; entries: LibraryEntry__Output[] }> {
  // A hub with credentials on needs a token (docs/security.md).
  const client = libraryClient(address, undefined, token ? { token: () => token } : undefined);
  try {
    const entries: LibraryEntry__Output[] = [];
    let version = since;
    let libraryVersion = 0;
    for (;;) {
      const reply = await new Promise<ChangesReply__Output>((resolve, reject) =>
        client.Changes({ sinceVersion: String(version) }, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res!))),
      );
      entries.push(...reply.entries);
      version = Number(reply.pageVersion);
      libraryVersion = Number(reply.libraryVersion);
      if (!reply.more) break;
    }
    return { version: libraryVersion, entries };
  } finally {
    client.close();
  }
}

/** The hub's live entry at `path`, if any. */
export async function hubEntry(address: string, path: string): Promise<LibraryEntry__Output | undefined> {
  const { entries } = await hubChanges(address);
  return entries.find((e) => !e.removed && e.path === path);
}

/** Opens a node's data folder (after the node exited) and hands its mirror and store to `fn`. */
export async function withNodeStore<T>(dataDir: string, fn: (mirror: LibraryMirror, store: ChunkStore) => Promise<T>): Promise<T> {
  const db = openNodeDb(dataDir);
  const store = new ChunkStore(db, dataDir);
  try {
    return await fn(new LibraryMirror(db), store);
  } finally {
    await store.close();
    db.close();
  }
}

export async function streamToBuffer(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of stream) parts.push(p as Buffer);
  return Buffer.concat(parts);
}

/** A node's mirror entries (read from its data folder). */
export function mirrorEntries(dataDir: string): Promise<MirrorEntry[]> {
  return withNodeStore(dataDir, async (mirror) => mirror.entries());
}

/**
 * Reassembles every playable track from the node's store and compares it with the file
 * in the library. Returns the paths compared; throws on the first difference.
 */
export async function verifyNodeCopies(dataDir: string): Promise<{ path: string; size: number; chunks: number }[]> {
  return withNodeStore(dataDir, async (mirror, store) => {
    const out: { path: string; size: number; chunks: number }[] = [];
    for (const e of mirror.entries()) {
      if (e.status !== 'OK') continue;
      if (!e.contentId) throw new Error(`${e.path}: OK entry without content id`);
      const m = mirror.manifest(e.contentId);
      if (!m) throw new Error(`${e.path}: no manifest in the node's mirror`);
      const copy = await streamToBuffer(store.stream(m.chunks));
      const original = await readFile(join(e.root, e.path));
      if (copy.length !== original.length || !copy.equals(original)) {
        throw new Error(`${e.path}: reassembled copy (${copy.length} bytes) differs from the file (${original.length} bytes)`);
      }
      out.push({ path: e.path, size: copy.length, chunks: m.chunks.length });
    }
    return out;
  });
}
