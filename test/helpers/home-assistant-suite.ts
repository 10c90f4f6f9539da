/**
 * The Home Assistant suite, run against the hub's embedded broker and against a real
 * Mosquitto with a user name and password (test/home-assistant*.test.ts). Everything a
 * Home Assistant would do goes through Debian's real `mosquitto_sub` and `mosquitto_pub`:
 * read the retained discovery configs, check them, read every state topic they name,
 * press every button and move every control they describe, and announce itself with the
 * birth message. Two real nodes with measurement outputs say what really played.
 */
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import type { ErrorEvent, GroupMedia, GroupState, NodeList, NodeState, PlaylistList } from '../../src/protocol/schemas.js';
import { REQUIRED_OPTIONS, type DeviceConfig } from '../../hub/homeassistant/discovery.js';
import { makeTrack } from './audio.js';
import { mosquittoClient, Observer, startControlHub, startControlNode, type BrokerAccess, type HubProcess } from './control-plane.js';
import { framesOf, readMeasure } from './measure.js';
import { cleanup, ctlLibrary, tempDir, waitFor as waitUntil, type FireflyProcess } from './processes.js';

/** The machine is shared and loaded: every wait here is generous (a minute) unless it says otherwise. */
function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 60_000, everyMs = 100): Promise<T> {
  return waitUntil(what, check, timeoutMs, everyMs);
}

const run = promisify(execFile);

interface Retained {
  topic: string;
  payload: Buffer;
}

/** The retained messages on these filters, read with the real mosquitto_sub (it stops at the first live message or after `seconds`). */
export function retainedWithMosquittoSub(broker: BrokerAccess, filters: string[], seconds = 2): Promise<Retained[]> {
  const auth = broker.username ? ['-u', broker.username, '-P', broker.password ?? ''] : [];
  const args = ['-h', '127.0.0.1', '-p', String(broker.port), ...auth, '--retained-only', '-W', String(seconds), '-F', '%t %x', ...filters.flatMap((f) => ['-t', f])];
  return new Promise((resolve, reject) => {
    const child = spawn('mosquitto_sub', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', () => {
      if (/Connection error|not authori[sz]ed|refused/i.test(err)) return reject(new Error(`mosquitto_sub: ${err}`));
      resolve(
        out
          .split('\n')
          .filter((l) => l.includes(' '))
          .map((l) => {
            const at = l.lastIndexOf(' ');
            return { topic: l.slice(0, at), payload: Buffer.from(l.slice(at + 1), 'hex') };
          })
          .filter((m) => m.payload.length > 0),
      );
    });
  });
}

/** Publishes with the real mosquitto_pub (not retained). */
function pub(broker: BrokerAccess, topic: string, message: string): Promise<string> {
  return mosquittoClient(broker, 'mosquitto_pub', ['-t', topic, '-m', message]);
}

/** The `value_json.a.b` paths a Home Assistant template reads. */
function templatePaths(template: string): string[][] {
  return [...template.matchAll(/value_json((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)].map((m) => m[1].slice(1).split('.'));
}

function hasPath(value: unknown, path: string[]): boolean {
  let v = value;
  for (const key of path) {
    if (v === null || typeof v !== 'object' || !(key in (v as object))) return false;
    v = (v as Record<string, unknown>)[key];
  }
  return true;
}

/** Renders the only command templates the bridge uses; any other template fails the test. */
function renderCommand(template: string, value: string | number): string {
  const out = template.replace('{{ value | int }}', String(Math.trunc(Number(value)))).replace('{{ value | tojson }}', JSON.stringify(value));
  assert.ok(!out.includes('{{'), `a command template this test cannot render: ${template}`);
  return out;
}

export function homeAssistantSuite(startBroker: () => Promise<BrokerAccess>): void {
  let broker: BrokerAccess;
  let hub: HubProcess;
  let observer: Observer;
  let ha: string;
  const entries = new Map<string, number>();
  const nodes: { name: string; proc?: FireflyProcess; measure: string; uuid?: string; nodeId?: number }[] = [];
  let groupId: number;
  let coverJpeg: Buffer;

  const t = () => observer.topics;
  const groupState = () => observer.last<GroupState>(t().groupState(groupId))!;
  const mark = () => observer.messages.length;

  /** The first message on `topic` after `since` that passes `match`. */
  const after_ = <T,>(since: number, topic: string, what: string, match: (v: T) => boolean, timeoutMs = 60_000): Promise<T> => observer.after<T>(since, topic, what, match, timeoutMs);

  const stateAfter = (since: number, what: string, match: (g: GroupState) => boolean, timeoutMs?: number) => after_<GroupState>(since, t().groupState(groupId), what, match, timeoutMs);

  /** Frames of this session and entry recorded on every node, at least `min` each. */
  async function framesOnEveryNode(session: string, entryId: number, min = 20): Promise<Map<number, number>[]> {
    return waitFor(
      `frames of session ${session} on every node`,
      async () => {
        const perNode = await Promise.all(nodes.map(async (n) => framesOf(await readMeasure(n.measure), session, entryId)));
        return perNode.every((f) => f.size >= min) ? perNode : undefined;
      },
      60_000,
      200,
    );
  }

  async function lastFrameTime(): Promise<number> {
    const all = await Promise.all(nodes.map((n) => readMeasure(n.measure)));
    return Math.max(...all.map((r) => r.at(-1)?.trueMs ?? 0));
  }

  before(async () => {
    broker = await startBroker();
    ha = `ha-${randomBytes(3).toString('hex')}`;
    const library = await tempDir('firefly-music-');
    await makeTrack(join(library, 'kob/1 so what.flac'), { format: 'flac', seconds: 12, seed: 1, title: 'So What', artist: 'Miles Davis', album: 'Kind of Blue' });
    await makeTrack(join(library, 'kob/2 freddie.flac'), { format: 'flac', seconds: 12, seed: 2, title: 'Freddie Freeloader', artist: 'Miles Davis', album: 'Kind of Blue' });
    await makeTrack(join(library, 'other/else.ogg'), { format: 'ogg', seconds: 12, seed: 3, title: 'Somewhere', artist: 'Someone', album: 'Else' });
    // A track with cover art: a real JPEG in an MP3's picture frame.
    const coverFile = join(library, 'cover.jpg');
    await run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc=size=64x64:rate=1', '-frames:v', '1', coverFile]);
    coverJpeg = await readFile(coverFile);
    await makeTrack(join(library, 'tmp-covered.mp3'), { format: 'mp3', seconds: 12, seed: 4, title: 'Covered', artist: 'Painter', album: 'Pictures' });
    await mkdir(join(library, 'pictures'));
    const withPicture = ['-map', '0:a', '-map', '1:v', '-c', 'copy', '-id3v2_version', '3', '-disposition:v', 'attached_pic'];
    await run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-i', join(library, 'tmp-covered.mp3'), '-i', coverFile, ...withPicture, join(library, 'pictures/covered.mp3')]);
    await rm(join(library, 'tmp-covered.mp3'));
    await rm(coverFile);

    hub = await startControlHub(broker, { library, extraArgs: ['--ha-discovery-prefix', ha, '--name', 'testhub'] });
    await hub.proc.waitForLog('library indexed', 60_000);
    for (const e of await ctlLibrary(hub.grpc)) entries.set(e.path, e.id);
    assert.equal(entries.size, 4, `entries: ${[...entries.keys()].join(', ')}`);

    observer = await new Observer(broker).connect();
    await observer.subscribe(`${broker.prefix}/#`);
    for (const name of ['kitchen', 'lounge']) {
      const measure = join(await tempDir('firefly-measure-'), 'frames.jsonl');
      const n: (typeof nodes)[number] = { name, measure };
      nodes.push(n);
      const { proc } = await startControlNode(broker, hub, { name, extraArgs: ['--serve-host', '127.0.0.1', '--serve-port', '0', '--output', 'measure', '--measure-file', measure, '--output-buffer', '50'] });
      n.proc = proc;
    }
    const list = await observer.waitFor<NodeList>('both nodes online', t().nodes, (l) => l.nodes.filter((n) => n.online).length === 2, 60_000);
    for (const n of nodes) {
      const info = list.nodes.find((i) => i.name === n.name)!;
      n.uuid = info.uuid;
      n.nodeId = info.nodeId;
    }
    for (const n of nodes) await n.proc!.waitForLog((l) => l.msg === 'sync complete', 60_000);
    await pub(broker, t().command('group/create'), JSON.stringify({ name: 'Kitchen', members: nodes.map((n) => n.nodeId) }));
    const list2 = await observer.waitFor<{ groups: GroupState[] }>('the group', t().groups, (l) => l.groups.some((g) => g.name === 'Kitchen' && g.members.length === 2 && g.available), 60_000);
    groupId = list2.groups.find((g) => g.name === 'Kitchen')!.groupId;
    await pub(broker, t().command('playlist/create'), JSON.stringify({ name: 'Evening', entryIds: [entries.get('other/else.ogg'), entries.get('kob/1 so what.flac')] }));
    await observer.waitFor<PlaylistList>('the playlist', t().playlists, (l) => l.playlists.length === 1, 60_000);
    // Clocks synced before anything plays.
    await waitFor('clocks synced', () => observer.last<NodeList>(t().nodes)?.nodes.every((n) => !n.online || n.clock?.synced) && true, 60_000);
  });

  after(async () => {
    // With FIREFLY_TEST_KEEP, the hub's and nodes' logs are kept beside the measurement files.
    if (process.env.FIREFLY_TEST_KEEP) {
      const { writeFile } = await import('node:fs/promises');
      for (const [name, proc, dir] of [['hub', hub?.proc, hub?.dataDir], ...nodes.map((n) => [n.name, n.proc, join(n.measure, '..')] as const)] as const) {
        if (proc && dir) await writeFile(join(dir, `${name}.log`), proc.logs.map((l) => JSON.stringify(l)).join('\n'));
      }
      process.stderr.write(`logs kept: ${hub?.dataDir}, ${nodes.map((n) => n.measure).join(', ')}\n`);
    }
    await observer?.close();
    await hub?.proc.stop();
    for (const n of nodes) await n.proc?.stop();
    await broker?.stop();
    await cleanup();
  });

  /** The device configs on the broker now, by object id. */
  async function configs(): Promise<Map<string, DeviceConfig>> {
    const got = await retainedWithMosquittoSub(broker, [`${ha}/device/+/config`]);
    return new Map(got.map((m) => [m.topic.split('/').at(-2)!, JSON.parse(m.payload.toString()) as DeviceConfig]));
  }

  test('discovery: one device for the hub, the group and each node, every payload well-formed, every topic real', async () => {
    const devices = await waitFor('four devices', async () => {
      const c = await configs();
      return c.size === 4 && [...c.values()].some((d) => d.cmps.playlist) ? c : undefined;
    });
    const byModel = (m: string) => [...devices.values()].filter((d) => d.dev.mdl === m);
    assert.equal(byModel('Hub').length, 1);
    assert.equal(byModel('Group').length, 1);
    assert.equal(byModel('Node').length, 2);
    const hubId = byModel('Hub')[0].dev.ids[0];
    const uniqueIds = new Set<string>();
    const stateTopics = new Map<string, string[][]>();
    for (const [objectId, d] of devices) {
      assert.match(objectId, /^[A-Za-z0-9_-]+$/);
      assert.ok(d.dev.ids.length > 0 && d.dev.name, `${objectId}: device ids and name`);
      assert.equal(d.o.name, 'Firefly', `${objectId}: origin`);
      if (d.dev.mdl !== 'Hub') assert.equal(d.dev.via_device, hubId, `${objectId} links to the hub device`);
      assert.ok(Object.keys(d.cmps).length > 0);
      for (const [key, c] of Object.entries(d.cmps)) {
        const where = `${objectId}.${key}`;
        assert.ok(REQUIRED_OPTIONS[c.p], `${where}: known platform ${c.p}`);
        for (const option of REQUIRED_OPTIONS[c.p]) assert.ok(c[option] !== undefined && c[option] !== '', `${where}: ${c.p} needs ${option}`);
        assert.ok(typeof c.unique_id === 'string' && c.unique_id.length > 0, `${where}: unique_id`);
        assert.ok(!uniqueIds.has(c.unique_id!), `${where}: unique_id ${c.unique_id} used twice`);
        uniqueIds.add(c.unique_id!);
        if (c.p === 'select') assert.ok(Array.isArray(c.options) && (c.options as unknown[]).length > 0, `${where}: options`);
        if (c.p === 'number') assert.ok((c.min as number) <= (c.max as number), `${where}: min ≤ max`);
        const availability = (c.availability ?? []) as { topic: string; value_template?: string }[];
        assert.ok(availability.length > 0, `${where}: availability`);
        for (const a of availability) stateTopics.set(a.topic, [...(stateTopics.get(a.topic) ?? []), ...templatePaths(a.value_template ?? '')]);
        for (const [topicKey, templateKey] of [
          ['state_topic', 'value_template'],
          ['json_attributes_topic', 'json_attributes_template'],
        ] as const) {
          const topic = c[topicKey] as string | undefined;
          if (topic) stateTopics.set(topic, [...(stateTopics.get(topic) ?? []), ...templatePaths((c[templateKey] as string | undefined) ?? '')]);
        }
        if (c.command_topic) assert.match(c.command_topic as string, new RegExp(`^${broker.prefix}/(group|node)/[^/+#]+/set$`), `${where}: command topic`);
      }
    }
    // The group: five buttons, a volume slider, playlist select, state, now playing, sync quality, cover image.
    const group = byModel('Group')[0];
    for (const key of ['play', 'pause', 'stop', 'next', 'previous']) assert.equal(group.cmps[key]?.p, 'button', `button ${key}`);
    assert.equal(group.cmps.volume.mode, 'slider');
    assert.deepEqual(group.cmps.playlist.options, ['Evening']);
    assert.equal(group.cmps.sync_error.entity_category, 'diagnostic');
    assert.equal(group.cmps.cover.p, 'image');
    assert.equal(group.cmps.now_playing.json_attributes_topic, t().groupMedia(groupId));
    for (const n of byModel('Node')) assert.deepEqual(n.cmps.group.options, ['None', 'Kitchen']);

    // Every state, attribute and availability topic named is one the hub publishes (retained),
    // and holds the fields the templates read.
    const retained = await retainedWithMosquittoSub(broker, [...stateTopics.keys()], 3);
    for (const [topic, paths] of stateTopics) {
      const m = retained.find((r) => r.topic === topic);
      assert.ok(m, `nothing retained on ${topic}, which discovery names`);
      const json = JSON.parse(m.payload.toString()) as unknown;
      for (const path of paths) assert.ok(hasPath(json, path), `${topic} has no ${path.join('.')}`);
    }
    const image = group.cmps.cover;
    assert.equal(image.image_topic, t().groupCover(groupId));
    process.stderr.write(`discovery: ${devices.size} devices, ${uniqueIds.size} entities, ${stateTopics.size} state topics checked\n`);
  });

  test('every control discovery describes works: buttons, sliders, switches and selects change the group on real nodes', async () => {
    const devices = await configs();
    const group = [...devices.values()].find((d) => d.dev.mdl === 'Group')!;
    const c = group.cmps;
    const press = (key: string) => pub(broker, c[key].command_topic as string, c[key].payload_press as string);
    const errorsBefore = observer.json<ErrorEvent>(t().errors).length;

    // Playlist select → the playlist plays on both nodes.
    let since = mark();
    const sent = Date.now();
    await pub(broker, c.playlist.command_topic as string, renderCommand(c.playlist.command_template as string, 'Evening'));
    let g = await stateAfter(since, 'the playlist playing', (s) => s.playback.state === 'playing' && s.playback.anchor !== null);
    process.stderr.write(`${broker.kind}: playlist select (mosquitto_pub) → group state playing: ${Date.now() - sent} ms\n`);
    assert.equal(g.playback.entryId, entries.get('other/else.ogg'));
    assert.deepEqual(g.queue.items.map((i) => i.entryId), [entries.get('other/else.ogg'), entries.get('kob/1 so what.flac')]);
    await framesOnEveryNode(g.playback.session!, g.playback.entryId!);
    const media = await after_<GroupMedia>(since, t().groupMedia(groupId), 'media naming the playlist', (m) => m.playlist === 'Evening' && m.state === 'playing');
    assert.equal(media.artist, 'Someone');
    assert.equal(media.album, 'Else');

    // Volume slider → group volume 30, and every node is told its new gain.
    since = mark();
    const volumeSent = Date.now();
    await pub(broker, c.volume.command_topic as string, renderCommand(c.volume.command_template as string, 30));
    g = await stateAfter(since, 'volume 30', (s) => s.volume === 30);
    process.stderr.write(`${broker.kind}: volume slider (mosquitto_pub) → group state volume 30: ${Date.now() - volumeSent} ms\n`);
    for (const n of nodes) await after_<{ command: string; groupVolume?: number }>(since, t().nodeCommand(n.uuid!), `${n.name} told volume 30`, (cmd) => cmd.command === 'volume' && cmd.groupVolume === 30);

    // Pause: the nodes stop writing frames.
    since = mark();
    await press('pause');
    g = await stateAfter(since, 'paused', (s) => s.playback.state === 'paused');
    await new Promise((r) => setTimeout(r, 1500));
    const stoppedAt = await lastFrameTime();
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await lastFrameTime(), stoppedAt, 'no frames played while paused');

    // Play resumes: a new session, frames again.
    since = mark();
    await press('play');
    g = await stateAfter(since, 'playing again', (s) => s.playback.state === 'playing' && s.playback.anchor !== null);
    assert.ok(g.playback.anchor!.positionMs > 0, 'resumed where it paused');
    await framesOnEveryNode(g.playback.session!, g.playback.entryId!);

    // Next: the second entry of the playlist on every node.
    since = mark();
    await press('next');
    g = await stateAfter(since, 'the next track', (s) => s.playback.entryId === entries.get('kob/1 so what.flac') && s.playback.anchor !== null && s.playback.state === 'playing');
    await framesOnEveryNode(g.playback.session!, g.playback.entryId!);

    // Previous: a new session from the start of a track (the previous one, or this one past 3 s).
    since = mark();
    const before = g.playback.session;
    await press('previous');
    g = await stateAfter(since, 'previous', (s) => s.playback.session !== before && s.playback.anchor !== null && s.playback.state === 'playing');
    assert.equal(g.playback.anchor!.positionMs, 0);
    const frames = await framesOnEveryNode(g.playback.session!, g.playback.entryId!);
    for (const f of frames) assert.ok(Math.min(...f.keys()) < 48000, 'played from the start of the track');

    // Mute switch, shuffle switch, repeat select.
    since = mark();
    await pub(broker, c.mute.command_topic as string, c.mute.payload_on as string);
    await stateAfter(since, 'muted', (s) => s.playback.muted);
    for (const n of nodes) await after_<{ command: string; muted?: boolean }>(since, t().nodeCommand(n.uuid!), `${n.name} muted`, (cmd) => cmd.command === 'output' && cmd.muted === true);
    since = mark();
    await pub(broker, c.mute.command_topic as string, c.mute.payload_off as string);
    await stateAfter(since, 'unmuted', (s) => !s.playback.muted);
    since = mark();
    await pub(broker, c.shuffle.command_topic as string, c.shuffle.payload_on as string);
    await stateAfter(since, 'shuffle on', (s) => s.playback.shuffle);
    await pub(broker, c.shuffle.command_topic as string, c.shuffle.payload_off as string);
    await stateAfter(since, 'shuffle off', (s) => !s.playback.shuffle);
    await pub(broker, c.repeat.command_topic as string, renderCommand(c.repeat.command_template as string, 'all'));
    await stateAfter(since, 'repeat all', (s) => s.playback.repeat === 'all');

    // Stop: nothing plays any more.
    since = mark();
    await press('stop');
    await stateAfter(since, 'stopped', (s) => s.playback.state === 'stopped');
    await new Promise((r) => setTimeout(r, 1500));
    const at = await lastFrameTime();
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await lastFrameTime(), at, 'no frames after stop');

    // A node's own controls: volume, and its group select (out of the group and back).
    const node = [...devices.values()].find((d) => d.dev.mdl === 'Node' && d.dev.name === 'lounge')!;
    const lounge = nodes.find((n) => n.name === 'lounge')!;
    since = mark();
    await pub(broker, node.cmps.volume.command_topic as string, renderCommand(node.cmps.volume.command_template as string, 40));
    await after_<NodeState>(since, t().nodeState(lounge.uuid!), 'lounge at volume 40', (s) => s.volume === 40);
    await pub(broker, node.cmps.group.command_topic as string, renderCommand(node.cmps.group.command_template as string, 'None'));
    await stateAfter(since, 'lounge out of the group', (s) => s.members.length === 1);
    await after_<NodeState>(since, t().nodeState(lounge.uuid!), 'lounge state without a group', (s) => s.group === 'None' && s.groupId === null);
    since = mark();
    await pub(broker, node.cmps.group.command_topic as string, renderCommand(node.cmps.group.command_template as string, 'Kitchen'));
    await stateAfter(since, 'lounge back', (s) => s.members.length === 2);
    await after_<NodeState>(since, t().nodeState(lounge.uuid!), 'lounge state in Kitchen', (s) => s.group === 'Kitchen');
    await pub(broker, node.cmps.mute.command_topic as string, node.cmps.mute.payload_on as string);
    await after_<NodeState>(since, t().nodeState(lounge.uuid!), 'lounge muted', (s) => s.muted);
    await pub(broker, node.cmps.mute.command_topic as string, node.cmps.mute.payload_off as string);
    await after_<NodeState>(since, t().nodeState(lounge.uuid!), 'lounge unmuted', (s) => !s.muted);

    assert.equal(observer.json<ErrorEvent>(t().errors).length, errorsBefore, `no error events: ${JSON.stringify(observer.json<ErrorEvent>(t().errors).slice(errorsBefore))}`);
  });

  test('plain command topics: entry, album, search, seek, combined fields; cover art follows the track', async () => {
    const set = t().groupSet('kitchen'); // by name, ignoring case
    let since = mark();
    await pub(broker, set, JSON.stringify({ entry: entries.get('pictures/covered.mp3') }));
    let g = await stateAfter(since, 'the covered track', (s) => s.playback.entryId === entries.get('pictures/covered.mp3') && s.playback.anchor !== null);
    await framesOnEveryNode(g.playback.session!, g.playback.entryId!);
    await after_<GroupMedia>(since, t().groupMedia(groupId), 'media with a cover', (m) => m.cover && m.title === 'Covered');
    const cover = await waitFor('the cover bytes', async () => (await retainedWithMosquittoSub(broker, [t().groupCover(groupId)])).at(0));
    assert.deepEqual(cover.payload, coverJpeg, 'the cover topic holds the JPEG embedded in the file');
    const group = [...(await configs()).values()].find((d) => d.dev.mdl === 'Group')!;
    assert.equal(group.cmps.cover.content_type, 'image/jpeg');

    since = mark();
    await pub(broker, set, JSON.stringify({ album: 'kind of blue' }));
    g = await stateAfter(since, 'the album', (s) => s.queue.length === 2 && s.playback.anchor !== null);
    assert.deepEqual(g.queue.items.map((i) => i.entryId), [entries.get('kob/1 so what.flac'), entries.get('kob/2 freddie.flac')]);
    await framesOnEveryNode(g.playback.session!, g.playback.entryId!);
    // The track without a cover clears the cover topic.
    await waitFor('the cover cleared', async () => (await retainedWithMosquittoSub(broker, [t().groupCover(groupId)])).length === 0);

    since = mark();
    await pub(broker, set, JSON.stringify({ search: 'someone else' }));
    g = await stateAfter(since, 'the search result', (s) => s.queue.length === 1 && s.playback.entryId === entries.get('other/else.ogg') && s.playback.anchor !== null);

    // entries, then the words pause and resume (bare and as a JSON string), and {"action"}.
    since = mark();
    await pub(broker, set, JSON.stringify({ entries: [entries.get('kob/2 freddie.flac'), entries.get('other/else.ogg')] }));
    g = await stateAfter(since, 'the entries', (s) => s.queue.length === 2 && s.playback.entryId === entries.get('kob/2 freddie.flac') && s.playback.anchor !== null);
    since = mark();
    await pub(broker, set, 'pause');
    const paused = await stateAfter(since, 'paused', (s) => s.playback.state === 'paused');
    since = mark();
    await pub(broker, set, '"resume"');
    // A new session from where it paused (0 when the pause came before the start instant).
    g = await stateAfter(since, 'resumed', (s) => s.playback.state === 'playing' && s.playback.anchor !== null && s.playback.session !== paused.playback.session);
    assert.ok(Math.abs(g.playback.anchor!.positionMs - paused.playback.positionMs) < 5, `resumed at ${g.playback.anchor!.positionMs} ms, paused at ${paused.playback.positionMs} ms`);
    await framesOnEveryNode(g.playback.session!, g.playback.entryId!);
    since = mark();
    await pub(broker, set, '{"action": "next"}');
    g = await stateAfter(since, 'next by action', (s) => s.playback.entryId === entries.get('other/else.ogg') && s.playback.anchor !== null);

    since = mark();
    await pub(broker, set, JSON.stringify({ seek: 5 }));
    g = await stateAfter(since, 'the seek', (s) => s.playback.anchor?.positionMs === 5000);
    const frames = await framesOnEveryNode(g.playback.session!, g.playback.entryId!);
    // Frames count at the output's rate (48 kHz).
    for (const f of frames) assert.ok(Math.abs(Math.min(...f.keys()) - 5 * 48000) < 48000 * 0.5, `played from 5 s: first frame ${Math.min(...f.keys())}`);

    // One message: the Evening playlist at 30 % (the automation example in docs/home-assistant.md).
    since = mark();
    await pub(broker, t().groupSet(groupId), '{"playlist": "evening", "volume": 25}');
    g = await stateAfter(since, 'playlist at 25 %', (s) => s.volume === 25 && s.queue.length === 2 && s.playback.anchor !== null && s.playback.entryId === entries.get('other/else.ogg'));
    await framesOnEveryNode(g.playback.session!, g.playback.entryId!);
    since = mark();
    await pub(broker, set, 'stop');
    await stateAfter(since, 'stopped', (s) => s.playback.state === 'stopped');

    // A node by name: out of its group with null, back by group id.
    since = mark();
    await pub(broker, t().nodeSet('kitchen'), '{"group": null}');
    await stateAfter(since, 'kitchen out', (s) => s.members.length === 1);
    await pub(broker, t().nodeSet('kitchen'), JSON.stringify({ group: groupId }));
    await stateAfter(since, 'kitchen back', (s) => s.members.length === 2);
  });

  test('bad plain commands get the hub error event, naming what is wrong, and change nothing', async () => {
    const cases: [string, string, string, RegExp][] = [
      [t().groupSet(groupId), 'bogus', 'invalid', /unknown command "bogus"; expected one of play, pause/],
      [t().groupSet(groupId), '"dance"', 'invalid', /unknown command "dance"/],
      [t().nodeSet(nodes[0].uuid!), 'play', 'invalid', /node set: unknown command "play"; expected one of mute, unmute/],
      [t().groupSet(groupId), '{"volume": 300}', 'invalid', /volume/],
      [t().groupSet(groupId), '{"volume": 20, "extra": 1}', 'invalid', /extra|Unrecognized/i],
      [t().groupSet(groupId), '{"playlist": "Nope"}', 'not-found', /no playlist "Nope"/],
      [t().groupSet(groupId), '{"album": "No Such Album"}', 'not-found', /no album/],
      [t().groupSet(groupId), '{"search": "zzzz"}', 'not-found', /nothing in the library matches/],
      [t().groupSet(groupId), '{"entry": 9999}', 'invalid', /9999/],
      [t().groupSet(groupId), '{"playlist": 1, "album": "x"}', 'invalid', /at most one/],
      [t().groupSet(groupId), '{not json', 'bad-json', /not JSON/],
      [t().groupSet(999), 'play', 'not-found', /no group "999"/],
      [t().nodeSet('nobody'), '{"volume": 3}', 'not-found', /no node "nobody"/],
      [t().nodeSet(nodes[0].uuid!), '{"group": "Attic"}', 'not-found', /no group "Attic"/],
    ];
    // Stopped first, so nothing moves on by itself while the refusals are checked.
    const since0 = mark();
    await pub(broker, t().groupSet(groupId), 'stop');
    await stateAfter(since0, 'stopped', (s) => s.playback.state === 'stopped');
    const before = groupState();
    for (const [topic, payload, code, text] of cases) {
      const since = mark();
      await pub(broker, topic, payload);
      const e = await after_<ErrorEvent>(since, t().errors, `an error event for ${payload} on ${topic}`, (ev) => ev.topic === topic);
      assert.equal(e.code, code, `${payload}: ${e.message}`);
      assert.match(e.message, text);
    }
    await new Promise((r) => setTimeout(r, 300));
    const now = groupState();
    assert.equal(now.volume, before.volume);
    assert.equal(now.playback.state, before.playback.state);
    assert.deepEqual(now.queue, before.queue);
  });

  test("Home Assistant's birth message brings back discovery and state", async () => {
    const before = await configs();
    const stateTopics = [t().groupMedia(groupId), ...nodes.map((n) => t().nodeState(n.uuid!))];
    // As if the broker lost everything retained (a broker restart without persistence).
    for (const topic of [...[...before.keys()].map((id) => `${ha}/device/${id}/config`), ...stateTopics]) {
      await mosquittoClient(broker, 'mosquitto_pub', ['-r', '-n', '-t', topic]);
    }
    assert.equal((await configs()).size, 0, 'configs cleared');
    await pub(broker, `${ha}/status`, 'online');
    const back = await waitFor('discovery back', async () => {
      const c = await configs();
      return c.size === before.size ? c : undefined;
    });
    assert.deepEqual([...back.keys()].sort(), [...before.keys()].sort());
    for (const [id, d] of back) assert.deepEqual(d, before.get(id));
    const states = await retainedWithMosquittoSub(broker, stateTopics);
    assert.deepEqual(states.map((s) => s.topic).sort(), [...stateTopics].sort());
    const media = JSON.parse(states.find((s) => s.topic === t().groupMedia(groupId))!.payload.toString()) as GroupMedia;
    assert.equal(media.volume, groupState().volume);
    assert.equal(media.state, groupState().playback.state);
  });

  test('a deleted group loses its device; a new playlist becomes an option', async () => {
    let since = mark();
    await pub(broker, t().command('group/create'), '{"name":"Attic"}');
    const groups = await after_<{ groups: GroupState[] }>(since, t().groups, 'Attic in the group list', (l) => l.groups.some((g) => g.name === 'Attic'));
    const atticId = groups.groups.find((g) => g.name === 'Attic')!.groupId;
    await waitFor('Attic discovered, and an option of each node', async () => {
      const c = [...(await configs()).values()];
      return c.some((d) => d.dev.name === 'Attic') && c.filter((d) => d.dev.mdl === 'Node').every((d) => (d.cmps.group.options as string[]).includes('Attic'));
    });
    await pub(broker, t().command('playlist/create'), `{"name":"Morning","entryIds":[${entries.get('kob/2 freddie.flac')}]}`);
    await waitFor('Morning an option', async () => [...(await configs()).values()].filter((d) => d.dev.mdl === 'Group').every((d) => (d.cmps.playlist?.options as string[] | undefined)?.includes('Morning')));
    since = mark();
    await pub(broker, t().command('group/delete'), JSON.stringify({ groupId: atticId }));
    await waitFor('Attic removed', async () => {
      const c = [...(await configs()).values()];
      return !c.some((d) => d.dev.name === 'Attic') && c.filter((d) => d.dev.mdl === 'Node').every((d) => !(d.cmps.group.options as string[]).includes('Attic'));
    });
    const left = await retainedWithMosquittoSub(broker, [t().groupMedia(atticId), t().groupCover(atticId), t().groupState(atticId)]);
    assert.deepEqual(left, [], 'nothing retained for the deleted group');
  });

  test("a config for a group this hub does not have (left from another run) is removed; other installations' are left alone", async () => {
    const hubId = [...(await configs()).values()].find((d) => d.dev.mdl === 'Hub')!.dev.ids[0];
    const stale = hubId.replace(/_hub$/, '_group_77');
    const foreign = 'some_other_bridge_device';
    // Another installation whose topic prefix extends ours ("<prefix>/upstairs"): its ids start like ours.
    const lookalike = hubId.replace(/_hub$/, '_upstairs_group_1');
    const config = (id: string, via: string) => JSON.stringify({ dev: { ids: [id], name: 'Gone', via_device: via }, o: { name: 'Firefly' }, cmps: { play: { p: 'button', unique_id: `${id}_play`, command_topic: 'x/set' } } });
    // The stale one last: once it is gone, the hub has seen the other two.
    await mosquittoClient(broker, 'mosquitto_pub', ['-r', '-t', `${ha}/device/${foreign}/config`, '-m', config(foreign, 'elsewhere')]);
    await mosquittoClient(broker, 'mosquitto_pub', ['-r', '-t', `${ha}/device/${lookalike}/config`, '-m', config(lookalike, hubId.replace(/_hub$/, '_upstairs_hub'))]);
    await mosquittoClient(broker, 'mosquitto_pub', ['-r', '-t', `${ha}/device/${stale}/config`, '-m', config(stale, hubId)]);
    await waitFor('the stale config removed', async () => !(await configs()).has(stale));
    const left = await configs();
    assert.ok(left.has(foreign), "another bridge's config stays");
    assert.ok(left.has(lookalike), "another Firefly installation's config stays");
    for (const id of [foreign, lookalike]) await mosquittoClient(broker, 'mosquitto_pub', ['-r', '-n', '-t', `${ha}/device/${id}/config`]);
  });
}
