/**
 * Finding the hub over mDNS.
 *
 * Unit level: the TXT record the hub advertises, read back by the node, and how a found
 * hub turns into the node's settings.
 *
 * End to end: multicast does not cross loopback reliably, so the test builds a small LAN
 * of its own: two network namespaces joined by a veth pair (10.250.N.0/30, multicast on,
 * a 224.0.0.0/4 route as a LAN's default route would give). A real hub runs in one, real
 * nodes without --hub in the other; they must find it and join. Needs root (ip netns);
 * skipped with a message otherwise. Nothing leaves the two namespaces.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { nodeConfigSchema } from '../src/config/schema.js';
import { hubConfigFrom, nodeConfigFrom } from '../src/cli/options.js';
import { pickAddress, type DiscoveredHub } from '../src/discovery/browse.js';
import { applyDiscoveredHub, resolveHub } from '../src/discovery/resolve.js';
import { decodeTxt, encodeTxt, instanceName } from '../src/discovery/txt.js';
import { isLoopbackHost } from '../hub/discovery/advertiser.js';
import { createLogger } from '../src/log.js';
import { makeTrack } from './helpers/audio.js';
import { CLI, cleanup, FireflyProcess, REPO_ROOT, tempDir, type NodeReport } from './helpers/processes.js';

const run = promisify(execFile);
const silent = createLogger('test', 'silent');

describe('discovery: TXT record and settings', () => {
  test('the TXT record round-trips, with and without optional keys', () => {
    const full = { software: '0.1.0', protocol: 1, grpcPort: 7420, mqtt: 1883, clockPort: 7421, topicPrefix: 'home/ff' } as const;
    const txt = encodeTxt(full);
    assert.deepEqual(txt, { txtvers: '1', sw: '0.1.0', grpc: '7420', mqtt: '1883', proto: '1', clock: '7421', prefix: 'home/ff' });
    for (const v of Object.values(txt)) assert.ok(Buffer.byteLength(`x=${v}`) <= 255, 'each TXT string fits its length byte');
    assert.deepEqual(decodeTxt('kitchen', txt), { ok: true, advert: { name: 'kitchen', ...full } });

    const minimal = decodeTxt('hub', encodeTxt({ software: '0.1.0', grpcPort: 9000, mqtt: 'external' }));
    assert.deepEqual(minimal, { ok: true, advert: { name: 'hub', software: '0.1.0', grpcPort: 9000, mqtt: 'external' } });
  });

  test('a malformed or foreign TXT record is refused, naming the key', () => {
    const good = encodeTxt({ software: '1', grpcPort: 7420, mqtt: 1883 });
    const cases: [unknown, string][] = [
      [undefined, 'txtvers'],
      [{}, 'txtvers'],
      [{ ...good, txtvers: '2' }, 'txtvers'],
      [{ ...good, grpc: undefined }, 'grpc'],
      [{ ...good, grpc: '0' }, 'grpc'],
      [{ ...good, grpc: '70000' }, 'grpc'],
      [{ ...good, grpc: '74x' }, 'grpc'],
      [{ ...good, mqtt: 'internal' }, 'mqtt'],
      [{ ...good, clock: '-1' }, 'clock'],
      [{ ...good, sw: 'x'.repeat(65) }, 'sw'],
    ];
    for (const [txt, key] of cases) {
      const r = decodeTxt('h', txt);
      assert.equal(r.ok, false, JSON.stringify(txt));
      if (!r.ok) assert.match(r.message, new RegExp(`^TXT ${key}`), JSON.stringify(txt));
    }
  });

  test('instance names are one DNS label', () => {
    assert.equal(instanceName('living.room.local'), 'living-room-local');
    assert.equal(instanceName(''), 'firefly');
    assert.equal(Buffer.byteLength(instanceName('é'.repeat(60))), 62);
  });

  test('the node uses the address the answer came from, else the first IPv4', () => {
    const referer = (address: string) => ({ address, family: 'IPv4' as const, port: 5353, size: 100 });
    assert.equal(pickAddress({ host: 'h.local', addresses: ['192.168.1.5', '10.0.0.5'], referer: referer('10.0.0.5') }), '10.0.0.5');
    assert.equal(pickAddress({ host: 'h.local', addresses: ['fe80::1', '192.168.1.5'], referer: referer('172.16.0.9') }), '192.168.1.5');
    assert.equal(pickAddress({ host: 'h.local', addresses: [], referer: referer('10.1.1.1') }), '10.1.1.1');
    assert.equal(pickAddress({ host: 'h.local', addresses: [] }), 'h.local');
  });

  test('a found hub fills in the gRPC address and the embedded broker; explicit settings win', () => {
    const hub: DiscoveredHub = { name: 'h', software: '0.1.0', grpcPort: 7500, mqtt: 1900, address: '10.0.0.7', addresses: ['10.0.0.7'] };
    const config = nodeConfigSchema.parse({});
    assert.equal(config.hub, undefined, 'no hub by default: discover');
    const r = applyDiscoveredHub(config, hub);
    assert.equal(r.hub, '10.0.0.7:7500');
    assert.equal(r.mqtt.url, 'mqtt://10.0.0.7:1900');
    assert.equal(applyDiscoveredHub(nodeConfigSchema.parse({ mqtt: { url: 'mqtt://broker:1883' } }), hub).mqtt.url, 'mqtt://broker:1883');
    assert.equal(applyDiscoveredHub(config, { ...hub, mqtt: 'external' }).mqtt.url, undefined);
    assert.equal(applyDiscoveredHub(config, { ...hub, address: 'fd00::7' }).hub, '[fd00::7]:7500');
  });

  test('--hub (or FIREFLY_HUB, or config hub) means no discovery at all', async () => {
    const config = nodeConfigFrom({ hub: '10.9.9.9:7420' });
    const resolved = await resolveHub(config, silent, () => Promise.reject(new Error('must not browse')));
    assert.equal(resolved.hub, '10.9.9.9:7420');
  });

  test('settings: --no-advertise, hub name, node hub name and timeout', () => {
    assert.equal(hubConfigFrom({}).discovery.advertise, true);
    assert.equal(hubConfigFrom({ advertise: true }).discovery.advertise, true, 'commander default of a --no- switch changes nothing');
    assert.equal(hubConfigFrom({ advertise: false }).discovery.advertise, false);
    assert.equal(hubConfigFrom({ name: 'attic' }).name, 'attic');
    const node = nodeConfigFrom({ hubName: 'attic', discoveryTimeout: '3' });
    assert.deepEqual(node.discovery, { hubName: 'attic', timeoutSeconds: 3 });
    assert.equal(isLoopbackHost('127.0.0.1') && isLoopbackHost('::1') && isLoopbackHost('localhost'), true);
    assert.equal(isLoopbackHost('0.0.0.0') || isLoopbackHost('10.250.1.1'), false);
  });
});

/** Two namespaces joined by a veth pair; null (with the reason) when this machine cannot make them. */
async function makeLan(): Promise<{ hubNs: string; nodeNs: string; hubIp: string; destroy(): Promise<void> } | string> {
  if (process.getuid?.() !== 0) return 'needs root to create network namespaces (ip netns)';
  const id = `${process.pid % 100000}`;
  const hubNs = `ffd-${id}-a`;
  const nodeNs = `ffd-${id}-b`;
  const [ifA, ifB] = [`ffd${id}a`, `ffd${id}b`];
  const net = `10.250.${process.pid % 250}`;
  const ip = (...args: string[]) => run('ip', args);
  const destroy = async () => {
    for (const ns of [hubNs, nodeNs]) await ip('netns', 'del', ns).catch(() => undefined);
  };
  try {
    await ip('netns', 'add', hubNs);
    await ip('netns', 'add', nodeNs);
    await ip('link', 'add', ifA, 'type', 'veth', 'peer', 'name', ifB);
    await ip('link', 'set', ifA, 'netns', hubNs);
    await ip('link', 'set', ifB, 'netns', nodeNs);
    for (const [ns, dev, addr] of [
      [hubNs, ifA, `${net}.1/30`],
      [nodeNs, ifB, `${net}.2/30`],
    ]) {
      await ip('-n', ns, 'addr', 'add', addr, 'dev', dev);
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
      await ip('-n', ns, 'link', 'set', dev, 'multicast', 'on', 'up');
      // A LAN's default route would carry mDNS; this small LAN has none, so route multicast.
      await ip('-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', dev);
    }
  } catch (err) {
    await destroy();
    return `cannot create network namespaces here: ${(err as Error).message.split('\n')[0]}`;
  }
  return { hubNs, nodeNs, hubIp: `${net}.1`, destroy };
}

/** `firefly ARGS` inside a namespace (ip netns exec replaces itself with node: signals reach it). */
function fireflyIn(ns: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}): FireflyProcess {
  const env: NodeJS.ProcessEnv = { ...extraEnv };
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FIREFLY_')) env[k] = v;
  return new FireflyProcess(spawn('ip', ['netns', 'exec', ns, process.execPath, CLI, ...args], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] }));
}

async function exitOf(proc: FireflyProcess, timeoutMs: number): Promise<number | null> {
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), timeoutMs);
  const { code } = await proc.exited;
  clearTimeout(timer);
  return code;
}

describe('discovery over a real (namespaced) LAN', () => {
  let lan: Awaited<ReturnType<typeof makeLan>> = 'not set up';
  let hub: FireflyProcess | undefined;
  let hubDataDir = '';
  /** The hub listens on 0.0.0.0, so credentials are on: each node gets its own, the documented way. */
  const nodeToken = async (): Promise<NodeJS.ProcessEnv> => {
    const { stdout } = await run(process.execPath, [CLI, 'ctl', 'credentials', 'add-node', '--data-dir', hubDataDir, '--json']);
    return { FIREFLY_TOKEN: (JSON.parse(stdout) as { token: string }).token };
  };
  const hubName = `ffd-test-${process.pid}`;
  const prefix = `ffd${process.pid}`;

  before(async () => {
    lan = await makeLan();
    if (typeof lan === 'string') return;
    const music = await tempDir('firefly-music-');
    await makeTrack(join(music, 'a.wav'), { format: 'wav', seconds: 2, title: 'A' });
    hubDataDir = await tempDir('firefly-hub-');
    hub = fireflyIn(lan.hubNs, ['hub', '--library', music, '--data-dir', hubDataDir, '--name', hubName, '--topic-prefix', prefix, '--settle-ms', '100']);
    await hub.waitForLog('advertising the hub over mDNS', 20_000);
    await hub.waitForLog('library indexed', 30_000);
    await hub.waitForLog((l) => l.msg === 'credentials required' && l.auth === true);
  });

  after(async () => {
    await cleanup();
    if (typeof lan !== 'string') await lan.destroy();
  });

  test('a node without --hub finds the hub, syncs and joins', async (t) => {
    if (typeof lan === 'string') return t.skip(`mDNS end-to-end test skipped: ${lan}`);
    const { hubIp, nodeNs } = lan;

    // --once: found, then a real sync over the data plane at the advertised address.
    const once = fireflyIn(nodeNs, ['node', '--once', '--data-dir', await tempDir('firefly-node-'), '--topic-prefix', prefix, '--discovery-timeout', '10'], await nodeToken());
    assert.equal(await exitOf(once, 30_000), 0, once.tail());
    const found = await once.waitForLog('found the hub over mDNS');
    assert.equal(found.hub, hubName);
    assert.equal(found.address, `${hubIp}:7420`);
    assert.equal(found.mqtt, `mqtt://${hubIp}:1883`);
    const report = JSON.parse(once.stdout.trim().split('\n').at(-1)!) as NodeReport;
    assert.equal(report.entriesChanged, 1);
    assert.ok(report.chunksStored > 0, 'the track was fetched');

    // A running node, picking this hub by name, joins over the advertised broker.
    const node = fireflyIn(nodeNs, ['node', '--hub-name', hubName, '--name', 'ns-node', '--data-dir', await tempDir('firefly-node-'), '--topic-prefix', prefix, '--sync-interval', '3600'], await nodeToken());
    const joined = await node.waitForLog('joined the hub', 20_000);
    assert.equal(typeof joined.nodeId, 'number');
    await hub!.waitForLog((l) => l.module === 'registry' && l.name === 'ns-node' && l.nodeId === joined.nodeId, 10_000);
    await node.stop();
  });

  test('--hub overrides discovery; an unknown --hub-name fails with a clear message', async (t) => {
    if (typeof lan === 'string') return t.skip(`mDNS end-to-end test skipped: ${lan}`);
    const direct = fireflyIn(lan.nodeNs, ['node', '--once', '--hub', lan.hubIp, '--data-dir', await tempDir('firefly-node-')], await nodeToken());
    assert.equal(await exitOf(direct, 30_000), 0, direct.tail());
    assert.equal(direct.logs.some((l) => l.msg.includes('mDNS')), false, 'no browsing with --hub');

    const lost = fireflyIn(lan.nodeNs, ['node', '--once', '--hub-name', 'no-such-hub', '--discovery-timeout', '2', '--data-dir', await tempDir('firefly-node-')]);
    assert.equal(await exitOf(lost, 30_000), 2);
    assert.match(lost.rawStderr.join('\n'), /no Firefly hub named "no-such-hub" answered .*within 2 s; seen but not used: ffd-test-/);
  });

  test('a hub with --no-advertise is not found', async (t) => {
    if (typeof lan === 'string') return t.skip(`mDNS end-to-end test skipped: ${lan}`);
    const quiet = fireflyIn(lan.hubNs, [
      'hub', '--library', await tempDir('firefly-music-'), '--data-dir', await tempDir('firefly-hub-'), '--name', 'quiet-hub', '--no-advertise',
      '--grpc-port', '7520', '--mqtt-port', '1983', '--clock-port', '7521', '--http-port', '8181', '--topic-prefix', prefix,
    ]);
    await quiet.waitForLog('data plane (gRPC) listening', 20_000);
    const lost = fireflyIn(lan.nodeNs, ['node', '--once', '--hub-name', 'quiet-hub', '--discovery-timeout', '2', '--data-dir', await tempDir('firefly-node-')]);
    assert.equal(await exitOf(lost, 30_000), 2);
    assert.equal(quiet.logs.some((l) => String(l.msg).includes('advertising')), false);
    await quiet.stop();
  });
});
