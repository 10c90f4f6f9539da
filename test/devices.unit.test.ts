/**
 * The parts of Chromecast and Sonos support that need no hub: compensation math, Range
 * parsing, addresses, discovery parsing, the remembered-devices table, configuration, and
 * the adapters against the doubles with the real client libraries (timeouts, Sonos
 * grouping, no event listener).
 */
import { strict as assert } from 'node:assert';
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { describe, it, after } from 'node:test';
import { hubConfigSchema } from '../src/config/schema.js';
import { hubConfigFrom } from '../src/cli/options.js';
import { createLogger } from '../src/log.js';
import { openHubDb } from '../hub/hub-db.js';
import { LagBounds, planStart, positionAt, StartDelayEstimate } from '../hub/devices/compensation.js';
import { CastAdapter } from '../hub/devices/cast-adapter.js';
import { DeviceStore } from '../hub/devices/device-store.js';
import { advertiseHost, deviceUuid, parseAddress } from '../hub/devices/devices.js';
import { castFromService, DeviceDiscovery, sonosFromSsdp, type FoundDevice } from '../hub/devices/discovery.js';
import { parseTime, SonosAdapter } from '../hub/devices/sonos-adapter.js';
import { parseRange } from '../hub/devices/streams.js';
import { DeviceGoneError } from '../hub/devices/transport.js';
import { cleanup, freePort, tempDir } from './helpers/processes.js';
import { CastDouble } from './doubles/cast-double.js';
import { SonosDouble } from './doubles/sonos-double.js';

const silent = createLogger('test', 'silent');

after(() => cleanup());

describe('compensation math', () => {
  const t = { atHubMs: 10_000, positionMs: 5_000 };

  it('plans a play its start delay early when there is time', () => {
    assert.deepEqual(planStart(t, 9_000, 400, { leadMs: 100, granularityMs: 1 }), { issueAtMs: 9_600, positionMs: 5_000 });
  });

  it('when that moment has passed, starts further into the track so it still lands on the timeline', () => {
    const p = planStart(t, 9_900, 400, { leadMs: 100, granularityMs: 1 });
    assert.ok(p.issueAtMs >= 10_000 - 0.001, `issued at ${p.issueAtMs}`);
    // Told at issueAt, it sounds at issueAt + 400 — exactly when the timeline is at p.positionMs.
    assert.ok(Math.abs(positionAt(t, p.issueAtMs + 400) - p.positionMs) < 1e-6);
  });

  it('rounds up to whole seconds for a device that seeks in seconds (Sonos)', () => {
    const p = planStart({ atHubMs: 10_000, positionMs: 5_300 }, 9_950, 700, { leadMs: 100, granularityMs: 1000 });
    assert.equal(p.positionMs % 1000, 0);
    assert.ok(p.issueAtMs >= 9_950 + 100);
    assert.ok(Math.abs(positionAt({ atHubMs: 10_000, positionMs: 5_300 }, p.issueAtMs + 700) - p.positionMs) < 1e-6);
  });

  it('narrows a whole-second device to its true lag from readings at many phases', () => {
    const timeline = { atHubMs: 0, positionMs: 0 };
    const lag = new LagBounds(timeline);
    const trueLag = 137;
    let rnd = 7;
    const random = () => ((rnd = (rnd * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let i = 0; i < 40; i++) {
      const sent = 2000 + i * 211 + random() * 50;
      const received = sent + 2 + random() * 4;
      const at = sent + (received - sent) * random();
      const seconds = Math.floor((positionAt(timeline, at) - trueLag) / 1000);
      lag.add({ sentMs: sent, receivedMs: received, loMs: seconds * 1000, hiMs: seconds * 1000 + 1000 });
    }
    assert.ok(Math.abs(lag.estimateMs! - trueLag) < 15, `estimate ${lag.estimateMs}, width ${lag.widthMs}`);
    assert.ok(lag.widthMs < 40, `width ${lag.widthMs}`);
  });

  it('a reading that contradicts the others (the device jumped) starts the interval again', () => {
    const lag = new LagBounds({ atHubMs: 0, positionMs: 0 });
    lag.add({ sentMs: 1000, receivedMs: 1002, loMs: 900, hiMs: 900 });
    assert.ok(Math.abs(lag.estimateMs! - 101) < 2);
    lag.add({ sentMs: 2000, receivedMs: 2002, loMs: 1500, hiMs: 1500 });
    assert.equal(lag.readings, 1);
    assert.ok(Math.abs(lag.estimateMs! - 501) < 2);
  });

  it('the start delay is the median of recent measurements', () => {
    const d = new StartDelayEstimate(300, 5);
    assert.equal(d.valueMs, 300);
    assert.equal(d.measured, false);
    d.observe(300, 100);
    d.observe(400, 10);
    d.observe(400, 2000);
    assert.equal(d.valueMs, 410);
    // One fine measurement outvotes the coarse ones.
    const c = new StartDelayEstimate(300);
    c.observe(300, 700, false);
    c.observe(300, 650, false);
    c.observe(900, 5, true);
    assert.equal(c.valueMs, 905);
  });
});

describe('streams, addresses, discovery parsing', () => {
  it('parses Range headers as devices send them', () => {
    assert.equal(parseRange(undefined, 1000), 'whole');
    assert.deepEqual(parseRange('bytes=0-99', 1000), { start: 0, end: 99 });
    assert.deepEqual(parseRange('bytes=900-', 1000), { start: 900, end: 999 });
    assert.deepEqual(parseRange('bytes=-100', 1000), { start: 900, end: 999 });
    assert.deepEqual(parseRange('bytes=0-5000', 1000), { start: 0, end: 999 });
    assert.equal(parseRange('bytes=1000-', 1000), 'unsatisfiable');
    assert.equal(parseRange('bytes=5-2', 1000), 'unsatisfiable');
    assert.equal(parseRange('items=0-5', 1000), 'unsatisfiable');
    assert.equal(parseRange('bytes=0-1,5-6', 1000), 'whole');
  });

  it('stream URLs never carry loopback unless configured', () => {
    const lo = { address: '127.0.0.1', family: 'IPv4', internal: true, netmask: '255.0.0.0', mac: '00:00:00:00:00:00', cidr: '127.0.0.1/8' } as const;
    const eth = { address: '192.168.1.20', family: 'IPv4', internal: false, netmask: '255.255.255.0', mac: '02:00:00:00:00:01', cidr: '192.168.1.20/24' } as const;
    const link = { ...eth, address: '169.254.3.3', cidr: '169.254.3.3/16' } as const;
    assert.equal(advertiseHost(undefined, { lo: [lo] }), undefined);
    assert.equal(advertiseHost(undefined, { lo: [lo], eth0: [link, eth] }), '192.168.1.20');
    assert.equal(advertiseHost('music.local', { lo: [lo], eth0: [eth] }), 'music.local');
  });

  it('device addresses and ids', () => {
    assert.deepEqual(parseAddress('10.0.0.5', 8009), { host: '10.0.0.5', port: 8009 });
    assert.deepEqual(parseAddress('10.0.0.5:8010', 8009), { host: '10.0.0.5', port: 8010 });
    assert.deepEqual(parseAddress('[fe80::1]:1400', 1400), { host: 'fe80::1', port: 1400 });
    assert.equal(deviceUuid('sonos', 'fe80::1', 1400), 'sonos-fe80::1-1400');
    assert.match(deviceUuid('cast', 'living room.local', 8009), /^[A-Za-z0-9._:-]+$/);
    assert.equal(parseTime('0:01:05'), 65);
    assert.equal(parseTime('NOT_IMPLEMENTED'), 0);
  });

  it('reads Sonos SSDP answers and Cast mDNS records, and ignores others', () => {
    const sonos = 'HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age = 1800\r\nLOCATION: http://192.168.1.30:1400/xml/device_description.xml\r\nSERVER: Linux UPnP/1.0 Sonos/70.3-35220 (ZPS1)\r\nST: urn:schemas-upnp-org:device:ZonePlayer:1\r\nUSN: uuid:RINCON_000E58A0B0C001400::urn:schemas-upnp-org:device:ZonePlayer:1\r\n\r\n';
    assert.deepEqual(sonosFromSsdp(sonos), { kind: 'sonos', name: 'Sonos 192.168.1.30', host: '192.168.1.30', port: 1400 });
    assert.equal(sonosFromSsdp('HTTP/1.1 200 OK\r\nST: urn:dial-multiscreen-org:service:dial:1\r\nLOCATION: http://1.2.3.4:8008/\r\n\r\n'), undefined);
    assert.equal(sonosFromSsdp('M-SEARCH * HTTP/1.1\r\nST: urn:schemas-upnp-org:device:ZonePlayer:1\r\n\r\n'), undefined);
    assert.deepEqual(castFromService({ name: 'Chromecast-abc', addresses: ['fe80::1', '192.168.1.40'], port: 8009, txt: { fn: 'Kitchen speaker', id: 'abc' } } as never), { kind: 'cast', name: 'Kitchen speaker', host: '192.168.1.40', port: 8009 });
    assert.equal(castFromService({ name: 'x', addresses: [], port: 8009, txt: {} } as never), undefined);
  });

  it('finds a Sonos speaker by SSDP (answered on loopback)', async () => {
    const responder = createSocket('udp4');
    await new Promise<void>((r) => responder.bind(0, '127.0.0.1', () => r()));
    const searches: string[] = [];
    responder.on('message', (msg, from) => {
      searches.push(msg.toString());
      responder.send(Buffer.from('HTTP/1.1 200 OK\r\nLOCATION: http://127.0.0.1:1411/xml/device_description.xml\r\nSERVER: Linux UPnP/1.0 Sonos/70.3\r\nST: urn:schemas-upnp-org:device:ZonePlayer:1\r\n\r\n'), from.port, from.address);
    });
    const found: FoundDevice[] = [];
    const d = new DeviceDiscovery((f) => found.push(f), silent, { intervalMs: 200, mdns: false, ssdpTarget: { host: '127.0.0.1', port: (responder.address() as { port: number }).port } });
    await d.start();
    const deadline = Date.now() + 5000;
    while (found.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await d.stop();
    responder.close();
    assert.match(searches[0], /^M-SEARCH \* HTTP\/1\.1\r\n[\s\S]*ST: urn:schemas-upnp-org:device:ZonePlayer:1/);
    assert.deepEqual(found, [{ kind: 'sonos', name: 'Sonos 127.0.0.1', host: '127.0.0.1', port: 1411 }], 'found once, though answered several times');
  });
});

describe('devices in SQLite and in the configuration', () => {
  it('remembers devices across a restart; a manual entry stays manual; each gets a node row of its kind', async () => {
    const dir = await tempDir('firefly-devices-db-');
    let db = openHubDb(dir);
    let store = new DeviceStore(db);
    store.remember({ uuid: 'cast-10.0.0.9-8009', kind: 'cast', name: 'Lounge TV', host: '10.0.0.9', port: 8009, source: 'discovered' });
    store.remember({ uuid: 'sonos-10.0.0.7-1400', kind: 'sonos', name: 'Sonos 10.0.0.7', host: '10.0.0.7', port: 1400, source: 'manual' });
    store.remember({ uuid: 'sonos-10.0.0.7-1400', kind: 'sonos', name: 'Study', host: '10.0.0.7', port: 1400, source: 'discovered' });
    store.saveStartDelay('cast-10.0.0.9-8009', 412.5);
    db.close();
    db = openHubDb(dir);
    store = new DeviceStore(db);
    const list = store.list();
    assert.deepEqual(
      list.map((d) => [d.uuid, d.kind, d.source, d.startDelayMs]),
      [
        ['cast-10.0.0.9-8009', 'cast', 'discovered', 412.5],
        ['sonos-10.0.0.7-1400', 'sonos', 'manual', null],
      ],
    );
    const kinds = db.prepare('SELECT uuid, kind FROM nodes ORDER BY id').all();
    assert.deepEqual(kinds, [
      { uuid: 'cast-10.0.0.9-8009', kind: 'cast' },
      { uuid: 'sonos-10.0.0.7-1400', kind: 'sonos' },
    ]);
    db.close();
  });

  it('has discovery on by default; addresses come as lists or comma-separated text; a bad one is named', () => {
    const d = hubConfigSchema.parse({}).devices;
    assert.equal(d.discovery, true);
    assert.deepEqual(d.cast, []);
    assert.equal(d.seekThresholdMs, 60);
    const c = hubConfigFrom({ cast: '10.0.0.9, 10.0.0.10:8010', sonos: '[fe80::2]:1400', noDeviceDiscovery: false, deviceDiscovery: false });
    assert.deepEqual(c.devices.cast, ['10.0.0.9', '10.0.0.10:8010']);
    assert.deepEqual(c.devices.sonos, ['[fe80::2]:1400']);
    assert.equal(c.devices.discovery, false);
    assert.throws(() => hubConfigFrom({ cast: 'http://10.0.0.9/' }), /devices\.cast/);
  });
});

describe('adapters against the doubles, through the real client libraries', () => {
  it('a Cast request that gets no answer times out (castv2-client has no timeout of its own)', async () => {
    const cast = await new CastDouble(0).start();
    try {
      const adapter = new CastAdapter('127.0.0.1', cast.port, 400, silent);
      await adapter.connect();
      cast.silent = true;
      const t0 = Date.now();
      await assert.rejects(adapter.load('http://127.0.0.1:1/x.mp3', 'audio/mpeg', 0, null), (err: Error) => err instanceof DeviceGoneError && /LOAD on Cast device 127\.0\.0\.1:\d+: no answer within 400 ms/.test(err.message));
      assert.ok(Date.now() - t0 < 3000);
      await adapter.close();
    } finally {
      await cast.stop();
    }
  });

  it('a Cast sending a message that is not JSON is dropped as lost, and nothing throws', async () => {
    const cast = await new CastDouble(0).start();
    const uncaught: Error[] = [];
    const onUncaught = (err: Error) => uncaught.push(err);
    process.on('uncaughtException', onUncaught);
    try {
      const adapter = new CastAdapter('127.0.0.1', cast.port, 1000, silent);
      let lost = '';
      adapter.onLost = (r) => (lost = r);
      await adapter.connect();
      cast.garbled = true;
      await assert.rejects(adapter.status());
      assert.match(lost, /sent an unreadable message/);
      assert.deepEqual(uncaught, []);
      await adapter.close();
    } finally {
      process.off('uncaughtException', onUncaught);
      await cast.stop();
    }
  });

  it('a Cast that is not there is refused quickly, naming the address', async () => {
    const port = await freePort();
    const adapter = new CastAdapter('127.0.0.1', port, 2000, silent);
    await assert.rejects(adapter.connect(), (err: Error) => err instanceof DeviceGoneError && err.message.includes(`127.0.0.1:${port}`));
  });

  it('a Cast that cannot fetch the stream fails the load (LOAD_FAILED), which is not a lost device', async () => {
    const cast = await new CastDouble(0).start();
    try {
      const adapter = new CastAdapter('127.0.0.1', cast.port, 3000, silent);
      let lost = '';
      adapter.onLost = (r) => (lost = r);
      await adapter.connect();
      const port = await freePort();
      await assert.rejects(adapter.load(`http://127.0.0.1:${port}/stream/1.mp3`, 'audio/mpeg', 0, null), /LOAD: Load failed/);
      assert.equal(lost, '');
      await adapter.close();
    } finally {
      await cast.stop();
    }
  });

  it('Sonos transport commands go to the group coordinator, volume to the speaker; no event listener is opened', async () => {
    const probe4000 = () =>
      new Promise<boolean>((resolve) => {
        const s = createServer();
        s.once('error', () => resolve(false));
        s.listen(4000, '0.0.0.0', () => s.close(() => resolve(true)));
      });
    const free4000 = await probe4000();
    const coordinator = await new SonosDouble(0, 'Living room').start();
    const member = await new SonosDouble(0, 'Kitchen').start();
    member.coordinator = coordinator;
    try {
      const adapter = new SonosAdapter('127.0.0.1', member.port, 3000, silent);
      await adapter.connect();
      assert.equal(adapter.coordinatorAddress, `127.0.0.1:${coordinator.port}`);
      assert.equal(adapter.roomName, 'Kitchen');
      // A URL the double cannot fetch is a refusal (a SOAP fault), not a lost device.
      await assert.rejects(adapter.load('http://127.0.0.1:1/none.mp3', 'audio/mpeg', 0, null), /SetAVTransportURI on Sonos/);
      await adapter.play();
      await adapter.setVolume(33);
      await adapter.status();
      assert.equal(coordinator.count('Play'), 1);
      assert.equal(member.count('Play'), 0);
      assert.equal(member.volume, 33);
      assert.equal(coordinator.volume, 20);
      if (free4000) assert.equal(await probe4000(), true, 'nothing listens on port 4000');
      // Gone: connection refused is a lost device.
      member.vanish();
      coordinator.vanish();
      await assert.rejects(adapter.status(), DeviceGoneError);
    } finally {
      await member.stop();
      await coordinator.stop();
    }
  });
});
