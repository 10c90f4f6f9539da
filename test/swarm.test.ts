/**
 * Integration: the peer-to-peer chunk swarm. A real hub with a capped upload and real node
 * processes on loopback, each serving what it holds. Nodes fetch tracks none of them
 * holds (each chunk leaves the hub about once, the rest flows between peers), shrug off a
 * peer that serves damaged bytes, and recover when a serving peer or the downloader itself
 * is killed, without fetching anything twice.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { chunksClient, libraryClient } from '../src/protocol/data-plane.js';
import type { ServingStats__Output } from '../src/generated/firefly/v1/ServingStats.js';
import type { SourcesReply__Output } from '../src/generated/firefly/v1/SourcesReply.js';
import type { TrackManifest__Output } from '../src/generated/firefly/v1/TrackManifest.js';
import { countBits } from '../src/transfer/chunk-bitmap.js';
import type { SyncReport } from '../src/node/library-sync.js';
import { makeTrack } from './helpers/audio.js';
import { brokerArgs, embeddedBroker, startControlHub, type BrokerAccess, type HubProcess } from './helpers/control-plane.js';
import { cleanup, firefly, hubChanges, tempDir, verifyNodeCopies, waitFor, withNodeStore, type FireflyProcess, type LogLine } from './helpers/processes.js';

/** 4 MB/s: slow enough that four nodes fetching from the hub alone would take four times as long. */
const UPLOAD_LIMIT = '32M';
const UPLOAD_BYTES_PER_SECOND = 4_000_000;

interface SwarmNode {
  name: string;
  proc: FireflyProcess;
  dataDir: string;
  uuid: string;
  servePort: number;
  args: string[];
}

type Report = SyncReport & LogLine;

function stats(address: string): Promise<ServingStats__Output> {
  const client = chunksClient(address);
  return new Promise<ServingStats__Output>((resolve, reject) => client.Stats({}, { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res!)))).finally(() =>
    client.close(),
  );
}

async function libraryBytes(root: string, paths: string[]): Promise<number> {
  let total = 0;
  for (const p of paths) total += (await stat(join(root, p))).size;
  return total;
}

describe('chunk swarm: hub and four nodes on loopback', () => {
  let broker: BrokerAccess;
  let hub: HubProcess;
  let lib: string;
  const nodes: SwarmNode[] = [];
  const ALBUM_A = ['a/01.wav', 'a/02.wav', 'a/03.wav', 'a/04.wav'];
  const ALBUM_B = ['b/01.wav', 'b/02.wav', 'b/03.wav'];

  async function startNode(name: string, options: { dataDir?: string; extraArgs?: string[] } = {}): Promise<SwarmNode> {
    const dataDir = options.dataDir ?? (await tempDir(`firefly-swarm-${name}-`));
    const args = [
      'node', '--hub', hub.grpc, '--data-dir', dataDir, '--name', name,
      '--sync-interval', '3600', '--clock-port', String(hub.clockPort), '--output', 'null',
      '--serve-host', '127.0.0.1', '--serve-port', '0', '--advertise-host', '127.0.0.1',
      ...brokerArgs(broker, 'node'), ...(options.extraArgs ?? []),
    ];
    const proc = firefly(args);
    const [starting, serving] = await Promise.all([proc.waitForLog('node starting', 20_000), proc.waitForLog('chunk server listening', 20_000)]);
    return { name, proc, dataDir, uuid: String(starting.uuid), servePort: Number(serving.port), args };
  }

  /** The node's first sync that fetched something (or the first after `since` log lines). */
  function fetched(node: SwarmNode, since = 0, timeoutMs = 60_000): Promise<Report> {
    return node.proc.waitForLog((l) => l.msg === 'sync complete' && node.proc.logs.indexOf(l) >= since && Number(l.chunksWanted) > 0, timeoutMs) as Promise<Report>;
  }

  /** Chunks each peer holds of these contents, as the hub's Library.Sources tells it. */
  async function holdingsOn(contentIds: Buffer[]): Promise<Map<string, number>> {
    const client = libraryClient(hub.grpc);
    try {
      const counts = new Map<string, number>();
      for (const contentId of contentIds) {
        const m = await new Promise<TrackManifest__Output>((resolve, reject) =>
          client.Manifest({ contentId }, { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res!))),
        );
        counts.set(contentId.toString('hex'), m.chunks.length);
      }
      const reply = await new Promise<SourcesReply__Output>((resolve, reject) =>
        client.Sources({ contentIds }, { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res!))),
      );
      const out = new Map<string, number>();
      for (const s of reply.sources) {
        if (s.hub) continue;
        out.set(s.nodeUuid, s.holdings.reduce((n, h) => n + (h.complete ? counts.get(h.contentId.toString('hex'))! : countBits(h.have)), 0));
      }
      return out;
    } finally {
      client.close();
    }
  }

  async function chunkCount(contentIds: Buffer[]): Promise<number> {
    const client = libraryClient(hub.grpc);
    try {
      let n = 0;
      for (const contentId of contentIds) {
        const m = await new Promise<TrackManifest__Output>((resolve, reject) =>
          client.Manifest({ contentId }, { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res!))),
        );
        n += m.chunks.length;
      }
      return n;
    } finally {
      client.close();
    }
  }

  before(async () => {
    lib = await tempDir('firefly-swarm-lib-');
    await Promise.all(ALBUM_A.map((p, i) => makeTrack(join(lib, p), { format: 'wav', seconds: 15, title: `A${i}`, seed: 100 + i })));
    broker = await embeddedBroker();
    hub = await startControlHub(broker, { library: lib, extraArgs: ['--upload-limit', UPLOAD_LIMIT] });
    await hub.proc.waitForLog('library indexed', 60_000);
  });

  after(cleanup);

  test('four nodes fetch an album none holds: each chunk leaves the hub about once, peers carry the rest', async () => {
    const content = await libraryBytes(lib, ALBUM_A);
    const started = Date.now();
    for (const name of ['n1', 'n2', 'n3', 'n4']) nodes.push(await startNode(name));
    const reports = await Promise.all(nodes.map((n) => fetched(n)));
    const seconds = (Date.now() - started) / 1000;
    const hubStats = await stats(hub.grpc);
    const peerStats = await Promise.all(nodes.map((n) => stats(`127.0.0.1:${n.servePort}`)));
    const hubSent = Number(hubStats.bytesSent);
    const peersSent = peerStats.reduce((s, p) => s + Number(p.bytesSent), 0);
    const fromHub = reports.reduce((s, r) => s + r.bytesFromHub, 0);
    const fromPeers = reports.reduce((s, r) => s + r.bytesFromPeers, 0);
    const summary = { content, seconds, hubSent, peersSent, fromHub, fromPeers, perNode: reports.map((r) => ({ hub: r.bytesFromHub, peers: r.bytesFromPeers, ms: r.durationMs })) };
    for (const r of reports) {
      assert.equal(r.chunksFailed, 0, JSON.stringify(summary));
      assert.equal(r.chunksRejected, 0);
      assert.equal(r.bytesFromHub + r.bytesFromPeers, r.bytesReceived);
    }
    assert.equal(Number(hubStats.uploadLimitBytesPerSecond), UPLOAD_BYTES_PER_SECOND);
    assert.ok(hubSent >= content, `the hub sent ${hubSent} bytes of ${content}: ${JSON.stringify(summary)}`);
    assert.ok(hubSent <= 1.3 * content, `the hub sent ${(hubSent / content).toFixed(2)}x the content: ${JSON.stringify(summary)}`);
    assert.equal(fromHub, hubSent, 'what the nodes say came from the hub is what the hub sent');
    assert.ok(fromPeers >= 4 * content - hubSent - 1, `peers carried the rest: ${JSON.stringify(summary)}`);
    assert.equal(peersSent, fromPeers);
    // The hub alone would need 4 x content / cap; the swarm is far quicker.
    assert.ok(seconds < ((4 * content) / UPLOAD_BYTES_PER_SECOND) * 0.75, `took ${seconds.toFixed(1)} s: ${JSON.stringify(summary)}`);
    process.stderr.write(`swarm fetch: ${JSON.stringify(summary)}\n`);
  });

  test('a peer serving damaged chunks is detected, ignored, and the download completes', async () => {
    const bad = await startNode('corrupt', { extraArgs: ['--sim-corrupt-serving'] });
    const badReport = await fetched(bad);
    assert.equal(badReport.chunksFailed, 0);
    // Its holdings reach the hub before the newcomer asks.
    await waitFor('the corrupt node to announce its holdings', async () => {
      const entries = (await hubChanges(hub.grpc)).entries.filter((e) => !e.removed);
      const ids = entries.map((e) => e.contentId);
      return ((await holdingsOn(ids)).get(bad.uuid) ?? 0) >= (await chunkCount(ids));
    });
    const fresh = await startNode('fresh');
    const report = await fetched(fresh);
    assert.ok(report.chunksRejected >= 1, `damaged chunks were noticed: ${JSON.stringify(report)}`);
    assert.ok(report.chunksRejected <= 6, `and the source was dropped quickly (${report.chunksRejected} rejected)`);
    assert.equal(report.sourcesBanned, 1);
    assert.equal(report.chunksFailed, 0);
    const banned = await fresh.proc.waitForLog('source ignored after repeated damaged chunks');
    assert.equal(banned.source, bad.uuid);
    await Promise.all([bad.proc.stop(), fresh.proc.stop()]);
    const copies = await verifyNodeCopies(fresh.dataDir);
    assert.deepEqual(copies.map((c) => c.path).sort(), ALBUM_A);
  });

  test('a serving peer and a downloader killed mid-transfer both recover, fetching nothing twice', async () => {
    const since = nodes.map((n) => n.proc.logs.length);
    await Promise.all(ALBUM_B.map((p, i) => makeTrack(join(lib, p), { format: 'wav', seconds: 20, title: `B${i}`, seed: 200 + i })));
    const content = await libraryBytes(lib, ALBUM_B);
    const entries = await waitFor(
      'the hub to index album B',
      async () => {
        const live = (await hubChanges(hub.grpc)).entries.filter((e) => !e.removed && e.path.startsWith('b/') && e.status === 'OK');
        return live.length === ALBUM_B.length ? live : undefined;
      },
      30_000,
    );
    const ids = entries.map((e) => e.contentId);
    const [n1, n2, n3, n4] = nodes;
    // n2 serves, n3 downloads: kill each once it holds part of the album.
    const albumChunks = await chunkCount(ids);
    const held = (n: SwarmNode) => async () => {
      const count = (await holdingsOn(ids)).get(n.uuid) ?? 0;
      return count >= 10 && count < albumChunks * 0.8 ? count : undefined;
    };
    await waitFor('n2 to hold part of album B', held(n2), 30_000, 50);
    n2.proc.child.kill('SIGKILL');
    await waitFor('n3 to hold part of album B', held(n3), 30_000, 50);
    n3.proc.child.kill('SIGKILL');
    await Promise.all([n2.proc.exited, n3.proc.exited]);

    const [r1, r4] = await Promise.all([fetched(n1, since[0]), fetched(n4, since[3])]);
    for (const r of [r1, r4]) assert.equal(r.chunksFailed, 0, JSON.stringify(r));

    // Restart both: each fetches exactly what it lacks.
    for (const [i, n] of [[1, n2], [2, n3]] as const) {
      const { storedBefore, total } = await bytesHeldOfAlbum(n.dataDir, ids);
      assert.ok(storedBefore > 0 && storedBefore < total, `${n.name} was killed mid-transfer (${storedBefore} of ${total} bytes)`);
      const proc = firefly(n.args);
      nodes[i] = { ...n, proc };
      const r = await fetched(nodes[i]);
      assert.equal(r.chunksFailed, 0);
      assert.equal(r.chunksRejected, 0);
      assert.equal(r.bytesReceived, total - storedBefore, `${n.name} fetched ${r.bytesReceived} bytes; it lacked ${total - storedBefore}`);
    }
    await Promise.all(nodes.map((n) => n.proc.stop()));
    for (const n of nodes) {
      const copies = await verifyNodeCopies(n.dataDir);
      assert.deepEqual(copies.map((c) => c.path).sort(), [...ALBUM_A, ...ALBUM_B], n.name);
    }
    assert.ok(content > 0);
  });
});

/** Bytes a stopped node holds of these contents, and their total (from its own store and mirror). */
async function bytesHeldOfAlbum(dataDir: string, contentIds: Buffer[]): Promise<{ storedBefore: number; total: number }> {
  return withNodeStore(dataDir, async (mirror, store) => {
    const seen = new Set<string>();
    let storedBefore = 0;
    let total = 0;
    for (const id of contentIds) {
      for (const c of mirror.manifest(id)?.chunks ?? []) {
        const key = c.hash.toString('hex');
        if (seen.has(key)) continue;
        seen.add(key);
        total += c.size;
        if (store.has(c.hash)) storedBefore += c.size;
      }
    }
    return { storedBefore, total };
  });
}
