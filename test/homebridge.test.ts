/**
 * The Homebridge plugin in external mode, end to end: a real hub (embedded broker) with two
 * real nodes on measurement outputs, real Homebridge loading the plugin from this
 * repository, and HAP over HTTP (insecure mode) as the Home app would use it — plus one
 * real HomeKit client (hap-controller) that pairs with the bridge's PIN and receives a
 * pushed event. Characteristics are found by their HAP type, never by fixed iids.
 */
import { strict as assert } from 'node:assert';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { GroupState } from '../src/protocol/schemas.js';
import { makeTrack } from './helpers/audio.js';
import { ctl, embeddedBroker, Observer, startControlHub, startControlNode, type BrokerAccess, type HubProcess } from './helpers/control-plane.js';
import { Bridge, findAccessory, findCharacteristic, hap, hapType, PIN, type HapAccessory } from './helpers/homebridge.js';
import { readMeasure } from './helpers/measure.js';
import { cleanup, ctlLibrary, tempDir, waitFor, type FireflyProcess } from './helpers/processes.js';

const { Service, Characteristic } = hap;

function findCharacteristicType(type: string, uuid: string): boolean {
  return hapType(type) === hapType(uuid);
}

describe('Homebridge plugin, external hub over MQTT', () => {
  let broker: BrokerAccess;
  let hub: HubProcess;
  let observer: Observer;
  let bridge: Bridge;
  let groupId: number;
  const nodes: { name: string; proc: FireflyProcess; measure: string; uuid?: string }[] = [];

  function groupState(id = groupId): GroupState | undefined {
    return observer.last<GroupState>(observer.topics.groupState(id));
  }

  async function fanOf(name: string, timeoutMs = 30_000): Promise<HapAccessory> {
    return waitFor(`a Fan named ${name} on the bridge`, async () => findAccessory(await bridge.accessories(), Service.Fan.UUID, name), timeoutMs, 250);
  }

  before(async () => {
    broker = await embeddedBroker();
    const library = await tempDir('firefly-music-');
    await makeTrack(join(library, 'a.flac'), { format: 'flac', seconds: 60, seed: 1, title: 'A' });
    await makeTrack(join(library, 'b.ogg'), { format: 'ogg', seconds: 10, seed: 2, title: 'B' });
    hub = await startControlHub(broker, { library });
    await hub.proc.waitForLog('library indexed', 60_000);
    const entries = await ctlLibrary(hub.grpc);
    assert.equal(entries.length, 2);

    observer = await new Observer(broker).connect();
    await observer.subscribe(`${broker.prefix}/group/+/state`, `${broker.prefix}/node/+/command`, `${broker.prefix}/hub/nodes`);
    for (const name of ['kitchen', 'den']) {
      const measure = join(await tempDir('firefly-measure-'), 'frames.jsonl');
      const { proc } = await startControlNode(broker, hub, {
        name,
        extraArgs: ['--serve-host', '127.0.0.1', '--serve-port', '0', '--output', 'measure', '--measure-file', measure, '--output-buffer', '50'],
      });
      nodes.push({ name, proc, measure });
    }
    for (const n of nodes) await n.proc.waitForLog((l) => l.msg === 'sync complete' && (l.chunksWanted as number) > 0, 60_000);
    await waitFor('both nodes online at the hub', async () => (await ctl(broker, ['nodes', '--json'])).trim().split('\n').filter((l) => l.includes('"online":true')).length === 2, 20_000);
    for (const n of nodes) n.uuid = (JSON.parse((await ctl(broker, ['nodes', '--json'])).trim().split('\n').find((l) => l.includes(`"name":"${n.name}"`))!) as { uuid: string }).uuid;
    // A name HomeKit refuses as it is: "+" and a trailing "!".
    const created = JSON.parse(await ctl(broker, ['group', 'create', 'Kitchen + Den!', 'kitchen', 'den', '--json'])) as GroupState;
    groupId = created.groupId;
    await observer.command('queue/add', { groupId, entryIds: entries.map((e) => e.id) });

    bridge = await Bridge.start({
      platform: { platform: 'Firefly', mqttUrl: broker.url, topicPrefix: broker.prefix, groups: [{ group: 'Porch', accessoryType: 'lightbulb', smartSpeaker: true, television: true }, { group: 'shed', accessoryType: 'switch' }] },
    });
    await bridge.ready();
  });

  after(async () => {
    if (process.env.FIREFLY_TEST_KEEP) process.stderr.write(`--- Homebridge log ---\n${bridge?.tail(200)}\n`);
    await bridge?.stop();
    await observer?.close();
    await cleanup();
  });

  it('shows the group as a Fan with a HomeKit-safe name, ConfiguredName, and the hub\'s values', async () => {
    const fan = await fanOf('Kitchen Den');
    assert.equal(findCharacteristic(fan, Service.AccessoryInformation.UUID, Characteristic.Manufacturer.UUID).value, 'Firefly');
    const configured = findCharacteristic(fan, Service.Fan.UUID, Characteristic.ConfiguredName.UUID);
    assert.equal((await bridge.read(configured)).value, 'Kitchen Den');
    const on = findCharacteristic(fan, Service.Fan.UUID, Characteristic.On.UUID);
    const speed = findCharacteristic(fan, Service.Fan.UUID, Characteristic.RotationSpeed.UUID);
    assert.equal((await bridge.read(on)).value, 0, 'HAP sends booleans as 0/1');
    assert.equal((await bridge.read(speed)).value, groupState()!.volume);
    assert.ok(!bridge.lines.some((l) => l.includes('HAP-NodeJS WARNING')), `HAP warned about a name:\n${bridge.lines.filter((l) => l.includes('WARNING')).join('\n')}`);
    // One bridged accessory for the one group (aid 1 is the bridge itself).
    assert.equal((await bridge.accessories()).filter((a) => a.aid !== 1).length, 1);
  });

  it('turning the fan on starts playback on both nodes', async () => {
    const fan = await fanOf('Kitchen Den');
    const on = findCharacteristic(fan, Service.Fan.UUID, Characteristic.On.UUID);
    const t0 = Date.now();
    assert.equal(await bridge.write(on, true), 0);
    const written = Date.now();
    const playing = await observer.waitFor<GroupState>('the group playing', observer.topics.groupState(groupId), (g) => g.playback.state === 'playing' && g.playback.anchor !== null, 20_000);
    const seen = observer.messages.find((m) => m.topic === observer.topics.groupState(groupId) && m.payload.includes(`"session":"${playing.playback.session}"`) && m.payload.includes('"anchor":{'));
    process.stderr.write(`HAP write On → answered ${written - t0} ms; → start scheduled on the hub (state with an anchor seen) ${(seen?.at ?? NaN) - t0} ms\n`);
    for (const n of nodes) {
      await waitFor(`${n.name} plays frames of the session`, async () => (await readMeasure(n.measure)).filter((r) => r.session === playing.playback.session).length > 10, 20_000);
    }
    assert.equal((await bridge.read(on)).value, 1);
  });

  it('a speed write reaches every node as its group volume', async () => {
    const fan = await fanOf('Kitchen Den');
    const speed = findCharacteristic(fan, Service.Fan.UUID, Characteristic.RotationSpeed.UUID);
    const since = observer.messages.length;
    assert.equal(await bridge.write(speed, 35), 0);
    for (const n of nodes) {
      await waitFor(`${n.name} told group volume 35`, () =>
        observer.messages.slice(since).some((m) => m.topic === observer.topics.nodeCommand(n.uuid!) && (JSON.parse(m.payload.toString()) as { command: string; groupVolume?: number }).groupVolume === 35),
      );
    }
    assert.equal(groupState()!.volume, 35);
    assert.equal((await bridge.read(speed)).value, 35);
  });

  it('a pause sent over MQTT shows in the characteristic values', async () => {
    const fan = await fanOf('Kitchen Den');
    const on = findCharacteristic(fan, Service.Fan.UUID, Characteristic.On.UUID);
    await observer.command('pause', { groupId });
    await waitFor('On reads false', async () => (await bridge.read(on)).value === 0, 10_000);
    // And a volume set elsewhere too.
    await observer.command('group/volume', { groupId, volume: 62 });
    const speed = findCharacteristic(fan, Service.Fan.UUID, Characteristic.RotationSpeed.UUID);
    await waitFor('Rotation Speed reads 62', async () => (await bridge.read(speed)).value === 62, 10_000);
  });

  it('a group created on the hub appears without a restart, renamed follows, and a deleted one goes', async () => {
    const created = JSON.parse(await ctl(broker, ['group', 'create', 'Patio', '--json'])) as GroupState;
    const patio = await fanOf('Patio');
    await ctl(broker, ['group', 'rename', 'Patio', 'Garden', '--json']);
    const garden = await fanOf('Garden');
    assert.equal(garden.aid, patio.aid, 'a rename keeps the accessory (its UUID comes from the group id)');
    assert.equal(findCharacteristic(garden, Service.AccessoryInformation.UUID, Characteristic.Name.UUID).value, 'Garden');
    const configured = findCharacteristic(garden, Service.Fan.UUID, Characteristic.ConfiguredName.UUID);
    assert.equal((await bridge.read(configured)).value, 'Garden');
    // A name typed in the Home app renames the group on the hub.
    assert.equal(await bridge.write(configured, 'Back Garden'), 0);
    await observer.waitFor<GroupState>('the group renamed on the hub', observer.topics.groupState(created.groupId), (g) => g.name === 'Back Garden', 10_000);
    await fanOf('Back Garden');
    await ctl(broker, ['group', 'delete', String(created.groupId)]);
    await waitFor('Garden gone from the bridge', async () => !(await bridge.accessories()).some((a) => a.aid === garden.aid), 30_000, 250);
    assert.ok(await fanOf('Kitchen Den'), 'the other group stays');
  });

  it('per-group settings: a Lightbulb, plus an external SmartSpeaker (category 26) and Television (category 31) published on their own ports', async () => {
    const porch = JSON.parse(await ctl(broker, ['group', 'create', 'Porch', '--json'])) as GroupState;
    const bulb = await waitFor('a Lightbulb named Porch', async () => findAccessory(await bridge.accessories(), Service.Lightbulb.UUID, 'Porch'), 30_000, 250);
    assert.equal(findAccessory([bulb], Service.Fan.UUID), undefined, 'no fan beside the lightbulb');
    const brightness = findCharacteristic(bulb, Service.Lightbulb.UUID, Characteristic.Brightness.UUID);
    assert.equal(await bridge.write(brightness, 40), 0);
    await observer.waitFor<GroupState>('Porch at volume 40', observer.topics.groupState(porch.groupId), (g) => g.volume === 40, 10_000);

    // Homebridge 2 records each external accessory with its category; Homebridge 1 keeps no such file.
    if (bridge.major >= 2) {
      const externals = await waitFor('both external accessories listed', async () => {
        const text = await readFile(join(bridge.storage, 'accessories', 'externalAccessories'), 'utf8').catch(() => '[]');
        const list = JSON.parse(text) as { displayName: string; category: number; port: number; plugin: string }[];
        return list.filter((e) => e.displayName === 'Porch').length === 2 ? list : undefined;
      }, 30_000, 250);
      assert.deepEqual(externals.filter((e) => e.displayName === 'Porch').map((e) => e.category).sort(), [hap.Categories.SPEAKER, hap.Categories.TELEVISION].sort(), JSON.stringify(externals));
      assert.ok(externals.every((e) => e.plugin === 'homebridge-firefly'));
    }
    // Each answers HAP on its own port (external: paired on its own with the bridge's code).
    const ports = await waitFor('both external accessories listening', () => {
      const found = bridge.lines.map((l) => /Porch [0-9A-F]{4} is running on port (\d+)/.exec(l)).filter((m) => m !== null).map((m) => Number(m[1]));
      return found.length === 2 ? found : undefined;
    }, 20_000);
    const byPort = await Promise.all(ports.map(async (port) => ({ port, accessory: (await bridge.accessories(port))[0] })));
    const speakerSide = byPort.find((x) => findAccessory([x.accessory], Service.SmartSpeaker.UUID));
    const tvSide = byPort.find((x) => findAccessory([x.accessory], Service.Television.UUID));
    assert.ok(speakerSide && tvSide, 'one SmartSpeaker and one Television');
    const speakerEntry = { port: speakerSide.port };
    const tvEntry = { port: tvSide.port };
    const speaker = speakerSide.accessory;
    const volume = findCharacteristic(speaker, Service.SmartSpeaker.UUID, Characteristic.Volume.UUID);
    assert.equal((await bridge.read(volume, speakerEntry.port)).value, 40);
    const current = findCharacteristic(speaker, Service.SmartSpeaker.UUID, Characteristic.CurrentMediaState.UUID);
    assert.equal((await bridge.read(current, speakerEntry.port)).value, Characteristic.CurrentMediaState.STOP);
    const mute = findCharacteristic(speaker, Service.SmartSpeaker.UUID, Characteristic.Mute.UUID);
    assert.equal(await bridge.write(mute, true, speakerEntry.port), 0);
    await observer.waitFor<GroupState>('Porch muted', observer.topics.groupState(porch.groupId), (g) => g.playback.muted, 10_000);

    const tv = tvSide.accessory;
    const tvSpeaker = findCharacteristic(tv, Service.TelevisionSpeaker.UUID, Characteristic.Volume.UUID);
    assert.equal((await bridge.read(tvSpeaker, tvEntry.port)).value, 40);
    const active = findCharacteristic(tv, Service.Television.UUID, Characteristic.Active.UUID);
    assert.equal((await bridge.read(active, tvEntry.port)).value, 0);
    // The inputs are the hub's saved playlists (retained hub/playlists). The hub in this
    // tree has no playlist module yet, so the test publishes the list the hub would.
    const playlists = (list: { playlistId: number; name: string }[]) => ({ playlists: list.map((p) => ({ ...p, entryIds: [1], durationMs: 60_000 })), at: Date.now() });
    await observer.publish(observer.topics.playlists, playlists([{ playlistId: 7, name: 'Jazz + Blues' }, { playlistId: 9, name: 'Morning' }]), { retain: true });
    const inputNames = async () => {
      const [acc] = await bridge.accessories(tvEntry.port);
      return acc.services
        .filter((svc) => findAccessory([{ aid: acc.aid, services: [svc] }], Service.InputSource.UUID))
        .map((svc) => ({ name: svc.characteristics.find((c) => findCharacteristicType(c.type, Characteristic.ConfiguredName.UUID))?.value, id: svc.characteristics.find((c) => findCharacteristicType(c.type, Characteristic.Identifier.UUID))?.value }))
        .sort((a, b) => Number(a.id) - Number(b.id));
    };
    await waitFor('two inputs', async () => (await inputNames()).length === 2, 15_000, 250);
    assert.deepEqual(await inputNames(), [{ name: 'Jazz Blues', id: 7 }, { name: 'Morning', id: 9 }]);
    const input = findCharacteristic((await bridge.accessories(tvEntry.port))[0], Service.Television.UUID, Characteristic.ActiveIdentifier.UUID);
    assert.equal(await bridge.write(input, 9, tvEntry.port), 0);
    // The command reached the hub as play {groupId, playlistId}; this hub refuses it (no playlist module), and the plugin says so.
    await bridge.waitForLine(/Porch: the hub refused play: .*no playlist 9/, 15_000);
    assert.equal((await bridge.read(input, tvEntry.port)).value, 0, 'a refused input is not shown as chosen');
    await observer.publish(observer.topics.playlists, playlists([{ playlistId: 9, name: 'Evening' }]), { retain: true });
    await waitFor('inputs follow the playlists', async () => JSON.stringify(await inputNames()) === JSON.stringify([{ name: 'Evening', id: 9 }]), 15_000, 250);

    await ctl(broker, ['group', 'delete', String(porch.groupId)]);
    // Homebridge cannot withdraw an external accessory before a restart: it answers "No Response" instead.
    await waitFor('the speaker says No Response', async () => (await bridge.read(volume, speakerEntry.port)).status === -70402, 15_000, 250);
  });

  it('a Switch for a group set so; "on" with nothing queued is refused by the hub and logged, and the switch reads off', async () => {
    await ctl(broker, ['group', 'create', 'Shed', '--json']);
    const shed = await waitFor('a Switch named Shed', async () => findAccessory(await bridge.accessories(), Service.Switch.UUID, 'Shed'), 30_000, 250);
    assert.equal(findAccessory([shed], Service.Fan.UUID), undefined);
    const on = findCharacteristic(shed, Service.Switch.UUID, Characteristic.On.UUID);
    assert.equal(await bridge.write(on, true), 0);
    await bridge.waitForLine(/Shed: the hub refused play/, 10_000);
    await waitFor('the switch reads off', async () => (await bridge.read(on)).value === 0, 10_000, 100);
    await ctl(broker, ['group', 'delete', 'Shed']);
  });

  it('a HomeKit client pairs with the PIN, subscribes to the volume and gets the push when it changes on the hub', async () => {
    const { HttpClient } = (await import('hap-controller')) as typeof import('hap-controller');
    const secure = await Bridge.start({ platform: { platform: 'Firefly', mqttUrl: broker.url, topicPrefix: broker.prefix }, insecure: false });
    try {
      await secure.ready();
      const client = new HttpClient(secure.username, '127.0.0.1', secure.port);
      await client.pairSetup(PIN);
      const paired = new HttpClient(secure.username, '127.0.0.1', secure.port, client.getLongTermData()!);
      const accessories = (await paired.getAccessories()) as { accessories: HapAccessory[] };
      const fan = await waitFor('the Fan over the paired connection', async () => {
        const list = ((await paired.getAccessories()) as { accessories: HapAccessory[] }).accessories;
        return findAccessory(list, Service.Fan.UUID, 'Kitchen Den');
      }, 30_000, 500);
      assert.ok(accessories.accessories.length >= 1);
      const speed = findCharacteristic(fan, Service.Fan.UUID, Characteristic.RotationSpeed.UUID);
      const key = `${speed.aid}.${speed.iid}`;
      const events: { aid: number; iid: number; value: unknown }[] = [];
      paired.on('event', (e: { characteristics: { aid: number; iid: number; value: unknown }[] }) => events.push(...e.characteristics));
      await paired.subscribeCharacteristics([key]);
      const t0 = Date.now();
      await observer.command('group/volume', { groupId, volume: 47 });
      await waitFor('the volume event', () => events.some((e) => e.aid === speed.aid && e.iid === speed.iid && e.value === 47), 15_000, 5);
      process.stderr.write(`volume command on the hub → HomeKit event at the paired client: ${Date.now() - t0} ms (including the command's reply)\n`);
      // Writes go through the paired session as well.
      await paired.setCharacteristics({ [key]: 53 });
      await observer.waitFor<GroupState>('volume 53 on the hub', observer.topics.groupState(groupId), (g) => g.volume === 53, 10_000);
      await paired.unsubscribeCharacteristics([key]);
      paired.closePersistentConnection();
      // Without pairing, nothing is readable.
      const res = await fetch(`http://127.0.0.1:${secure.port}/accessories`, { headers: { Authorization: PIN }, signal: AbortSignal.timeout(10_000) });
      assert.notEqual(res.status, 200);
    } finally {
      await secure.stop();
    }
  });
});
