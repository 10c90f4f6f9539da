/**
 * Hostile input against a real hub with credentials on (the fuzzer holds a controller
 * credential, so every message gets past the gate and reaches validation): 10,000 MQTT
 * command payloads, 10,000 REST requests and 10,000 gRPC messages, each generated from a
 * seeded PRNG (a failure names its seed and case). For every one: an error comes back,
 * the hub stays up, and its state (groups, nodes, library) is what it was before.
 * Plus the transport limit: an MQTT packet over the size limit costs the client its
 * connection, with nothing delivered (the publish rate limit is in security.test.ts).
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client, credentials as grpcCredentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { connect } from 'mqtt';
import type { ErrorEvent, GroupList, NodeList } from '../src/protocol/schemas.js';
import { tokenInterceptor } from '../src/protocol/access.js';
import { makeTrack } from './helpers/audio.js';
import { hostileCommands, prng } from './helpers/control-plane-suite.js';
import { CLI, cleanup, freePort, hubChanges, tempDir, waitFor } from './helpers/processes.js';
import { embeddedBroker, Observer, startControlHub, type BrokerAccess, type HubProcess } from './helpers/control-plane.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);
const CASES = 10_000;


// --- a little protobuf writer, so the fuzzer can send what no well-behaved client would ---
function varint(n: bigint): Buffer {
  const out: number[] = [];
  let v = n;
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return Buffer.from(out);
}
const field = (no: number, wire: number, body: Buffer) => Buffer.concat([varint(BigInt((no << 3) | wire)), body]);
const bytesField = (no: number, data: Buffer) => field(no, 2, Buffer.concat([varint(BigInt(data.length)), data]));

interface GrpcCase {
  method: string;
  stream: boolean;
  body: Buffer;
}

/** gRPC requests no valid call looks like: undecodable bytes, out-of-range numbers, wrong-sized hashes, too many ids, oversized messages. */
function hostileGrpc(count: number, seed: number): GrpcCase[] {
  const rnd = prng(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const junk = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  const wrongHash = () => junk([0, 1, 16, 31, 33, 64][int(6)]);
  const out: GrpcCase[] = [];
  for (let i = 0; i < count; i++) {
    switch (i % 9) {
      case 0: // an invalid wire type (6 or 7) on a random field, then junk
        out.push({ method: ['/firefly.v1.Library/Changes', '/firefly.v1.Library/Manifest', '/firefly.v1.Library/Sources'][int(3)], stream: false, body: Buffer.concat([varint(BigInt(((1 + int(20)) << 3) | (6 + int(2)))), junk(int(40))]) });
        break;
      case 1: // a length-delimited field longer than the message
        out.push({ method: '/firefly.v1.Library/Manifest', stream: false, body: Buffer.concat([Buffer.from([0x0a]), varint(BigInt(100 + int(1_000_000))), junk(int(50))]) });
        break;
      case 2: {
        // A truncated varint. Known gap (docs/reliability.md): protobufjs decodes a 64-bit
        // varint cut after three or four continuation bytes as a number instead of failing,
        // so those two shapes read as a harmless Changes call and are left out here.
        const n = [1, 2, 5, 6, 7, 8, 9][int(7)];
        out.push({ method: '/firefly.v1.Library/Changes', stream: false, body: Buffer.from([0x08, ...Array.from({ length: n }, () => 0x80 | int(128))]) });
        break;
      }
      case 3: // a library version past what a version can be
        out.push({ method: '/firefly.v1.Library/Changes', stream: false, body: field(1, 0, varint(2n ** 53n + BigInt(int(1e9)) + 1n)) });
        break;
      case 4: // a content id of the wrong size
        out.push({ method: '/firefly.v1.Library/Manifest', stream: false, body: bytesField(1, wrongHash()) });
        break;
      case 5: // a content id nobody has
        out.push({ method: '/firefly.v1.Library/Manifest', stream: false, body: bytesField(1, junk(32)) });
        break;
      case 6: // Sources: a wrong-sized id among good ones, or too many ids
        out.push({
          method: '/firefly.v1.Library/Sources',
          stream: false,
          body: i % 90 === 6 ? Buffer.concat(Array.from({ length: 4097 }, () => bytesField(1, junk(32)))) : Buffer.concat([bytesField(1, junk(32)), bytesField(1, wrongHash())]),
        });
        break;
      case 7: // Fetch with wrong-sized hashes
        out.push({ method: '/firefly.v1.Chunks/Fetch', stream: true, body: Buffer.concat([bytesField(1, junk(32)), bytesField(1, wrongHash())]) });
        break;
      default: // over the message size limit (4 MiB) now and then, else junk Fetch
        out.push(i % 900 === 8 ? { method: '/firefly.v1.Library/Manifest', stream: false, body: bytesField(1, Buffer.alloc(4 * 1024 * 1024 + 10)) } : { method: '/firefly.v1.Chunks/Fetch', stream: true, body: Buffer.concat([varint(BigInt((2 << 3) | 7)), junk(int(30))]) });
    }
  }
  return out;
}

interface RestCase {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer | string;
}

/** REST requests: garbage bodies to the login, unknown and traversing paths, wrong content types, oversized bodies. */
function hostileRest(count: number, seed: number, token: string): RestCase[] {
  const rnd = prng(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  const json = { 'content-type': 'application/json' };
  const authed = { ...json, authorization: `Bearer ${token}` };
  const traversal = ['/../../etc/passwd', '/%2e%2e/%2e%2e/etc/passwd', '/api/../../../etc/shadow', '/api/files/..%2f..%2fetc%2fpasswd', '/..\\..\\windows', '/api/cover/%00', '/api/%ff%fe', '//etc/passwd', '/api/tracks/../../credentials.json', '/credentials.json'];
  const bodies = ['', '{', 'null', '[]', '{"token":null}', '{"token":""}', '{"token":123}', `{"token":"${'x'.repeat(600)}"}`, '{"token":"a:b","extra":true}', '{"__proto__":{"admin":true},"token":"x:y"}', '"token"', '{"token":["a"]}'];
  const out: RestCase[] = [];
  for (let i = 0; i < count; i++) {
    switch (i % 6) {
      case 0: // the login with a body that is not a controller token
        out.push({ method: 'POST', path: '/api/login', headers: json, body: pick(bodies) });
        break;
      case 1: // invalid UTF-8 or binary to the login
        out.push({ method: 'POST', path: '/api/login', headers: json, body: Buffer.from([0x7b, 0x22, 0xc3, 0x28, int(256), 0x7d]) });
        break;
      case 2: // path traversal, with a valid login
        out.push({ method: pick(['GET', 'HEAD', 'DELETE', 'PUT']), path: pick(traversal), headers: authed });
        break;
      case 3: // random API paths and methods, with a valid login and a junk body
        out.push({ method: pick(['POST', 'PUT', 'PATCH', 'DELETE']), path: `/api/${Buffer.from(Array.from({ length: 1 + int(12) }, () => 97 + int(26))).toString()}`, headers: authed, body: pick(bodies) });
        break;
      case 4: // wrong content types
        out.push({ method: 'POST', path: '/api/login', headers: { 'content-type': pick(['text/plain', 'application/xml', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded']) }, body: 'token=a:b' });
        break;
      default: // a body over the limit (1 MiB) now and then, else over the login's 4 KiB
        out.push({ method: 'POST', path: '/api/login', headers: json, body: i % 600 === 5 ? `{"token":"${'y'.repeat(1024 * 1024 + 10)}"}` : `{"token":"${'z'.repeat(5000 + int(3000))}"}` });
    }
  }
  return out;
}

async function inBatches<T>(items: readonly T[], size: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map((it, j) => fn(it, i + j)));
}

describe('fuzz: hostile input to a hub with credentials on', () => {
  let broker: BrokerAccess;
  let hub: HubProcess;
  let httpPort: number;
  let controller: { user: string; password: string; token: string };
  let ctlAccess: BrokerAccess;
  let before0: { groups?: GroupList; nodes?: NodeList; library: unknown };

  async function snapshot(): Promise<{ groups?: GroupList; nodes?: NodeList; library: unknown }> {
    const o = await new Observer(ctlAccess).connect();
    const t = o.topics;
    await o.subscribe(t.groups, t.nodes);
    await waitFor('retained state', () => o.last(t.groups) && o.last(t.nodes), 10_000);
    const groups = o.last<GroupList>(t.groups);
    const nodes = o.last<NodeList>(t.nodes);
    await o.close();
    const { version, entries } = await hubChanges(hub.grpc, 0, controller.token);
    return { groups: groups && { ...groups, at: 0 }, nodes: nodes && { ...nodes, at: 0 }, library: { version, entries: entries.length } };
  }

  before(async () => {
    broker = await embeddedBroker();
    const library = await tempDir('firefly-music-');
    await makeTrack(join(library, 'a.wav'), { format: 'wav', seconds: 2, title: 'A' });
    // The fuzzer is one client sending fast on purpose: no rate limits here (they are tested on their own).
    const config = join(await tempDir('firefly-conf-'), 'hub.json');
    await writeFile(config, JSON.stringify({ security: { auth: 'on', mqttPublishesPerSecond: 0, httpRequestsPerSecond: 0, grpcCallsPerSecond: 0 } }));
    httpPort = await freePort();
    hub = await startControlHub(broker, { library, httpPort, extraArgs: ['-c', config] });
    await hub.proc.waitForLog('library indexed', 30_000);
    controller = JSON.parse((await run(process.execPath, [CLI, 'ctl', 'credentials', 'add-controller', 'fuzz', '--data-dir', hub.dataDir, '--json'])).stdout) as typeof controller;
    ctlAccess = { ...broker, username: controller.user, password: controller.password };
    before0 = await snapshot();
  });

  after(() => cleanup());

  test(`${CASES} hostile MQTT command payloads: one error event each, state unchanged`, async () => {
    const observer = await new Observer(ctlAccess).connect();
    const t = observer.topics;
    await observer.subscribe(t.errors);
    const payloads = hostileCommands(CASES, 20_261_125, broker.prefix);
    const fuzzer = await new Observer(ctlAccess).connect();
    const started = Date.now();
    for (let i = 0; i < payloads.length; i += 500) {
      await Promise.all(payloads.slice(i, i + 500).map((p) => fuzzer.publish(p.topic, p.payload, { qos: 1 })));
      await waitFor(`error events for the first ${i + 500} payloads`, () => observer.json(t.errors).length >= Math.min(i + 500, payloads.length), 30_000, 20);
    }
    await new Promise((r) => setTimeout(r, 300));
    const errors = observer.json<ErrorEvent>(t.errors);
    process.stderr.write(`MQTT fuzz: ${payloads.length} payloads, ${errors.length} error events in ${Date.now() - started} ms\n`);
    assert.equal(errors.length, payloads.length, 'exactly one error event per payload');
    assert.ok(errors.every((e) => e.message.length > 0));
    await fuzzer.close();
    await observer.close();
    assert.equal(hub.proc.child.exitCode, null);
    assert.deepEqual(await snapshot(), before0);
  });

  test(`${CASES} hostile REST requests: a 4xx with a message each, nothing served from outside, state unchanged`, async () => {
    const cases = hostileRest(CASES, 7_771, controller.token);
    const counts = new Map<number, number>();
    const started = Date.now();
    await inBatches(cases, 50, async (c, i) => {
      const res = await fetch(`http://127.0.0.1:${httpPort}${c.path}`, { method: c.method, headers: c.headers, body: c.body });
      const text = await res.text();
      counts.set(res.status, (counts.get(res.status) ?? 0) + 1);
      assert.ok(res.status >= 400 && res.status < 500, `case ${i} (seed 7771): ${c.method} ${c.path} → ${res.status} ${text.slice(0, 200)}`);
      assert.ok(!/root:|BEGIN|"secret"/.test(text), `case ${i}: ${c.path} served something it must not`);
      if (c.method !== 'HEAD') assert.ok((JSON.parse(text) as { error?: { message?: string } }).error?.message, `case ${i}: the error says what is wrong: ${c.method} ${c.path} → ${res.status} ${text.slice(0, 300)}`);
    });
    process.stderr.write(`REST fuzz: ${cases.length} requests in ${Date.now() - started} ms; statuses ${JSON.stringify(Object.fromEntries(counts))}\n`);
    assert.equal(hub.proc.child.exitCode, null);
    assert.deepEqual(await snapshot(), before0);
  });

  test(`${CASES} hostile gRPC messages: an error status each, state unchanged`, async () => {
    const cases = hostileGrpc(CASES, 4_242);
    const client = new Client(hub.grpc, grpcCredentials.createInsecure(), {
      interceptors: [tokenInterceptor(() => controller.token)],
      'grpc.max_send_message_length': 8 * 1024 * 1024,
    });
    const codes = new Map<string, number>();
    const started = Date.now();
    const ident = (b: Buffer) => b;
    await inBatches(cases, 100, async (c, i) => {
      const code = await new Promise<number>((resolve) => {
        if (!c.stream) {
          client.makeUnaryRequest(c.method, ident, ident, c.body, new Metadata(), { deadline: Date.now() + 30_000 }, (err) => resolve(err ? (err as ServiceError).code : status.OK));
        } else {
          const call = client.makeServerStreamRequest(c.method, ident, ident, c.body, new Metadata(), { deadline: Date.now() + 30_000 });
          call.on('data', () => undefined);
          call.on('error', (err: ServiceError) => resolve(err.code));
          call.on('status', (s) => s.code === status.OK && resolve(status.OK));
        }
      });
      codes.set(status[code], (codes.get(status[code]) ?? 0) + 1);
      assert.notEqual(code, status.OK, `case ${i} (seed 4242): ${c.method} with ${c.body.length} bytes was accepted`);
    });
    client.close();
    process.stderr.write(`gRPC fuzz: ${cases.length} messages in ${Date.now() - started} ms; codes ${JSON.stringify(Object.fromEntries(codes))}\n`);
    assert.equal(hub.proc.child.exitCode, null);
    assert.deepEqual(await snapshot(), before0);
  });

  test('an MQTT packet over the size limit costs the client its connection, and reaches no one', async () => {
    const t = new Observer(ctlAccess).topics;
    const watcher = await new Observer(ctlAccess).connect();
    await watcher.subscribe(`${broker.prefix}/cmd/#`);
    const closed = (c: ReturnType<typeof connect>) => new Promise<void>((resolve) => c.once('close', () => resolve()));
    const big = connect(broker.url, { username: controller.user, password: controller.password, reconnectPeriod: 0, protocolVersion: 4 });
    await new Promise((r) => big.once('connect', r));
    const gone = closed(big);
    big.publish(t.command('play'), Buffer.alloc(300 * 1024, 0x20), { qos: 0 });
    await gone;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(watcher.messages.filter((m) => m.payload.length > 256 * 1024).length, 0, 'the oversized packet reached no one');
    assert.equal(hub.proc.child.exitCode, null);
    await watcher.close();
  });
});
