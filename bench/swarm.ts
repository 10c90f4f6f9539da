/**
 * Swarm benchmark: a real hub with its upload capped (default 100 Mbit/s) and N real node
 * processes (default 8) on loopback, fetching a library none of them holds (default
 * 500 MB of WAV tracks). Times how long until every node holds everything, with peers
 * (the swarm) and with the hub alone (nodes run with --no-peers), beside the lower bound:
 * every byte must leave the hub at least once, so no swarm finishes before
 * content / hub uplink; the hub alone needs nodes × content / uplink.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { appendFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chunksClient } from '../src/protocol/data-plane.js';
import type { ServingStats__Output } from '../src/generated/firefly/v1/ServingStats.js';
import { fmtBytes, note, Table } from './util.js';
import { freePort } from '../test/helpers/processes.js';

const CLI = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../src/cli/firefly.js' : '../dist/src/cli/firefly.js', import.meta.url));

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

interface Proc {
  child: ChildProcess;
  logs: Record<string, unknown>[];
  wait(pred: (l: Record<string, unknown>) => boolean, timeoutMs: number): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

let procCount = 0;

/** Set FIREFLY_BENCH_LOGS to a folder to keep every process's log there. */
function run(args: string[]): Proc {
  const logFile = process.env.FIREFLY_BENCH_LOGS ? join(process.env.FIREFLY_BENCH_LOGS, `${procCount++}-${args[0]}.log`) : undefined;
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const logs: Record<string, unknown>[] = [];
  const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  let buf = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (text: string) => {
    buf += text;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (logFile) appendFileSync(logFile, `${line}\n`);
      try {
        const l = JSON.parse(line) as Record<string, unknown>;
        logs.push(l);
        for (const w of [...waiters]) if (w.pred(l)) waiters.splice(waiters.indexOf(w), 1), w.resolve(l);
      } catch {
        // not a log line
      }
    }
  });
  return {
    child,
    logs,
    wait: (pred, timeoutMs) => {
      const seen = logs.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching log line within ${timeoutMs} ms from firefly ${args[0]}`)), timeoutMs);
        waiters.push({ pred, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      });
    },
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}


function freeUdpPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    s.bind(0, '127.0.0.1', () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });
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

function servingStats(address: string): Promise<ServingStats__Output> {
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
}

async function round(dir: string, library: string, options: Required<SwarmBenchOptions>, peers: boolean): Promise<RoundResult> {
  const tag = peers ? 'swarm' : 'hub-only';
  const [grpcPort, mqttPort, clockPort] = [await freePort(), await freePort(), await freeUdpPort()];
  const prefix = `ffbench${randomBytes(3).toString('hex')}`;
  const hub = run([
    'hub', '--library', library, '--data-dir', join(dir, `hub-${tag}`), '--grpc-host', '127.0.0.1', '--grpc-port', String(grpcPort), '--http-host', '127.0.0.1', '--http-port', '0',
    '--clock-port', String(clockPort), '--mqtt-host', '127.0.0.1', '--mqtt-port', String(mqttPort), '--topic-prefix', prefix,
    '--no-advertise', '--upload-limit', options.uploadLimit,
  ]);
  const nodes: Proc[] = [];
  try {
    await hub.wait((l) => l.msg === 'library indexed', 600_000);
    note(`${tag}: hub indexed the library; starting ${options.nodes} nodes`);
    const started = performance.now();
    for (let i = 0; i < options.nodes; i++) {
      nodes.push(
        run([
          'node', '--hub', `127.0.0.1:${grpcPort}`, '--data-dir', join(dir, `${tag}-node${i}`), '--name', `n${i}`, '--mqtt', `127.0.0.1:${mqttPort}`,
          '--topic-prefix', prefix, '--clock-port', String(clockPort), '--output', 'null', '--sync-interval', '3600',
          '--serve-host', '127.0.0.1', '--serve-port', '0', '--advertise-host', '127.0.0.1', '--log-level', process.env.FIREFLY_BENCH_LOG_LEVEL ?? 'info', ...(peers ? [] : ['--no-peers']),
        ]),
      );
    }
    const limitMs = Math.max(120_000, ((options.nodes * options.bytes) / (parseRate(options.uploadLimit) || 1e9)) * 3000);
    const perNode = await Promise.all(
      nodes.map(async (n) => {
        const r = await n.wait((l) => l.msg === 'sync complete' && Number(l.chunksWanted) > 0, limitMs);
        if (Number(r.chunksFailed) > 0) throw new Error(`${tag}: a node failed to fetch ${String(r.chunksFailed)} chunks`);
        return (performance.now() - started) / 1000;
      }),
    );
    const seconds = Math.max(...perNode);
    const hubBytes = Number((await servingStats(`127.0.0.1:${grpcPort}`)).bytesSent);
    let peerBytes = 0;
    for (const n of nodes) {
      const serving = n.logs.find((l) => l.msg === 'chunk server listening');
      if (serving) peerBytes += Number((await servingStats(`127.0.0.1:${String(serving.port)}`)).bytesSent);
    }
    note(`${tag}: all nodes done in ${seconds.toFixed(1)} s`);
    return { seconds, hubBytes, peerBytes, perNode: perNode.sort((a, b) => a - b) };
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    await hub.stop();
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
  const dir = await mkdtemp(join(tmpdir(), 'firefly-bench-swarm-'));
  try {
    const library = join(dir, 'music');
    await mkdir(library);
    const tracks = Math.max(1, Math.round(o.bytes / o.trackBytes));
    note(`writing ${tracks} tracks, ${fmtBytes(o.bytes)}`);
    for (let i = 0; i < tracks; i++) await writeNoiseWav(join(library, `track-${String(i).padStart(3, '0')}.wav`), Math.floor(o.bytes / tracks));
    const content = Math.floor(o.bytes / tracks) * tracks;
    const rate = parseRate(o.uploadLimit);
    const bound = content / rate;
    const swarm = await round(dir, library, o, true);
    const hubOnly = o.baseline ? await round(dir, library, o, false) : undefined;

    const t = new Table(`Swarm: ${o.nodes} nodes fetch ${fmtBytes(content)} none holds, hub upload capped at ${o.uploadLimit}bit/s (${(rate / 1e6).toFixed(1)} MB/s), loopback`, [
      'run',
      'all nodes done (s)',
      'x bound',
      'first node (s)',
      'hub sent',
      'hub sent / content',
      'peers sent',
    ]);
    t.row('lower bound (content / hub uplink)', bound.toFixed(1), '1.00', '', fmtBytes(content), '1.00', '');
    const row = (name: string, r: RoundResult) =>
      t.row(name, r.seconds.toFixed(1), (r.seconds / bound).toFixed(2), r.perNode[0].toFixed(1), fmtBytes(r.hubBytes), (r.hubBytes / content).toFixed(2), fmtBytes(r.peerBytes));
    row('swarm (hub + peers)', swarm);
    if (hubOnly) row('hub only (--no-peers)', hubOnly);
    t.row(`hub only, theory (${o.nodes} x content / uplink)`, ((o.nodes * content) / rate).toFixed(1), (o.nodes).toFixed(2), '', fmtBytes(o.nodes * content), o.nodes.toFixed(2), '');
    t.note('Times run from spawning the node processes to the last node\'s "sync complete" (process start and the library delta included).');
    t.note('Bound: every byte must leave the hub at least once; loopback peers are not the bottleneck, so the swarm cannot beat content / uplink.');
    return t.render();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
