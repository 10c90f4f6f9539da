/**
 * Credentials, permissions and TLS, end to end against a real hub (auth forced on for a
 * loopback hub), real nodes and real clients, plus the pure parts (permissions, frame
 * limit, rate limiter, token format) tested directly.
 *
 * Every refusal is checked from both sides: the client is refused, and what it tried
 * did not happen (a forged heartbeat never reaches anyone, a refused subscription
 * receives nothing).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, stat, readFile, symlink, writeFile } from 'node:fs/promises';
import { Credentials } from '../hub/security/credentials.js';
import { hubConfigFrom, nodeConfigFrom } from '../src/cli/options.js';
import { childPath } from '../hub/security/paths.js';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { connect } from 'mqtt';
import { status, type ServiceError } from '@grpc/grpc-js';
import { hubConfigSchema } from '../src/config/schema.js';
import { libraryClient, chunksClient } from '../src/protocol/data-plane.js';
import { parseToken, peerHost } from '../src/protocol/access.js';
import { Topics } from '../src/protocol/topics.js';
import { BrokerPermissions } from '../hub/broker/permissions.js';
import { MqttFrameLimit } from '../hub/broker/frame-limit.js';
import { RateLimiter } from '../src/transfer/rate-limit.js';
import { authRequired } from '../hub/security/security.js';
import { makeTrack } from './helpers/audio.js';
import { CLI, cleanup, firefly, freePort, tempDir } from './helpers/processes.js';
import { embeddedBroker, Observer, startControlHub, type BrokerAccess, type HubProcess } from './helpers/control-plane.js';
import type { ChangesReply__Output } from '../src/generated/firefly/v1/ChangesReply.js';

const run = promisify(execFile);

async function credentialsCli(args: string[]): Promise<Record<string, string>> {
  const { stdout } = await run(process.execPath, [CLI, 'ctl', 'credentials', ...args, '--json'], { timeout: 20_000 });
  return JSON.parse(stdout.trim()) as Record<string, string>;
}

function changes(address: string, token?: string, ca?: Buffer): Promise<ChangesReply__Output> {
  const client = libraryClient(address, undefined, { token: () => token, tls: ca ? { ca } : undefined });
  return new Promise<ChangesReply__Output>((resolve, reject) =>
    client.Changes({ sinceVersion: '0' }, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res!))),
  ).finally(() => client.close());
}

async function grpcCode(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return status.OK;
  } catch (err) {
    return (err as ServiceError).code;
  }
}

/** Connects a raw MQTT client; resolves with the CONNACK outcome (null: accepted, else the error code). */
function tryConnect(url: string, username?: string, password?: string, clientId = `sec-${Math.random().toString(16).slice(2)}`): Promise<{ code: number | null; client: ReturnType<typeof connect> }> {
  return new Promise((resolve) => {
    const client = connect(url, { username, password, clientId, reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4 });
    client.once('connect', () => resolve({ code: null, client }));
    client.once('error', (err) => resolve({ code: (err as { code?: number }).code ?? -1, client }));
    // No CONNACK at all (a TLS listener spoken to in plain text): closed without an error.
    client.once('close', () => resolve({ code: -1, client }));
  });
}

describe('security: pure parts', () => {
  test('auth auto is on as soon as any listener is beyond loopback', () => {
    const base = { library: ['/tmp'] };
    const loop = hubConfigSchema.parse({ ...base, grpc: { host: '127.0.0.1' }, http: { host: '127.0.0.1' }, mqtt: { host: '::1' } });
    assert.equal(authRequired(loop).on, false);
    assert.equal(authRequired(hubConfigSchema.parse({ ...base })).on, true, 'defaults bind 0.0.0.0: credentials on');
    const open = authRequired(hubConfigSchema.parse({ ...base, grpc: { host: '127.0.0.1' }, http: { host: '192.168.1.2' }, mqtt: { host: '127.0.0.1' } }));
    assert.equal(open.on, true);
    assert.match(open.reason, /http\.host 192\.168\.1\.2/);
    assert.equal(authRequired(hubConfigSchema.parse({ ...base, security: { auth: 'on' }, grpc: { host: '127.0.0.1' }, http: { host: '127.0.0.1' }, mqtt: { host: '127.0.0.1' } })).on, true);
    assert.equal(authRequired(hubConfigSchema.parse({ ...base, security: { auth: 'off' } })).on, false);
    // An external broker's own auth applies: its listener is not ours to count.
    assert.equal(authRequired(hubConfigSchema.parse({ ...base, grpc: { host: '127.0.0.1' }, http: { host: '127.0.0.1' }, mqtt: { url: 'mqtt://10.0.0.1' } })).on, false);
  });

  test('tokens: USER:SECRET split at the last colon; junk refused', () => {
    assert.deepEqual(parseToken('node:abc-1:s3cr_t-X'), { user: 'node:abc-1', secret: 's3cr_t-X' });
    for (const bad of ['', ':', 'abc', 'node:abc:', ':secret', 'a b:c', 'node:x:se cret', 'x'.repeat(600) + ':a']) assert.equal(parseToken(bad), undefined, bad);
    assert.equal(peerHost('ipv4:10.1.2.3:4567'), '10.1.2.3');
    assert.equal(peerHost('ipv6:[::1]:4567'), '::1');
  });

  test('broker permissions: a node publishes only its own topics, controllers only commands', () => {
    const p = new BrokerPermissions('ff');
    const t = new Topics('ff');
    const a = { kind: 'node', uuid: 'A' } as const;
    const ctl = { kind: 'controller', name: 'ha' } as const;
    for (const kind of ['availability', 'heartbeat', 'join', 'player', 'holdings'] as const) assert.equal(p.publish(a, `ff/node/A/${kind}`), undefined);
    for (const topic of [t.nodeHeartbeat('B'), t.nodeWelcome('A'), t.nodeCommand('A'), t.command('play'), t.groups, 'ff/node/A/heartbeat/x', 'other/node/A/heartbeat', 'ff/node/+/heartbeat']) {
      assert.ok(p.publish(a, topic), `node A must not publish ${topic}`);
    }
    assert.equal(p.publish(ctl, t.command('group/create')), undefined);
    for (const topic of [t.nodeHeartbeat('A'), t.groups, t.hubStatus, t.nodeCommand('A')]) assert.ok(p.publish(ctl, topic), `controller must not publish ${topic}`);
    assert.equal(p.publish({ kind: 'hub' }, t.nodeCommand('A')), undefined);
    // Reading: nodes see the hub's topics and their own; private node topics go to their node only.
    assert.equal(p.subscribe(a, t.hubStatus), undefined);
    assert.equal(p.subscribe(a, t.nodeWelcome('A')), undefined);
    for (const f of [t.nodeWelcome('B'), 'ff/node/+/welcome', '#', 'ff/#', t.allCommands]) assert.ok(p.subscribe(a, f), f);
    assert.equal(p.subscribe(ctl, '#'), undefined);
    assert.equal(p.deliver(ctl, t.nodeWelcome('A')), false);
    assert.equal(p.deliver(ctl, t.nodeCommand('A')), false);
    assert.equal(p.deliver({ kind: 'node', uuid: 'B' }, t.nodeWelcome('A')), false);
    assert.equal(p.deliver(a, t.nodeWelcome('A')), true);
    assert.equal(p.deliver(ctl, t.nodeHeartbeat('A')), true);
    assert.ok(p.clientId(ctl, 'firefly-node-A'));
    assert.ok(p.clientId({ kind: 'node', uuid: 'B' }, 'firefly-node-A'));
    assert.equal(p.clientId(a, 'firefly-node-A'), undefined);
  });

  test('the MQTT frame limit reads lengths across chunk boundaries', () => {
    const frame = (len: number) => {
      const bytes = [0x30];
      let n = len;
      do {
        let b = n % 128;
        n = Math.floor(n / 128);
        if (n > 0) b |= 0x80;
        bytes.push(b);
      } while (n > 0);
      return Buffer.concat([Buffer.from(bytes), Buffer.alloc(len)]);
    };
    const ok = new MqttFrameLimit(1000);
    const stream = Buffer.concat([frame(0), frame(999), frame(127), frame(128), frame(1000)]);
    for (let i = 0; i < stream.length; i += 7) assert.equal(ok.accept(stream.subarray(i, i + 7)), true);
    const big = new MqttFrameLimit(1000);
    const over = frame(1001);
    assert.equal(big.accept(over.subarray(0, 2)) && big.accept(over.subarray(2, 3)), false, 'refused as soon as the length is read');
    assert.equal(new MqttFrameLimit(1 << 30).accept(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])), false, 'a five-byte length is malformed');
  });

  test('settings: --auth, --tls-cert/--tls-key, --mqtt-rate for the hub; --token, --tls, --ca-file for nodes', () => {
    const hub = hubConfigFrom({ auth: 'on', tlsCert: '/c.pem', tlsKey: '/k.pem', mqttRate: '0' });
    assert.deepEqual([hub.security.auth, hub.security.tls, hub.security.mqttPublishesPerSecond], ['on', { certFile: '/c.pem', keyFile: '/k.pem' }, 0]);
    assert.throws(() => hubConfigFrom({ auth: 'maybe' }), /security\.auth/);
    const node = nodeConfigFrom({ token: 'node:u:s', tls: true, caFile: '/ca.pem' });
    assert.deepEqual(node.security, { token: 'node:u:s', tls: true, caFile: '/ca.pem' });
    assert.equal(nodeConfigFrom({}).security.tls, false);
  });

  test('credentials: derived per name, verified, revocable; a file others can read is refused', async () => {
    const dir = await tempDir('firefly-cred-');
    const store = Credentials.inDataDir(dir);
    assert.equal(store.created, true);
    assert.equal(Credentials.inDataDir(dir).created, false);
    const a = store.issue('node:A');
    assert.deepEqual(store.verify('node:A', a.secret), { kind: 'node', uuid: 'A' });
    assert.equal(store.verify('node:B', a.secret), undefined, "A's secret is not B's");
    assert.equal(store.verify('admin', a.secret), undefined, 'names Firefly does not issue');
    assert.deepEqual(Credentials.inDataDir(dir).verifyToken(store.tokenFor('controller:x')), { kind: 'controller', name: 'x' }, 'the same secret after a restart');
    store.revoke('node:A');
    assert.equal(store.verify('node:A', a.secret), undefined);
    await chmod(join(dir, 'credentials.json'), 0o644);
    assert.throws(() => Credentials.inDataDir(dir), /readable by other users.*chmod 600/);
    // Another data folder, another secret.
    assert.equal(Credentials.inDataDir(await tempDir('firefly-cred-')).verify('node:A', a.secret), undefined);
  });

  test('names from clients never lead outside their folder', async () => {
    const root = await tempDir('firefly-paths-');
    await mkdir(join(root, 'sub'));
    await writeFile(join(root, 'sub', 'ok.txt'), 'x');
    await symlink('/etc', join(root, 'escape'));
    assert.deepEqual(childPath(root, 'sub/ok.txt', { followLinks: true }), { ok: true, path: join(root, 'sub', 'ok.txt') });
    for (const bad of ['', '..', '../x', 'sub/../../x', '/etc/passwd', 'a\\..\\b', '%2e%2e/x', 'sub/%2F..', 'x\u0000y', './x', 'sub/./ok.txt', 'x'.repeat(2000)]) {
      const r = childPath(root, bad);
      assert.equal(r.ok, false, JSON.stringify(bad));
      if (!r.ok) assert.ok(r.message.length > 0);
    }
    assert.equal(childPath(root, 'escape/passwd', { followLinks: true }).ok, false, 'a link out of the folder');
  });

  test('the rate limiter allows a burst, then the rate, per key', () => {
    let now = 0;
    const r = new RateLimiter(10, 20, 3, () => now);
    let allowed = 0;
    for (let i = 0; i < 100; i++) if (r.allow('a')) allowed++;
    assert.equal(allowed, 20);
    assert.equal(r.allow('b'), true, 'another key has its own bucket');
    now += 1000;
    allowed = 0;
    for (let i = 0; i < 100; i++) if (r.allow('a')) allowed++;
    assert.equal(allowed, 10);
    for (const k of ['c', 'd', 'e']) r.allow(k);
    assert.equal(r.allow('a'), true, 'at most 3 keys: the stalest were forgotten, a fresh bucket');
  });
});

describe('security: a hub with credentials on', () => {
  let broker: BrokerAccess;
  let hub: HubProcess;
  let httpPort: number;
  let nodeA: { uuid: string; token: string };
  let nodeB: { uuid: string; token: string };
  let controller: { user: string; password: string; token: string };
  let adminToken: string;
  const as = (user?: string, password?: string): BrokerAccess => ({ ...broker, username: user, password });

  before(async () => {
    broker = await embeddedBroker();
    const library = await tempDir('firefly-music-');
    await makeTrack(join(library, 'a.wav'), { format: 'wav', seconds: 2, title: 'A' });
    httpPort = await freePort();
    hub = await startControlHub(broker, { library, httpPort, extraArgs: ['--auth', 'on'] });
    await hub.proc.waitForLog('library indexed', 30_000);
    adminToken = String((await hub.proc.waitForLog('credentials required')) && hub.proc.logs.find((l) => typeof l.token === 'string')?.token);
    nodeA = (await credentialsCli(['add-node', '--data-dir', hub.dataDir])) as { uuid: string; token: string };
    nodeB = (await credentialsCli(['add-node', '--data-dir', hub.dataDir])) as { uuid: string; token: string };
    controller = (await credentialsCli(['add-controller', 'tests', '--data-dir', hub.dataDir])) as { user: string; password: string; token: string };
  });

  after(() => cleanup());

  test('credentials are made on first start, kept 0600, and the admin token is shown once', async () => {
    const st = await stat(join(hub.dataDir, 'credentials.json'));
    assert.equal(st.mode & 0o777, 0o600);
    assert.match(adminToken, /^controller:admin:[A-Za-z0-9_-]{32}$/);
    const file = await readFile(join(hub.dataDir, 'credentials.json'), 'utf8');
    assert.ok(!file.includes(adminToken.split(':')[2]), 'the file holds the secret, not issued tokens');
    // Besides the JSON line, a plain-text notice a person sees on the terminal, with the same token.
    const notice = hub.proc.rawStderr.join('\n');
    assert.match(notice, /credentials created \(first start\)/);
    assert.ok(hub.proc.rawStderr.some((l) => l.trim() === adminToken), `the notice shows the token on a line of its own:\n${notice}`);
    // A second hub on the same data folder (read-only check: --no-advertise, other ports) does not show it again.
    const again = firefly(['hub', '--library', hub.library, '--data-dir', hub.dataDir, '--auth', 'on', '--grpc-host', '127.0.0.1', '--grpc-port', '0', '--mqtt-host', '127.0.0.1', '--mqtt-port', '0', '--clock-port', '0', '--http-host', '127.0.0.1', '--http-port', '0', '--no-advertise', '--topic-prefix', `${broker.prefix}x`]);
    await again.waitForLog('credentials required', 20_000);
    await again.waitForLog('HTTP listening', 20_000);
    assert.equal(again.logs.some((l) => typeof l.token === 'string'), false);
    assert.equal(again.rawStderr.some((l) => l.includes('credentials created')), false, 'no notice at a later start');
    await again.stop();
    // An unknown name cannot be issued, and a data folder without credentials says so.
    await assert.rejects(credentialsCli(['add-controller', 'bad name', '--data-dir', hub.dataDir]), /not a credential name/);
    await assert.rejects(credentialsCli(['add-node', '--data-dir', await tempDir()]), /no credentials in/);
  });

  test('MQTT: no credentials, wrong ones, a swarm token or a stolen client id are refused at connect', async () => {
    const cases: [string | undefined, string | undefined, string?][] = [
      [undefined, undefined],
      ['controller:tests', 'wrong-password'],
      [`node:${nodeA.uuid}`, parseToken(nodeB.token)!.secret],
      ['controller:tests', undefined],
      ['swarm', 'x'],
      ['controller:tests', controller.password, `firefly-node-${nodeA.uuid}`],
    ];
    for (const [user, password, clientId] of cases) {
      const { code, client } = await tryConnect(broker.url, user, password, clientId);
      client.end(true);
      assert.ok(code === 4 || code === 5, `${user}/${clientId ?? ''}: refused (got ${code})`);
    }
    const { code, client } = await tryConnect(broker.url, controller.user, controller.password);
    client.end(true);
    assert.equal(code, null, 'the controller credential connects');
  });

  test('MQTT: a node may publish only its own topics and read only its own private ones', async () => {
    const t = new Topics(broker.prefix);
    const watcher = await new Observer(as(controller.user, controller.password)).connect();
    await watcher.subscribe(`${broker.prefix}/#`);
    // Node A's credentials, trying to speak for node B and to send a command.
    const forger = await new Observer(as(`node:${nodeA.uuid}`, parseToken(nodeA.token)!.secret)).connect();
    await forger.publish(t.nodeHeartbeat(nodeB.uuid), { seq: 1 }, { qos: 0 }).catch(() => undefined);
    const forger2 = await new Observer(as(`node:${nodeA.uuid}`, parseToken(nodeA.token)!.secret)).connect();
    await forger2.publish(t.command('group/create'), { name: 'forged' }, { qos: 0 }).catch(() => undefined);
    // Its own topic is allowed.
    const own = await new Observer(as(`node:${nodeA.uuid}`, parseToken(nodeA.token)!.secret)).connect();
    await own.publish(t.nodeHeartbeat(nodeA.uuid), { probe: 'own' }, { qos: 1 });
    await watcher.waitFor('node A own heartbeat', t.nodeHeartbeat(nodeA.uuid), (v) => v.probe === 'own');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(watcher.messages.filter((m) => m.topic === t.nodeHeartbeat(nodeB.uuid)).length, 0, 'the forged heartbeat reached no one');
    assert.equal(watcher.messages.filter((m) => m.topic === t.command('group/create')).length, 0, 'the forged command reached no one');
    assert.equal(hub.proc.logs.some((l) => String(l.msg).startsWith('MQTT publish refused') && l.topic === t.nodeHeartbeat(nodeB.uuid)), true);
    // Subscriptions: node A to B's welcome is refused (SUBACK 128).
    const granted = await new Promise<number[]>((resolve, reject) => {
      const c = connect(broker.url, { username: `node:${nodeA.uuid}`, password: parseToken(nodeA.token)!.secret, reconnectPeriod: 0, protocolVersion: 4 });
      // mqtt.js reports a refused filter as an error carrying the SUBACK.
      c.once('connect', () =>
        c.subscribe([t.nodeWelcome(nodeB.uuid), '#', t.hubStatus], { qos: 1 }, (err, g) => {
          c.end(true);
          const suback = (err as { packet?: { granted: number[] } } | null)?.packet;
          if (suback) resolve(suback.granted);
          else if (err) reject(err);
          else resolve(g!.map((x) => x.qos));
        }),
      );
      c.once('error', reject);
    });
    assert.deepEqual(granted, [128, 128, 1]);
    for (const o of [forger, forger2, own]) await o.close();
    await watcher.close();
  });

  test('a node with its token joins; private topics are not delivered to controllers; another node\'s token is its own identity', async () => {
    const t = new Topics(broker.prefix);
    const watcher = await new Observer(as(controller.user, controller.password)).connect();
    await watcher.subscribe(`${broker.prefix}/#`);
    // The token comes through the environment, as the docs say.
    const ff = firefly;
    const proc = ff(['node', '--hub', hub.grpc, '--data-dir', await tempDir('firefly-node-'), '--name', 'secure-a', '--sync-interval', '3600', '--clock-port', String(hub.clockPort), '--serve-host', '127.0.0.1', '--serve-port', '0', '--mqtt', broker.url, '--topic-prefix', broker.prefix], { FIREFLY_TOKEN: nodeA.token });
    const joined = await proc.waitForLog('joined the hub', 20_000);
    assert.equal(proc.logs.find((l) => l.msg === 'node starting')?.uuid, nodeA.uuid, 'the token names the identity');
    await proc.waitForLog('sync complete', 30_000);
    await watcher.waitFor('node A heartbeat', t.nodeHeartbeat(nodeA.uuid), () => true);
    assert.equal(watcher.messages.filter((m) => m.topic === t.nodeWelcome(nodeA.uuid)).length, 0, 'the welcome (with the swarm token) is not delivered to a controller');
    assert.equal(typeof joined.nodeId, 'number');

    // Its chunk server: without the swarm token, or with a node token, nothing is served.
    const serving = await proc.waitForLog('chunk server listening');
    const peer = `127.0.0.1:${serving.port}`;
    for (const token of [undefined, nodeA.token, 'swarm:not-the-token']) {
      const client = chunksClient(peer, undefined, { token: () => token });
      const code = await new Promise<number>((resolve) => {
        const call = client.Fetch({ hashes: [Buffer.alloc(32)] });
        call.on('error', (err: ServiceError) => resolve(err.code));
        call.on('end', () => resolve(status.OK));
        call.on('data', () => undefined);
      });
      client.close();
      assert.equal(code, status.UNAUTHENTICATED, `peer fetch with ${token ?? 'no token'}`);
    }

    // A node started with a wrong secret is refused and says what to do.
    const bad = ff(['node', '--hub', hub.grpc, '--data-dir', await tempDir('firefly-node-'), '--sync-interval', '3600', '--clock-port', String(hub.clockPort), '--serve-port', '0', '--mqtt', broker.url, '--topic-prefix', broker.prefix], {
      FIREFLY_TOKEN: `node:${nodeB.uuid}:${parseToken(nodeA.token)!.secret}`,
    });
    await bad.waitForLog((l) => String(l.msg).includes('refused this node'), 20_000);
    await bad.waitForLog((l) => l.msg === 'sync failed; will retry' && String(l.err).includes('UNAUTHENTICATED'), 20_000);
    await bad.stop();
    await proc.stop();
    await watcher.close();
  });

  test('gRPC: no token, a forged one or the swarm token are refused; a node or controller token works', async () => {
    assert.equal(await grpcCode(changes(hub.grpc)), status.UNAUTHENTICATED);
    assert.equal(await grpcCode(changes(hub.grpc, `node:${nodeB.uuid}:${parseToken(nodeA.token)!.secret}`)), status.UNAUTHENTICATED);
    assert.equal(await grpcCode(changes(hub.grpc, 'controller:tests:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')), status.UNAUTHENTICATED);
    assert.equal(await grpcCode(changes(hub.grpc, 'garbage')), status.UNAUTHENTICATED);
    const reply = await changes(hub.grpc, nodeA.token);
    assert.ok(reply.entries.length >= 1);
    assert.ok((await changes(hub.grpc, controller.token)).entries.length >= 1);
    // firefly ctl library with and without the token.
    const { stdout } = await run(process.execPath, [CLI, 'ctl', 'library', '--hub', hub.grpc, '--json'], { env: { ...process.env, FIREFLY_TOKEN: controller.token }, timeout: 20_000 });
    assert.match(stdout, /a\.wav/);
    await assert.rejects(run(process.execPath, [CLI, 'ctl', 'library', '--hub', hub.grpc, '--json'], { env: { ...process.env, FIREFLY_TOKEN: '' }, timeout: 20_000 }), /UNAUTHENTICATED/);
  });

  test('REST: refused without a login; Bearer or the login cookie lets a controller in; a node token does not', async () => {
    const base = `http://127.0.0.1:${httpPort}`;
    const get = (headers: Record<string, string> = {}) => fetch(`${base}/api/nodes`, { headers });
    assert.equal((await get()).status, 401);
    assert.equal((await get({ authorization: 'Bearer nonsense' })).status, 401);
    assert.equal((await get({ authorization: `Bearer ${nodeA.token}` })).status, 401, 'nodes are not controllers');
    assert.equal((await get({ cookie: 'firefly_session=v1.99999999999999.x.eA.forged' })).status, 401);
    assert.notEqual((await get({ authorization: `Bearer ${controller.token}` })).status, 401);
    assert.equal((await fetch(`${base}/api/anything`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })).status, 401);
    // Login.
    const login = (body: string) => fetch(`${base}/api/login`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    assert.equal((await login(JSON.stringify({ token: nodeA.token }))).status, 401);
    assert.equal((await login('{"token": 5}')).status, 400);
    assert.equal((await login('{"token": "x", "extra": 1}')).status, 400);
    const ok = await login(JSON.stringify({ token: controller.token }));
    assert.equal(ok.status, 200);
    const cookie = ok.headers.get('set-cookie')!;
    assert.match(cookie, /firefly_session=v1\..*HttpOnly.*SameSite=Strict/);
    const session = cookie.split(';')[0];
    assert.notEqual((await get({ cookie: session })).status, 401);
    // Tampering with the session breaks its signature.
    assert.equal((await get({ cookie: session.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')) })).status, 401);
  });

  test('REST: a flooding client gets 429, others are not affected', async () => {
    const base = `http://127.0.0.1:${httpPort}`;
    const codes = await Promise.all(Array.from({ length: 400 }, () => fetch(`${base}/api/nodes`).then((r) => r.status)));
    assert.ok(codes.includes(429), 'over the rate: 429');
    assert.ok(codes.every((c) => c === 429 || c === 401));
  });

  test('MQTT: a client publishing faster than the limit (200/s) is disconnected; the hub stays up', async () => {
    const c = connect(broker.url, { username: controller.user, password: controller.password, reconnectPeriod: 0, protocolVersion: 4 });
    await new Promise((r) => c.once('connect', r));
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    const t = new Topics(broker.prefix);
    for (let i = 0; i < 2000; i++) c.publish(t.command('stop'), '{}', { qos: 0 });
    await closed;
    assert.ok(hub.proc.logs.some((l) => l.msg === 'MQTT client disconnected: publishing faster than allowed'));
    // Others are not affected.
    const { code, client } = await tryConnect(broker.url, controller.user, controller.password);
    client.end(true);
    assert.equal(code, null);
  });

  test('revoking a controller refuses it from then on', async () => {
    const other = (await credentialsCli(['add-controller', 'revoked-one', '--data-dir', hub.dataDir])) as { user: string; password: string; token: string };
    let r = await tryConnect(broker.url, other.user, other.password);
    r.client.end(true);
    assert.equal(r.code, null);
    await credentialsCli(['revoke', other.user, '--data-dir', hub.dataDir]);
    await new Promise((res) => setTimeout(res, 1200));
    r = await tryConnect(broker.url, other.user, other.password);
    r.client.end(true);
    assert.equal(r.code, 4);
    assert.equal(await grpcCode(changes(hub.grpc, other.token)), status.UNAUTHENTICATED);
  });
});

describe('security: TLS with the user\'s certificate', () => {
  after(() => cleanup());

  test('MQTT, gRPC and HTTP over TLS; a node trusting the CA joins and syncs; plain clients get nowhere', async () => {
    const dir = await tempDir('firefly-tls-');
    const [cert, key] = [join(dir, 'hub.pem'), join(dir, 'hub.key')];
    await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost']);
    const broker = await embeddedBroker();
    const library = await tempDir('firefly-music-');
    await makeTrack(join(library, 't.wav'), { format: 'wav', seconds: 2, title: 'T' });
    const httpPort = await freePort();
    const hub = await startControlHub(broker, { library, httpPort, extraArgs: ['--auth', 'on', '--tls-cert', cert, '--tls-key', key] });
    await hub.proc.waitForLog('library indexed', 30_000);
    const node = (await credentialsCli(['add-node', '--data-dir', hub.dataDir])) as { uuid: string; token: string };
    const ctlToken = (await credentialsCli(['add-controller', 'tls', '--data-dir', hub.dataDir])) as { user: string; password: string; token: string };
    const ca = await readFile(cert);

    // gRPC: TLS with the CA works; plain text does not.
    assert.ok((await changes(hub.grpc, node.token, ca)).entries.length === 1);
    assert.notEqual(await grpcCode(changes(hub.grpc, node.token)), status.OK);
    // MQTT: mqtts with the CA; a plain client never gets a CONNACK.
    const plain = await tryConnect(broker.url, ctlToken.user, ctlToken.password);
    plain.client.end(true);
    assert.notEqual(plain.code, null);
    const secure = await new Promise<boolean>((resolve) => {
      const c = connect(broker.url.replace('mqtt://', 'mqtts://'), { username: ctlToken.user, password: ctlToken.password, ca, reconnectPeriod: 0, protocolVersion: 4 });
      c.once('connect', () => (c.end(true), resolve(true)));
      c.once('error', () => (c.end(true), resolve(false)));
    });
    assert.equal(secure, true);
    // HTTPS login.
    const status200 = await new Promise<number>((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', port: httpPort, path: '/api/login', method: 'POST', ca, headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
        assert.match(String(res.headers['set-cookie']), /Secure/);
      });
      req.on('error', reject);
      req.end(JSON.stringify({ token: ctlToken.token }));
    });
    assert.equal(status200, 200);
    // A node with --ca-file and its token: joins over mqtts and syncs over gRPC with TLS.
    const proc = firefly(['node', '--hub', hub.grpc, '--data-dir', await tempDir('firefly-node-'), '--sync-interval', '3600', '--clock-port', String(hub.clockPort), '--serve-host', '127.0.0.1', '--serve-port', '0', '--mqtt', broker.url, '--topic-prefix', broker.prefix, '--ca-file', cert], { FIREFLY_TOKEN: node.token });
    await proc.waitForLog('joined the hub', 20_000);
    const synced = await proc.waitForLog('sync complete', 30_000);
    assert.ok(Number(synced.chunksStored) > 0);
    await proc.stop();
    // ctl over mqtts.
    const { stdout } = await run(process.execPath, [CLI, 'ctl', 'nodes', '--json', '--mqtt', broker.url, '--topic-prefix', broker.prefix, '--ca-file', cert], { env: { ...process.env, FIREFLY_TOKEN: ctlToken.token }, timeout: 20_000 });
    assert.match(stdout, new RegExp(node.uuid));
  });
});
