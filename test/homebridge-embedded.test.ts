/**
 * The Homebridge plugin with the hub embedded: real Homebridge starts the hub inside its
 * own process (data in its storage folder), a real node joins that hub's broker with a
 * measurement output, and the group is driven over HAP as in external mode. Also: nothing
 * is written outside Homebridge's storage path (HOME is an empty folder that must stay
 * so), SIGTERM stops the embedded hub and exits, a restart on the same port brings back
 * the hub's groups and the cached accessory, and a bad music folder is a log message.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { GroupState } from '../src/protocol/schemas.js';
import { makeTrack } from './helpers/audio.js';
import { ctl, Observer, startControlNode, type BrokerAccess, type HubProcess } from './helpers/control-plane.js';
import { Bridge, findAccessory, findCharacteristic, hap, randomMac, type HapAccessory } from './helpers/homebridge.js';
import { readMeasure } from './helpers/measure.js';
import { cleanup, ctlLibrary, freePort, freeUdpPort, tempDir, waitFor, type FireflyProcess } from './helpers/processes.js';

const { Service, Characteristic } = hap;

/** The embedded settings a bridge was started with (from its config.json). */
async function readPlatformPorts(bridge: Bridge): Promise<unknown> {
  const config = JSON.parse(await readFile(join(bridge.storage, 'config.json'), 'utf8')) as { platforms: { embedded: unknown }[] };
  return config.platforms[0].embedded;
}

describe('Homebridge plugin with the hub embedded', () => {
  let broker: BrokerAccess;
  let observer: Observer;
  let bridge: Bridge;
  let home: string;
  let platform: Record<string, unknown>;
  let groupId: number;
  let grpc: string;
  let node: { proc: FireflyProcess; measure: string; uuid?: string };
  const exits: string[] = [];

  function fanOf(name: string): Promise<HapAccessory> {
    return waitFor(`a Fan named ${name}`, async () => findAccessory(await bridge.accessories(), Service.Fan.UUID, name), 30_000, 250);
  }

  before(async () => {
    const library = await tempDir('firefly-music-');
    await makeTrack(join(library, 'a.flac'), { format: 'flac', seconds: 60, seed: 5, title: 'A' });
    home = await tempDir('firefly-home-');
    const mqttPort = await freePort();
    const grpcPort = await freePort();
    const clockPort = await freeUdpPort();
    const prefix = `ff${randomBytes(4).toString('hex')}`;
    platform = {
      platform: 'Firefly',
      mode: 'embedded',
      topicPrefix: prefix,
      embedded: { library: [library], mqttHost: '127.0.0.1', mqttPort, grpcHost: '127.0.0.1', grpcPort, clockPort, httpHost: '127.0.0.1', httpPort: 0, advertise: false },
    };
    bridge = await Bridge.start({ platform, env: { HOME: home } });
    await bridge.ready();
    await bridge.waitForLine('library indexed', 60_000);
    broker = { kind: 'embedded', url: `mqtt://127.0.0.1:${mqttPort}`, port: mqttPort, prefix, stop: async () => undefined };
    observer = await new Observer(broker).connect();
    await observer.subscribe(`${prefix}/group/+/state`, `${prefix}/node/+/command`);
    const measure = join(await tempDir('firefly-measure-'), 'frames.jsonl');
    grpc = `127.0.0.1:${grpcPort}`;
    const hub = { grpc, clockPort } as HubProcess;
    const { proc } = await startControlNode(broker, hub, { name: 'attic', extraArgs: ['--serve-host', '127.0.0.1', '--serve-port', '0', '--output', 'measure', '--measure-file', measure, '--output-buffer', '50'] });
    node = { proc, measure };
    await proc.waitForLog((l) => l.msg === 'sync complete' && (l.chunksWanted as number) > 0, 60_000);
    await waitFor('the node online at the hub', async () => (await ctl(broker, ['nodes', '--json'])).includes('"online":true'), 20_000);
    node.uuid = (JSON.parse((await ctl(broker, ['nodes', '--json'])).trim().split('\n')[0]) as { uuid: string }).uuid;
    const created = JSON.parse(await ctl(broker, ['group', 'create', 'Attic', 'attic', '--json'])) as GroupState;
    groupId = created.groupId;
  });

  after(async () => {
    process.stderr.write(`embedded: SIGTERM → exit ${exits.join('; ')}\n`);
    if (process.env.FIREFLY_TEST_KEEP) process.stderr.write(`--- Homebridge log ---\n${bridge?.tail(200)}\n`);
    await bridge?.stop();
    await observer?.close();
    await cleanup();
  });

  it('shows the embedded hub\'s group; on plays on the node, speed sets its volume, a pause over MQTT shows', async () => {
    const fan = await fanOf('Attic');
    const on = findCharacteristic(fan, Service.Fan.UUID, Characteristic.On.UUID);
    const speed = findCharacteristic(fan, Service.Fan.UUID, Characteristic.RotationSpeed.UUID);
    // Something in the queue: play without entries plays the queue.
    const entries = await ctlLibrary(grpc);
    assert.equal(entries.length, 1);
    await observer.command('queue/add', { groupId, entryIds: [entries[0].id] });
    assert.equal(await bridge.write(on, true), 0);
    const playing = await observer.waitFor<GroupState>('playing', observer.topics.groupState(groupId), (g) => g.playback.state === 'playing' && g.playback.anchor !== null, 20_000);
    await waitFor('the node plays the session', async () => (await readMeasure(node.measure)).filter((r) => r.session === playing.playback.session).length > 10, 20_000);
    const since = observer.messages.length;
    assert.equal(await bridge.write(speed, 28), 0);
    await waitFor('the node told group volume 28', () => observer.messages.slice(since).some((m) => m.topic === observer.topics.nodeCommand(node.uuid!) && (JSON.parse(m.payload.toString()) as { groupVolume?: number }).groupVolume === 28));
    await observer.command('pause', { groupId });
    await waitFor('On reads 0', async () => (await bridge.read(on)).value === 0, 10_000);
  });

  it('writes only inside Homebridge\'s storage path', async () => {
    assert.ok(existsSync(join(bridge.storage, 'firefly', 'hub', 'hub.sqlite')), 'the hub\'s state is in <storage>/firefly/hub');
    assert.deepEqual(await readdir(home), [], 'nothing in HOME');
  });

  it('SIGTERM stops the embedded hub and exits; a restart on the same port brings back the group and its accessory', async () => {
    const before = await fanOf('Attic');
    const exit = await bridge.stop();
    exits.push(`${exit.ms.toFixed(0)} ms (code ${exit.code}, signal ${exit.signal})`);
    assert.notEqual(exit.signal, 'SIGKILL', 'Homebridge needed SIGKILL');
    assert.equal(exit.code, bridge.cleanExitCode, 'Homebridge 2 exits by itself, not by its 5 s fallback (code 143)');
    assert.ok(bridge.lines.some((l) => l.includes('the embedded Firefly hub stopped')), bridge.tail());
    bridge = await Bridge.start({ storage: bridge.storage, port: bridge.port, username: bridge.username, platform, env: { HOME: home } });
    await bridge.ready();
    const after = await fanOf('Attic');
    assert.equal(after.aid, before.aid);
    await bridge.waitForLine('the Firefly hub is online');
    const on = findCharacteristic(after, Service.Fan.UUID, Characteristic.On.UUID);
    await waitFor('On readable from the restarted hub', async () => (await bridge.read(on)).value === 0, 30_000, 250);
    assert.deepEqual(await readdir(home), []);
    assert.deepEqual(bridge.pluginLines().filter((l) => /removing|adding/.test(l)), [], 'the cached accessory is kept as it is, not removed and added again');
    const again = await bridge.stop();
    exits.push(`${again.ms.toFixed(0)} ms (code ${again.code}, signal ${again.signal})`);
  });

  it('SIGTERM while the embedded hub is still starting stops it and exits cleanly', async () => {
    const early = await Bridge.start({ platform: { ...platform, embedded: { ...(platform.embedded as object), mqttPort: await freePort(), grpcPort: await freePort(), clockPort: await freeUdpPort() } }, env: { HOME: home } });
    await early.waitForLine('starting the embedded Firefly hub');
    const exit = await early.stop();
    exits.push(`during start ${exit.ms.toFixed(0)} ms (code ${exit.code}, signal ${exit.signal})`);
    assert.equal(exit.code, early.cleanExitCode, `exited by itself; log:\n${early.tail()}`);
    assert.ok(early.lines.some((l) => l.includes('the embedded Firefly hub stopped')), early.tail());
  });

  it('runs in a child bridge too (the hub in its own process beside Homebridge)', async () => {
    const childPort = await freePort();
    const childUsername = randomMac();
    const child = await Bridge.start({
      platform: { ...platform, _bridge: { username: childUsername, port: childPort }, embedded: { ...(platform.embedded as object), mqttPort: await freePort(), grpcPort: await freePort(), clockPort: await freeUdpPort() } },
      env: { HOME: home },
    });
    try {
      await child.ready();
      await child.waitForLine('library indexed', 60_000);
      const childBroker: BrokerAccess = { ...broker, url: `mqtt://127.0.0.1:${((await readPlatformPorts(child)) as { mqttPort: number }).mqttPort}` };
      await ctl(childBroker, ['group', 'create', 'Cellar', '--json']);
      const fan = await waitFor('the Cellar fan on the child bridge', async () => findAccessory(await child.accessories(childPort), Service.Fan.UUID, 'Cellar'), 30_000, 250);
      const on = findCharacteristic(fan, Service.Fan.UUID, Characteristic.On.UUID);
      assert.equal((await child.read(on, childPort)).value, 0);
      assert.equal((await child.accessories()).filter((a) => a.aid !== 1).length, 0, 'nothing on the main bridge');
    } finally {
      // Homebridge 2.4 with any child bridge waits for its 5 s fallback (code 143), plugin or not.
      const exit = await child.stop();
      exits.push(`child bridge ${exit.ms.toFixed(0)} ms (code ${exit.code}, signal ${exit.signal})`);
    }
    assert.ok(child.lines.some((l) => l.includes('the embedded Firefly hub stopped')), child.tail());
    // No hub left behind: its broker's port is free again.
    const { mqttPort } = (await readPlatformPorts(child)) as { mqttPort: number };
    await new Promise<void>((resolve, reject) => {
      const probe = createServer().once('error', reject);
      probe.listen(mqttPort, '127.0.0.1', () => probe.close(() => resolve()));
    });
  });

  it('a music folder that does not exist is a message in the log, not a crash', async () => {
    const bad = await Bridge.start({ platform: { ...platform, embedded: { ...(platform.embedded as object), library: ['/nonexistent/music'], mqttPort: await freePort(), grpcPort: await freePort(), clockPort: await freeUdpPort() } }, env: { HOME: home } });
    try {
      await bad.ready();
      const line = await bad.waitForLine('the embedded Firefly hub cannot start');
      assert.match(line, /\/nonexistent\/music/);
      await new Promise((r) => setTimeout(r, 1000));
      assert.ok(bad.running);
    } finally {
      const exit = await bad.stop();
      exits.push(`bad library ${exit.ms.toFixed(0)} ms (code ${exit.code}, signal ${exit.signal})`);
    }
  });
});
