/**
 * Helpers for control-plane tests: a real Mosquitto with a password file, a hub and
 * nodes as real processes, and an MQTT observer that records every message it sees.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connectBroker, endClient, publish, subscribe, whenConnected, type MqttClient } from '../../src/protocol/mqtt-client.js';
import { encode, type CommandReply } from '../../src/protocol/schemas.js';
import { Topics, type CommandName } from '../../src/protocol/topics.js';
import { firefly, freePort, freeUdpPort, tempDir, waitFor, type FireflyProcess } from './processes.js';

const run = promisify(execFile);

/** Where the hub, nodes and test clients meet, and with which credentials. */
export interface BrokerAccess {
  kind: 'embedded' | 'mosquitto';
  /** mqtt://127.0.0.1:PORT */
  url: string;
  port: number;
  username?: string;
  password?: string;
  /** Each test run gets its own topic root, so retained state of one run never leaks into another. */
  prefix: string;
  stop(): Promise<void>;
}

/** Starts Mosquitto on a free loopback port, refusing anyone without the user name and password. */
export async function startMosquitto(): Promise<BrokerAccess> {
  const dir = await tempDir('firefly-mosquitto-');
  const port = await freePort();
  const username = 'firefly';
  const password = randomBytes(9).toString('base64url');
  const passwordFile = join(dir, 'passwords');
  await run('mosquitto_passwd', ['-b', '-c', passwordFile, username, password]);
  // Started as root, mosquitto drops to the "mosquitto" user before it reads the file.
  await chmod(dir, 0o755);
  await chmod(passwordFile, 0o644);
  const conf = join(dir, 'mosquitto.conf');
  await writeFile(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous false',
      `password_file ${passwordFile}`,
      'persistence false',
      // The fuzz test sends bursts of thousands of messages: queue rather than drop.
      'max_queued_messages 0',
      'max_inflight_messages 0',
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const access: BrokerAccess = {
    kind: 'mosquitto',
    url: `mqtt://127.0.0.1:${port}`,
    port,
    username,
    password,
    prefix: `ff${randomBytes(4).toString('hex')}`,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
  process.once('exit', () => child.kill('SIGKILL'));
  await waitFor(
    'mosquitto to accept connections',
    async () => {
      if (child.exitCode !== null) throw new Error(`mosquitto exited: ${stderr}`);
      const probe = new Observer(access);
      try {
        await probe.connect(1000);
        return true;
      } finally {
        await probe.close();
      }
    },
    10_000,
    200,
  );
  return access;
}

/** The embedded broker lives inside the hub: only a port and a prefix to choose. */
export async function embeddedBroker(): Promise<BrokerAccess> {
  const port = await freePort();
  return { kind: 'embedded', url: `mqtt://127.0.0.1:${port}`, port, prefix: `ff${randomBytes(4).toString('hex')}`, stop: async () => undefined };
}

/** Flags that point a hub or node at the broker. */
export function brokerArgs(broker: BrokerAccess, side: 'hub' | 'node'): string[] {
  const args = ['--topic-prefix', broker.prefix];
  if (side === 'hub' && broker.kind === 'embedded') args.push('--mqtt-host', '127.0.0.1', '--mqtt-port', String(broker.port));
  else args.push('--mqtt', broker.url);
  if (broker.username) args.push('--mqtt-username', broker.username);
  return args;
}

/** The password goes through the environment, as a user should pass it. */
export function brokerEnv(broker: BrokerAccess): NodeJS.ProcessEnv {
  return broker.password ? { FIREFLY_MQTT_PASSWORD: broker.password } : {};
}

export interface Received {
  topic: string;
  payload: Buffer;
  retain: boolean;
  at: number;
}

/** A plain MQTT client that records everything on the topics it subscribes to. */
export class Observer {
  readonly topics: Topics;
  readonly messages: Received[] = [];
  private client?: MqttClient;

  constructor(private readonly broker: BrokerAccess) {
    this.topics = new Topics(broker.prefix);
  }

  async connect(timeoutMs = 10_000): Promise<this> {
    this.client = connectBroker(
      { url: this.broker.url, username: this.broker.username, password: this.broker.password, clientId: `test-${randomBytes(4).toString('hex')}`, keepaliveSeconds: 10 },
      () => undefined,
    );
    this.client.on('message', (topic, payload, packet) => this.messages.push({ topic, payload, retain: packet.retain, at: Date.now() }));
    await whenConnected(this.client, this.broker.url, timeoutMs);
    return this;
  }

  async subscribe(...filters: string[]): Promise<void> {
    await subscribe(this.client!, filters);
  }

  async publish(topic: string, payload: Buffer | string | object, options: { qos?: 0 | 1; retain?: boolean } = {}): Promise<void> {
    const bytes = Buffer.isBuffer(payload) || typeof payload === 'string' ? payload : encode(payload);
    await publish(this.client!, topic, bytes, options);
  }

  /** JSON payloads seen on one exact topic, oldest first. */
  json<T = Record<string, unknown>>(topic: string): T[] {
    return this.messages.filter((m) => m.topic === topic && m.payload.length > 0).map((m) => JSON.parse(m.payload.toString()) as T);
  }

  last<T = Record<string, unknown>>(topic: string): T | undefined {
    return this.json<T>(topic).at(-1);
  }

  /**
   * Waits until the last `window` node heartbeats seen (at least `least` of them) all
   * say the clock is synced. Subscribe to `<prefix>/node/+/heartbeat` first; `skip`
   * leaves out heartbeats whose topic it matches (speakers, which have no clock of their own).
   */
  clocksSynced(options: { window?: number; least?: number; skip?: RegExp; timeoutMs?: number } = {}): Promise<true> {
    const { window = 6, least = 4, skip, timeoutMs = 30_000 } = options;
    return waitFor(
      'clocks synced',
      () => {
        const beats = this.messages
          .filter((m) => m.topic.endsWith('/heartbeat') && !(skip && skip.test(m.topic)))
          .slice(-window)
          .map((m) => JSON.parse(m.payload.toString()) as { clock: { synced: boolean } });
        return beats.length >= least && beats.every((b) => b.clock.synced);
      },
      timeoutMs,
    );
  }

  /** A mark: messages after it are the ones `after` looks at. */
  mark(): number {
    return this.messages.length;
  }

  /** The first JSON message on `topic` after the mark `since` that passes `match` (waits for it). */
  after<T = Record<string, unknown>>(since: number, topic: string, what: string, match: (v: T) => boolean, timeoutMs = 20_000): Promise<T> {
    return waitFor(
      what,
      () => {
        for (const m of this.messages.slice(since)) {
          if (m.topic !== topic || m.payload.length === 0) continue;
          const v = JSON.parse(m.payload.toString()) as T;
          if (match(v)) return v;
        }
        return undefined;
      },
      timeoutMs,
      20,
    );
  }

  /** Waits for a JSON message on `topic` (seen already or to come) that passes `match`; the newest such message wins. */
  waitFor<T = Record<string, unknown>>(what: string, topic: string, match: (v: T, m: Received) => boolean = () => true, timeoutMs = 10_000): Promise<T> {
    return waitFor(
      what,
      () => {
        for (let i = this.messages.length - 1; i >= 0; i--) {
          const m = this.messages[i];
          if (m.topic !== topic || m.payload.length === 0) continue;
          const v = JSON.parse(m.payload.toString()) as T;
          if (match(v, m)) return v;
        }
        return undefined;
      },
      timeoutMs,
      20,
    );
  }

  /** Sends a command to the hub as any MQTT client would, and returns its result (throws if refused). */
  async command<T = unknown>(name: CommandName, body: Record<string, unknown>, timeoutMs = 10_000): Promise<T> {
    const id = randomBytes(4).toString('hex');
    const replyTo = this.topics.reply(`test-${id}`);
    await this.subscribe(replyTo);
    await this.publish(this.topics.command(name), { ...body, id, replyTo });
    const reply = await this.waitFor<CommandReply>(`reply to ${name}`, replyTo, () => true, timeoutMs);
    if (!reply.ok) throw new Error(`${name} refused: ${reply.error?.message}`);
    return reply.result as T;
  }

  async close(): Promise<void> {
    if (this.client) await endClient(this.client, true);
  }
}

export interface HubProcess {
  proc: FireflyProcess;
  dataDir: string;
  library: string;
  grpc: string;
  /** The hub's clock-exchange UDP port; startControlNode points nodes at it. */
  clockPort: number;
}

/** Starts a hub and waits until it says it is online on the broker. */
export async function startControlHub(broker: BrokerAccess, options: { dataDir?: string; library?: string; grpcPort?: number; clockPort?: number; httpPort?: number; extraArgs?: string[] } = {}): Promise<HubProcess> {
  const dataDir = options.dataDir ?? (await tempDir('firefly-hub-'));
  const library = options.library ?? (await tempDir('firefly-music-'));
  const grpcPort = options.grpcPort ?? (await freePort());
  const clockPort = options.clockPort ?? (await freeUdpPort());
  const proc = firefly(
    ['hub', '--library', library, '--data-dir', dataDir, '--grpc-host', '127.0.0.1', '--grpc-port', String(grpcPort), '--clock-port', String(clockPort), '--settle-ms', '200', '--http-host', '127.0.0.1', '--http-port', String(options.httpPort ?? 0), '--no-device-discovery', ...brokerArgs(broker, 'hub'), ...(options.extraArgs ?? [])],
    brokerEnv(broker),
  );
  await proc.waitForLog('connected to the MQTT broker', 20_000);
  await proc.waitForLog('data plane (gRPC) listening', 20_000);
  return { proc, dataDir, library, grpc: `127.0.0.1:${grpcPort}`, clockPort };
}

export async function startControlNode(broker: BrokerAccess, hub: HubProcess, options: { name: string; dataDir?: string; extraArgs?: string[] }): Promise<{ proc: FireflyProcess; dataDir: string }> {
  const dataDir = options.dataDir ?? (await tempDir('firefly-node-'));
  const proc = firefly(
    ['node', '--hub', hub.grpc, '--data-dir', dataDir, '--name', options.name, '--sync-interval', '3600', '--clock-port', String(hub.clockPort), ...brokerArgs(broker, 'node'), ...(options.extraArgs ?? [])],
    brokerEnv(broker),
  );
  return { proc, dataDir };
}

/** Runs `firefly ctl ARGS` against the broker and returns its stdout (throws with stderr on failure). */
export async function ctl(broker: BrokerAccess, args: string[]): Promise<string> {
  const { CLI } = await import('./processes.js');
  const flags = ['--mqtt', broker.url, '--topic-prefix', broker.prefix, ...(broker.username ? ['--mqtt-username', broker.username] : [])];
  const env: NodeJS.ProcessEnv = { ...process.env, ...brokerEnv(broker) };
  const { stdout } = await run(process.execPath, [CLI, 'ctl', ...args, ...flags], { env, timeout: 20_000 });
  return stdout;
}

/** Runs a real Mosquitto command-line client (mosquitto_sub / mosquitto_pub) against the broker. */
export async function mosquittoClient(broker: BrokerAccess, tool: 'mosquitto_sub' | 'mosquitto_pub', args: string[]): Promise<string> {
  const auth = broker.username ? ['-u', broker.username, '-P', broker.password ?? ''] : [];
  const { stdout } = await run(tool, ['-h', '127.0.0.1', '-p', String(broker.port), ...auth, ...args], { timeout: 20_000 });
  return stdout;
}
