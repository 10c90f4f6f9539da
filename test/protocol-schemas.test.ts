import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { z } from 'zod';
import { topicMatches } from '../hub/control/channel.js';
import { brokerUrl, hostOf } from '../src/protocol/mqtt-client.js';
import { commandSchemas, envelopeOf, heartbeatSchema, MAX_PAYLOAD_BYTES, parsePayload } from '../src/protocol/schemas.js';
import { Topics } from '../src/protocol/topics.js';
import { hostileCommands } from './helpers/control-plane-suite.js';

test('parsePayload accepts a valid command and names what is wrong with a bad one', () => {
  const ok = parsePayload(commandSchemas['group/create'], '{"name":" Kitchen ","members":[1,2],"id":"a"}');
  assert.deepEqual(ok, { ok: true, value: { name: 'Kitchen', members: [1, 2], id: 'a' } });
  const bad = parsePayload(commandSchemas['group/volume'], '{"groupId":"x","volume":101,"extra":1}');
  assert.equal(bad.ok, false);
  if (!bad.ok) {
    assert.equal(bad.code, 'invalid');
    assert.deepEqual(bad.issues?.map((i) => i.path).sort(), ['(payload)', 'groupId', 'volume']);
    assert.match(bad.message, /groupId/);
  }
});

test('parsePayload never throws, whatever the bytes', () => {
  const cases: (Buffer | string)[] = [
    '',
    'null',
    '[]',
    Buffer.from([0xff, 0xfe, 0x00]),
    '['.repeat(200_000),
    '['.repeat(100_000) + ']'.repeat(100_000),
    'x'.repeat(MAX_PAYLOAD_BYTES + 1),
    '{"__proto__":{"polluted":1},"name":"x"}',
    ...hostileCommands(2000, 7, 'firefly').map((p) => p.payload),
  ];
  for (const payload of cases) {
    for (const schema of [commandSchemas['group/create'], commandSchemas['node/volume'], heartbeatSchema]) {
      const r = parsePayload(schema, payload);
      if (!r.ok) assert.ok(r.message.length > 0);
    }
    assert.doesNotThrow(() => envelopeOf(payload));
  }
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  const big = parsePayload(heartbeatSchema, 'x'.repeat(MAX_PAYLOAD_BYTES + 1));
  assert.equal(big.ok === false && big.code, 'too-large');
  const utf8 = parsePayload(heartbeatSchema, Buffer.from([0x7b, 0xc3, 0x28, 0x7d]));
  assert.equal(utf8.ok === false && utf8.code, 'bad-utf8');
});

test('no hostile fuzz payload is a valid command', () => {
  const t = new Topics('ff');
  for (const { topic, payload } of hostileCommands(5000, 11, 'ff')) {
    const name = t.commandNameOf(topic)!;
    const schema = (commandSchemas as Record<string, z.ZodType | undefined>)[name];
    if (!schema) continue; // unknown command: refused by name
    const r = parsePayload(schema, payload);
    // Valid shapes only with ids that do not exist (refused as not-found by the hub).
    if (r.ok) assert.ok(Object.values(r.value as object).some((v) => typeof v === 'number' && v >= 100_000), `${topic} ${payload.toString().slice(0, 100)}`);
  }
});

test('topics: names, wildcards, reply roots and node topics', () => {
  const t = new Topics('home/firefly');
  assert.equal(t.command('group/create'), 'home/firefly/cmd/group/create');
  assert.equal(t.commandNameOf('home/firefly/cmd/group/x'), 'group/x');
  assert.equal(t.commandNameOf('home/firefly/hub/nodes'), undefined);
  assert.deepEqual(t.parseNodeTopic(t.nodeHeartbeat('abc-1')), { uuid: 'abc-1', kind: 'heartbeat' });
  assert.equal(t.parseNodeTopic('home/firefly/node/a/b/heartbeat'), undefined);
  assert.ok(t.isReplyTopic('home/firefly/reply/phone/1'));
  for (const bad of ['home/firefly/reply/', 'home/firefly/reply/+', 'home/firefly/reply/#', 'home/firefly/cmd/group/delete', 'home/firefly/reply//x']) assert.ok(!t.isReplyTopic(bad), bad);
  assert.ok(topicMatches('a/+/c', 'a/b/c'));
  assert.ok(topicMatches('a/#', 'a/b/c'));
  assert.ok(!topicMatches('a/+', 'a/b/c'));
  assert.ok(!topicMatches('a/b/c', 'a/b'));
  assert.throws(() => new Topics('bad/#'));
});

test('broker addresses: URL kept, host and port filled in', () => {
  assert.equal(brokerUrl('hub.local'), 'mqtt://hub.local:1883');
  assert.equal(brokerUrl('10.0.0.2:1999'), 'mqtt://10.0.0.2:1999');
  assert.equal(brokerUrl('mqtts://b:8883'), 'mqtts://b:8883');
  assert.equal(brokerUrl('::1'), 'mqtt://[::1]:1883');
  assert.equal(hostOf('10.0.0.2:7420'), '10.0.0.2');
  assert.equal(hostOf('[::1]:7420'), '[::1]');
  assert.equal(hostOf('hub.local'), 'hub.local');
});
