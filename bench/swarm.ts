/**
 * Swarm benchmark: a real hub with its upload capped (default 100 Mbit/s) and N real node
 * processes (default 8) on loopback, fetching a library none of them holds (default
 * 500 MB of WAV tracks). Times how long until every node holds everything, with peers
 * (the swarm) and with the hub alone (nodes run with --no-peers), beside the lower bound:
 * every byte must leave the hub at least once, so no swarm finishes before
 * content / hub uplink; the hub alone needs nodes × content / uplink.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chunksClient } from '../src/protocol/data-plane.js';
import type { ServingStats__Output } from '../src/generated/firefly/v1/ServingStats.js';
import { embeddedBroker, startControlHub, startControlNode } from '../test/helpers/control-plane.js';
import { cleanup, tempDir, type FireflyProcess } from '../test/helpers/processes.js';
import { fmtBytes, note, Table } from './util.js';

export interface SwarmBenchOptions {
  /** Library size in bytes (default 500 MB = 500e6). */
  bytes?: number;
  /** Node processes (default 8). */
  nodes?: number;
  /** Hub upload cap, in bits per second as the --upload-limit flag takes it (default 100M). */
  uploadLimit?: string;
  /** Bytes per track (default 25 MB). */
  trackBytes?: number;
  /** Also run the hub-only baseline (default true). */
  baseline?: boolean;
}

/** CPU seconds (user + system) a running process has used so far (Linux /proc), or NaN. */
export function cpuSeconds(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
    return (fields[11] + fields[12]) / 100; // utime + stime, in clock ticks (USER_HZ = 100)
  } catch {
    return NaN;
  }
}

/** Set FIREFLY_BENCH_LOGS to a folder to keep every process's log there (FIREFLY_BENCH_LOG_LEVEL=debug for the swarm's progress lines). */
export async function keepLogs(tag: string, procs: { name: string; proc: FireflyProcess }[]): Promise<void> {
  const dir = process.env.FIREFLY_BENCH_LOGS;
  if (!dir) return;
  await mkdir(dir, { recursive: true });
  for (const p of procs) await writeFile(join(dir, `${tag}-${p.name}.log`), p.proc.logs.map((l) => JSON.stringify(l)).join('\n') + '\n');
}

/** A WAV file of random 16-bit stereo samples: indexable, and no two chunks alike. */
async function writeNoiseWav(file: string, bytes: number): Promise<void> {
  const data = bytes - 44;
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + data, 4);
  header.write('WAVEfmt ', 8);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(2, 22);
  header.writeUInt32LE(44100, 24);
  header.writeUInt32LE(44100 * 4, 28);
  header.writeUInt16LE(4, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36);
  header.writeUInt32LE(data, 40);
  await writeFile(file, Buffer.concat([header, randomBytes(data)]));
}

export function servingStats(address: string): Promise<ServingStats__Output> {
  const client = chunksClient(address);
  return new Promise<ServingStats__Output>((resolve, reject) => client.Stats({}, { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res!)))).finally(() =>
    client.close(),
  );
}

interface RoundResult {
  seconds: number;
  hubBytes: number;
  peerBytes: number;
  /** Seconds until each node finished, sorted. */
  perNode: number[];
  /** CPU seconds the hub and all nodes used from the nodes' start to the end. */
  hubCpu: number;
  nodesCpu: number;
}

async function round(library: string, options: Required<SwarmBenchOptions>, peers: boolean): Promise<RoundResult> {
  const tag = peers ? 'swarm' : 'hub-only';
  const broker = await embeddedBroker();
  const logLevel = process.env.FIREFLY_BENCH_LOG_LEVEL ?? 'info';
  const hub = await startControlHub(broker, { library, extraArgs: ['--no-advertise', '--upload-limit', options.uploadLimit, '--log-level', logLevel] });
  const nodes: { name: string; proc: FireflyProcess }[] = [];
  try {
    await hub.proc.waitForLog('library indexed', 600_000);
    note(`${tag}: hub indexed the library; starting ${options.nodes} nodes`);
    const hubCpu0 = cpuSeconds(hub.proc.child.pid);
    const started = performance.now();
    for (let i = 0; i < options.nodes; i++) {
      const args = ['--output', 'null', '--serve-host', '127.0.0.1', '--serve-port', '0', '--advertise-host', '127.0.0.1'];
      args.push('--log-level', logLevel, ...(peers ? [] : ['--no-peers']));
      const { proc } = await startControlNode(broker, hub, { name: `n${i}`, extraArgs: args });
      nodes.push({ name: `n${i}`, proc });
    }
    const limitMs = Math.max(120_000, ((options.nodes * options.bytes) / (parseRate(options.uploadLimit) || 1e9)) * 3000);
    let nodesCpu = 0;
    const perNode = await Promise.all(
      nodes.map(async ({ proc }) => {
        const r = await proc.waitForLog((l) => l.msg === 'sync complete' && Number(l.chunksWanted) > 0, limitMs);
        if (Number(r.chunksFailed) > 0) throw new Error(`${tag}: a node failed to fetch ${String(r.chunksFailed)} chunks`);
        nodesCpu += cpuSeconds(proc.child.pid);
        return (performance.now() - started) / 1000;
      }),
    );
    const hubCpu = cpuSeconds(hub.proc.child.pid) - hubCpu0;
    const seconds = Math.max(...perNode);
    const hubBytes = Number((await servingStats(hub.grpc)).bytesSent);
    let peerBytes = 0;
    for (const { proc } of nodes) {
      const serving = proc.logs.find((l) => l.msg === 'chunk server listening');
      if (serving) peerBytes += Number((await servingStats(`127.0.0.1:${String(serving.port)}`)).bytesSent);
    }
    note(`${tag}: all nodes done in ${seconds.toFixed(1)} s`);
    return { seconds, hubBytes, peerBytes, perNode: perNode.sort((a, b) => a - b), hubCpu, nodesCpu };
  } finally {
    await Promise.all(nodes.map((n) => n.proc.stop()));
    await hub.proc.stop();
    await keepLogs(tag, [{ name: 'hub', proc: hub.proc }, ...nodes]);
  }
}

/** Bytes per second from the flag's bit rate (100M → 12.5e6). */
function parseRate(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([kmg]?)/i.exec(text.trim());
  if (!m) return 0;
  return (Number(m[1]) * ({ '': 1, k: 1e3, m: 1e6, g: 1e9 }[m[2].toLowerCase()] ?? 1)) / 8;
}

export async function benchSwarm(options: SwarmBenchOptions = {}): Promise<string> {
  const o: Required<SwarmBenchOptions> = { bytes: 500e6, nodes: 8, uploadLimit: '100M', trackBytes: 25e6, baseline: true, ...options };
  try {
    const library = await tempDir('firefly-bench-swarm-');
    const tracks = Math.max(1, Math.round(o.bytes / o.trackBytes));
    note(`writing ${tracks} tracks, ${fmtBytes(o.bytes)}`);
    for (let i = 0; i < tracks; i++) await writeNoiseWav(join(library, `track-${String(i).padStart(3, '0')}.wav`), Math.floor(o.bytes / tracks));
    const content = Math.floor(o.bytes / tracks) * tracks;
    const rate = parseRate(o.uploadLimit);
    const bound = content / rate;
    const swarm = await round(library, o, true);
    const hubOnly = o.baseline ? await round(library, o, false) : undefined;

    const t = new Table(`Swarm: ${o.nodes} nodes fetch ${fmtBytes(content)} none holds, hub upload capped at ${o.uploadLimit}bit/s (${(rate / 1e6).toFixed(1)} MB/s), loopback`, [
      'run',
      'all nodes done (s)',
      'x bound',
      'first node (s)',
      'hub sent',
      'hub sent / content',
      'peers sent',
      'CPU s hub / nodes',
    ]);
    t.row('lower bound (content / hub uplink)', bound.toFixed(1), '1.00', '', fmtBytes(content), '1.00', '', '');
    const row = (name: string, r: RoundResult) =>
      t.row(
        name,
        r.seconds.toFixed(1),
        (r.seconds / bound).toFixed(2),
        r.perNode[0].toFixed(1),
        fmtBytes(r.hubBytes),
        (r.hubBytes / content).toFixed(2),
        fmtBytes(r.peerBytes),
        `${r.hubCpu.toFixed(1)} / ${r.nodesCpu.toFixed(1)}`,
      );
    row('swarm (hub + peers)', swarm);
    if (hubOnly) row('hub only (--no-peers)', hubOnly);
    t.row(`hub only, theory (${o.nodes} x content / uplink)`, ((o.nodes * content) / rate).toFixed(1), o.nodes.toFixed(2), '', fmtBytes(o.nodes * content), o.nodes.toFixed(2), '', '');
    t.note('Times run from spawning the node processes to the last node\'s "sync complete" (process start and the library delta included).');
    t.note('Bound: every byte must leave the hub at least once; loopback peers are not the bottleneck, so the swarm cannot beat content / uplink.');
    t.note('CPU: seconds of user + system time over the run (nodes: their whole life); the machine has 2 cores shared with other work.');
    return t.render();
  } finally {
    await cleanup();
  }
}
