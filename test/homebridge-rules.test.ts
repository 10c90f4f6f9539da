/**
 * Homebridge's rules for plugins (the cases its plugin checker looks at), against real
 * Homebridge: no load without a config block; only `{"platform":"Firefly"}` starts and
 * says what to configure; a bad config is logged, not a crash; the hub being down (and
 * coming and going) is survived, with "No Response" meanwhile; SIGTERM exits on its own
 * within a few seconds; a restart on the same port brings the cached accessory back.
 * The hub runs on a real Mosquitto with a password here, so the plugin also sees the
 * hub's own last will ("offline") while the broker stays up.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { GroupState } from '../src/protocol/schemas.js';
import { ctl, startControlHub, startMosquitto, type BrokerAccess, type HubProcess } from './helpers/control-plane.js';
import { Bridge, findAccessory, findCharacteristic, hap } from './helpers/homebridge.js';
import { cleanup, freePort, REPO_ROOT, tempDir, waitFor } from './helpers/processes.js';

const { Service, Characteristic } = hap;
const COMMUNICATION_FAILURE = -70402;

async function bridgedCount(bridge: Bridge): Promise<number> {
  return (await bridge.accessories()).filter((a) => a.aid !== 1).length;
}

describe('Homebridge plugin rules', () => {
  const exits: { what: string; ms: number; code: number | null; signal: string | null }[] = [];

  after(async () => {
    process.stderr.write(`SIGTERM → exit: ${exits.map((e) => `${e.what} ${e.ms.toFixed(0)} ms (code ${e.code}, signal ${e.signal})`).join('; ')}\n`);
    await cleanup();
  });

  it('external mode never loads the hub or SQLite; embedded mode does, only through its own import', () => {
    const script = (entry: string) => `
      import { registerHooks } from 'node:module';
      const urls = [];
      registerHooks({ resolve(s, c, next) { const r = next(s, c); urls.push(r.url); return r; } });
      await import(${JSON.stringify(join(REPO_ROOT, 'dist', 'src', 'homebridge', entry))});
      process.stdout.write(JSON.stringify(urls));`;
    const load = (entry: string) => {
      const out = spawnSync(process.execPath, ['--input-type=module', '-e', script(entry)], { encoding: 'utf8', cwd: REPO_ROOT });
      assert.equal(out.status, 0, out.stderr);
      return JSON.parse(out.stdout) as string[];
    };
    const plugin = load('index.js');
    assert.ok(plugin.some((u) => u.includes('/homebridge/platform.js')), 'the hook saw the plugin load');
    const heavy = plugin.filter((u) => u.includes('/dist/hub/') || u.includes('better-sqlite3'));
    assert.deepEqual(heavy, [], 'the plugin entry point loads no hub module');
    // The check can fail: the embedded hub's module does pull them in.
    const embedded = load('embedded-hub.js');
    assert.ok(embedded.some((u) => u.includes('/dist/hub/hub.js')));
    assert.ok(embedded.some((u) => u.includes('better-sqlite3')));
  });

  it('without a Firefly block the plugin loads but nothing of it runs', async () => {
    const bridge = await Bridge.start({});
    await bridge.ready();
    assert.ok(bridge.lines.some((l) => l.includes('Loaded plugin: homebridge-firefly')), bridge.tail());
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(bridge.pluginLines(), []);
    assert.equal(await bridgedCount(bridge), 0);
    assert.ok(!(await readdir(bridge.storage)).includes('firefly'), 'nothing written');
    exits.push({ what: 'no config block', ...(await bridge.stop()) });
  });

  it('with only {"platform":"Firefly"} it starts and says what to configure', async () => {
    const bridge = await Bridge.start({ platform: { platform: 'Firefly' } });
    await bridge.ready();
    const line = await bridge.waitForLine('Firefly is not configured yet');
    assert.match(line, /mqttUrl/);
    assert.match(line, /embedded/);
    assert.equal(await bridgedCount(bridge), 0);
    assert.ok(bridge.running);
    exits.push({ what: 'unconfigured', ...(await bridge.stop()) });
  });

  it('a bad config is refused in the log, naming each setting, and Homebridge keeps running', async () => {
    const bridge = await Bridge.start({ platform: { platform: 'Firefly', mode: 'remote', mqttUrl: 42, embedded: { library: [] } } });
    await bridge.ready();
    await bridge.waitForLine('The Firefly settings cannot be used');
    for (const setting of ['setting mode', 'setting mqttUrl', 'setting embedded.library']) assert.ok(bridge.pluginLines().some((l) => l.includes(setting)), `${setting} in:\n${bridge.pluginLines().join('\n')}`);
    await new Promise((r) => setTimeout(r, 1000));
    assert.ok(bridge.running);
    assert.equal(await bridgedCount(bridge), 0);
    exits.push({ what: 'bad config', ...(await bridge.stop()) });
  });

  it('keeps running and retrying while nothing answers at the broker address', async () => {
    const port = await freePort();
    const bridge = await Bridge.start({ platform: { platform: 'Firefly', mqttUrl: `mqtt://127.0.0.1:${port}` } });
    await bridge.ready();
    const line = await bridge.waitForLine(/MQTT broker mqtt:\/\/127\.0\.0\.1:\d+: .*retrying every second/);
    assert.match(line, /ECONNREFUSED/);
    await new Promise((r) => setTimeout(r, 3000));
    assert.ok(bridge.running);
    assert.equal(bridge.pluginLines().filter((l) => l.includes('ECONNREFUSED')).length, 1, 'the same problem is said once, not every second');
    exits.push({ what: 'broker unreachable', ...(await bridge.stop()) });
  });

  describe('the hub coming and going', () => {
    let broker: BrokerAccess;
    let hub: HubProcess | undefined;
    let bridge: Bridge;
    let library: string;
    let hubData: string;

    before(async () => {
      broker = await startMosquitto();
      library = await tempDir('firefly-music-');
      hubData = await tempDir('firefly-hub-');
      bridge = await Bridge.start({ platform: { platform: 'Firefly', mqttUrl: broker.url, mqttUsername: broker.username, mqttPassword: broker.password, topicPrefix: broker.prefix } });
      await bridge.ready();
    });

    after(async () => {
      await bridge?.stop();
      await hub?.proc.stop();
      await broker?.stop();
    });

    it('starts with no hub there and waits for it', async () => {
      await bridge.waitForLine('connected to the MQTT broker');
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(await bridgedCount(bridge), 0);
      assert.ok(bridge.running);
    });

    it('shows the hub\'s group once the hub comes', async () => {
      hub = await startControlHub(broker, { library, dataDir: hubData });
      const created = JSON.parse(await ctl(broker, ['group', 'create', 'Study', '--json'])) as GroupState;
      assert.ok(created.groupId > 0);
      const fan = await waitFor('the Study fan', async () => findAccessory(await bridge.accessories(), Service.Fan.UUID, 'Study'), 30_000, 250);
      const on = findCharacteristic(fan, Service.Fan.UUID, Characteristic.On.UUID);
      assert.equal((await bridge.read(on)).value, 0);
    });

    it('answers "No Response" (communication failure) while the hub is down, never a stale value, and recovers', async () => {
      const fan = findAccessory(await bridge.accessories(), Service.Fan.UUID, 'Study')!;
      const on = findCharacteristic(fan, Service.Fan.UUID, Characteristic.On.UUID);
      const speed = findCharacteristic(fan, Service.Fan.UUID, Characteristic.RotationSpeed.UUID);
      await hub!.proc.stop();
      await waitFor('On fails', async () => (await bridge.read(on)).status === COMMUNICATION_FAILURE, 15_000, 200);
      assert.equal((await bridge.read(speed)).status, COMMUNICATION_FAILURE);
      assert.equal(await bridge.write(on, true), COMMUNICATION_FAILURE, 'a write while the hub is away fails too');
      assert.equal(await bridgedCount(bridge), 1, 'the accessory stays (the hub may come back)');
      hub = await startControlHub(broker, { library, dataDir: hubData });
      await waitFor('On readable again', async () => (await bridge.read(on)).value === 0, 30_000, 200);
      assert.equal(bridge.pluginLines().filter((l) => l.includes('removing')).length, 0, 'nothing removed while the hub was away');
      const again = findAccessory(await bridge.accessories(), Service.Fan.UUID, 'Study')!;
      assert.equal(again.aid, fan.aid);
    });

    it('exits by itself soon after SIGTERM, and a restart on the same port restores the cached accessory', async () => {
      const before = findAccessory(await bridge.accessories(), Service.Fan.UUID, 'Study')!;
      const exit = await bridge.stop();
      exits.push({ what: 'with a hub connection', ...exit });
      assert.notEqual(exit.signal, 'SIGKILL', 'Homebridge needed SIGKILL');
      assert.equal(exit.code, bridge.cleanExitCode, 'Homebridge 2 exits by itself, not by its 5 s fallback (code 143)');
      await hub!.proc.stop();
      hub = undefined;
      // Same storage, port and identity; the hub is down this time.
      bridge = await Bridge.start({ storage: bridge.storage, port: bridge.port, username: bridge.username, platform: { platform: 'Firefly', mqttUrl: broker.url, mqttUsername: broker.username, mqttPassword: broker.password, topicPrefix: broker.prefix } });
      await bridge.ready();
      assert.ok(!bridge.lines.some((l) => /EADDRINUSE/.test(l)));
      const restored = findAccessory(await bridge.accessories(), Service.Fan.UUID, 'Study');
      assert.ok(restored, 'the cached accessory is back before the hub is');
      assert.equal(restored.aid, before.aid);
      const on = findCharacteristic(restored, Service.Fan.UUID, Characteristic.On.UUID);
      assert.equal((await bridge.read(on)).status, COMMUNICATION_FAILURE, 'restored from the cache but not yet confirmed by the hub: No Response');
      const exitDown = await bridge.stop();
      exits.push({ what: 'hub down, reconnecting', ...exitDown });
      assert.notEqual(exitDown.signal, 'SIGKILL');
      assert.equal(exitDown.code, bridge.cleanExitCode);
    });
  });
});
