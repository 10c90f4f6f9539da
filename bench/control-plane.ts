/**
 * Control-plane benchmark: a real hub process (embedded broker) and N simulated nodes in
 * this process, each with its own MQTT connection, last will and 1 s heartbeat. Reports
 * the hub's CPU and memory under that load, and how long after a node's connection
 * dies (as with kill -9) the hub's offline event arrives (p50/p99).
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectBroker, endClient, subscribe, whenConnected, type MqttClient } from '../src/protocol/mqtt-client.js';
import { encode, PROTOCOL_VERSION, type Heartbeat, type NodeEvent } from '../src/protocol/schemas.js';
import { Topics } from '../src/protocol/topics.js';
import { freePort } from '../test/helpers/processes.js';

const CLI = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../src/cli/firefly.js' : '../dist/src/cli/firefly.js', import.meta.url));

export interface ControlPlaneBenchOptions {
  /** Simulated nodes (default 500). */
  nodes?: number;
  /** Seconds of steady heartbeating over which CPU is measured (default 10). */
  steadySeconds?: number;
  /** Nodes whose connection is cut to time the offline event (default 50). */
  deaths?: number;
}

export interface ControlPlaneBenchResult {
  nodes: number;
  /** Time until every node had joined (welcome received), seconds. */
  joinSeconds: number;
  /** Hub process CPU while all nodes heartbeat, percent of one core. */
  hubCpuPercent: number;
  hubRssMiB: number;
  deaths: number;
  offlineP50Ms: number;
  offlineP99Ms: number;
  offlineMaxMs: number;
}


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function cpuTicks(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime, in clock ticks (100 Hz)
}

async function rssMiB(pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

interface SimNode {
  uuid: string;
  client: MqttClient;
  nodeId: number | null;
  timer?: NodeJS.Timeout;
  seq: number;
}

export async function benchControlPlane(options: ControlPlaneBenchOptions = {}): Promise<ControlPlaneBenchResult> {
  const count = options.nodes ?? 500;
  const deaths = Math.min(options.deaths ?? 50, count);
  const steadySeconds = options.steadySeconds ?? 10;
  const dir = await mkdtemp(join(tmpdir(), 'firefly-bench-cp-'));
  await mkdir(join(dir, 'music'));
  const [mqttPort, grpcPort] = [await freePort(), await freePort()];
  const prefix = 'ffbench';
  const topics = new Topics(prefix);
  const hub = spawn(
    process.execPath,
    [CLI, 'hub', '--library', join(dir, 'music'), '--data-dir', join(dir, 'hub'), '--grpc-host', '127.0.0.1', '--grpc-port', String(grpcPort), '--http-host', '127.0.0.1', '--http-port', '0', '--mqtt-host', '127.0.0.1', '--mqtt-port', String(mqttPort), '--topic-prefix', prefix, '--log-level', 'warn'],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const url = `mqtt://127.0.0.1:${mqttPort}`;
  const sims: SimNode[] = [];
  let observer: MqttClient | undefined;
  try {
    observer = connectBroker({ url, clientId: 'bench-observer' }, () => undefined);
    await whenConnected(observer, url, 20_000).catch(async () => {
      await sleep(1000);
      await whenConnected(observer!, url, 20_000);
    });
    const offlineAt = new Map<number, number>();
    observer.on('message', (topic, payload) => {
      if (topic !== topics.nodeEvents) return;
      const e = JSON.parse(payload.toString()) as NodeEvent;
      if ((e.event === 'offline' || e.event === 'timeout') && !offlineAt.has(e.nodeId)) offlineAt.set(e.nodeId, Date.now());
    });
    await subscribe(observer, [topics.nodeEvents]);

    const joinStart = Date.now();
    let joined = 0;
    for (let i = 0; i < count; i++) {
      const uuid = randomUUID();
      const client = connectBroker(
        { url, clientId: `bench-${i}`, keepaliveSeconds: 2, will: { topic: topics.nodeAvailability(uuid), payload: encode({ state: 'offline', uuid, reason: 'lost' }), qos: 1, retain: true } },
        () => undefined,
      );
      const sim: SimNode = { uuid, client, nodeId: null, seq: 0 };
      sims.push(sim);
      client.on('connect', () => {
        client.publish(topics.nodeAvailability(uuid), encode({ state: 'online', uuid, name: `sim-${i}` }), { qos: 1, retain: true });
        client.subscribe([topics.hubStatus, topics.nodeWelcome(uuid)], { qos: 1 });
      });
      client.on('message', (topic, payload) => {
        if (topic === topics.hubStatus && (JSON.parse(payload.toString()) as { online: boolean }).online) {
          client.publish(topics.nodeJoin(uuid), encode({ uuid, name: `sim-${i}`, software: 'bench', protocol: PROTOCOL_VERSION }), { qos: 1 });
        } else if (topic === topics.nodeWelcome(uuid)) {
          if (sim.nodeId === null) joined++;
          sim.nodeId = (JSON.parse(payload.toString()) as { nodeId: number }).nodeId;
        }
      });
      // Spread heartbeats over the second, as real nodes started at different times would.
      setTimeout(() => {
        sim.timer = setInterval(() => {
          if (!client.connected) return;
          const beat: Heartbeat = {
            seq: sim.seq++,
            at: Date.now(),
            nodeId: sim.nodeId,
            libraryVersion: 0,
            store: { chunks: 1000, bytes: 1 << 30, budgetBytes: 8 << 30 },
            playback: { state: 'idle', trackId: null, positionMs: null },
            clock: { synced: true, offsetMs: 0.2, errorMs: 0.1, rttMs: 0.4 },
            volume: 100,
          };
          client.publish(topics.nodeHeartbeat(uuid), encode(beat), { qos: 0 });
        }, 1000);
      }, Math.random() * 1000);
    }
    const deadline = Date.now() + 120_000;
    while (joined < count && Date.now() < deadline) await sleep(50);
    if (joined < count) throw new Error(`only ${joined} of ${count} simulated nodes joined within 120 s`);
    const joinSeconds = (Date.now() - joinStart) / 1000;

    await sleep(2000); // let the join burst settle
    const ticks0 = await cpuTicks(hub.pid!);
    const t0 = Date.now();
    await sleep(steadySeconds * 1000);
    const hubCpuPercent = ((await cpuTicks(hub.pid!)) - ticks0) / ((Date.now() - t0) / 1000);
    const hubRss = await rssMiB(hub.pid!);

    // Cut connections abruptly (no DISCONNECT packet): the broker publishes the last will.
    const victims = sims.slice(0, deaths);
    const killedAt = new Map<number, number>();
    for (const v of victims) {
      clearInterval(v.timer);
      killedAt.set(v.nodeId!, Date.now());
      v.client.options.reconnectPeriod = 0;
      v.client.stream.destroy();
      await sleep(20);
    }
    const waitUntil = Date.now() + 10_000;
    while ([...killedAt.keys()].some((id) => !offlineAt.has(id)) && Date.now() < waitUntil) await sleep(20);
    const latencies = [...killedAt].filter(([id]) => offlineAt.has(id)).map(([id, at]) => offlineAt.get(id)! - at).sort((a, b) => a - b);
    if (latencies.length < victims.length) throw new Error(`${victims.length - latencies.length} of ${victims.length} dead nodes never went offline`);
    return {
      nodes: count,
      joinSeconds,
      hubCpuPercent,
      hubRssMiB: hubRss,
      deaths: victims.length,
      offlineP50Ms: percentile(latencies, 50),
      offlineP99Ms: percentile(latencies, 99),
      offlineMaxMs: latencies[latencies.length - 1],
    };
  } finally {
    for (const s of sims) {
      clearInterval(s.timer);
      s.client.options.reconnectPeriod = 0;
      await endClient(s.client, true);
    }
    if (observer) await endClient(observer, true);
    hub.kill('SIGTERM');
    await new Promise((r) => (hub.exitCode !== null ? r(undefined) : hub.once('exit', r)));
    await rm(dir, { recursive: true, force: true });
  }
}

/** The result as a small text table. */
export function formatControlPlaneBench(r: ControlPlaneBenchResult): string {
  const rows: [string, string][] = [
    ['simulated nodes (1 heartbeat/s each)', String(r.nodes)],
    ['time for all to join', `${r.joinSeconds.toFixed(2)} s`],
    ['hub CPU (one core = 100 %)', `${r.hubCpuPercent.toFixed(1)} %`],
    ['hub memory (RSS)', `${r.hubRssMiB.toFixed(0)} MiB`],
    [`death → offline event, p50 (${r.deaths} deaths)`, `${r.offlineP50Ms} ms`],
    ['death → offline event, p99', `${r.offlineP99Ms} ms`],
    ['death → offline event, max', `${r.offlineMaxMs} ms`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return ['Control plane', ...rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`)].join('\n');
}
