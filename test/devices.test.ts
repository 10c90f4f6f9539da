/**
 * Chromecast and Sonos speakers in a mixed group, end to end: a real hub process, two real
 * native nodes on measurement outputs, a Cast double on castv2's Server (TLS) and a Sonos
 * double answering SOAP over HTTP, both driven by the hub through the real client libraries
 * (castv2-client, sonos). The doubles fetch the hub's stream URLs like devices (HEAD,
 * ranged GETs) and sound a configurable delay after each play or seek, on the machine's
 * clock, which is the hub's clock too: so their start instants compare directly with the
 * group's timeline and with the native nodes' measured frames.
 */
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { monotonicMs } from '../src/clock/local-clock.js';
import type { GroupState, NodeList } from '../src/protocol/schemas.js';
import type { CommandName } from '../src/protocol/topics.js';
import { makeTrack } from './helpers/audio.js';
import { embeddedBroker, Observer, startControlHub, startControlNode, type BrokerAccess, type HubProcess } from './helpers/control-plane.js';
import { framesOf, readMeasure } from './helpers/measure.js';
import { cleanup, ctlLibrary, tempDir, waitFor, type FireflyProcess } from './helpers/processes.js';
import { CastDouble } from './doubles/cast-double.js';
import { SonosDouble } from './doubles/sonos-double.js';
import type { DoubleStart } from './doubles/playhead.js';

const RATE = 48000;
/** Simulated start delays: what the hub must learn and compensate. */
const CAST_DELAY_MS = 650;
const SONOS_DELAY_MS = 900;
/**
 * How close a compensated device must start to the group's timeline. Generous on purpose: a
 * loaded 2-core machine, position polls over MQTT-free but real TLS and HTTP, and Sonos'
 * whole-second positions; the measured figures are printed.
 */
const BOUND_MS = 80;

describe('Chromecast and Sonos in a mixed group (hub, 2 native nodes, Cast and Sonos doubles)', () => {
  let broker: BrokerAccess;
  let hub: HubProcess;
  let observer: Observer;
  let groupId: number;
  let library: string;
  const cast = new CastDouble(CAST_DELAY_MS);
  const sonos = new SonosDouble(SONOS_DELAY_MS, 'Study');
  const entries = new Map<string, number>();
  const nodes: { name: string; proc?: FireflyProcess; measure: string }[] = [];
  const ids = { cast: 0, sonos: 0 };
  let httpPort = 0;

  const command = (name: CommandName, body: Record<string, unknown>): Promise<unknown> => observer.command(name, body);

  const state = () => observer.last<GroupState>(observer.topics.groupState(groupId))!;
  const mark = () => observer.messages.length;

  function stateAfter(since: number, what: string, match: (g: GroupState) => boolean, timeoutMs = 20_000): Promise<GroupState> {
    const topic = observer.topics.groupState(groupId);
    const last = () => {
      const g = observer.last<GroupState>(topic);
      return g ? JSON.stringify({ playback: g.playback.state, anchor: g.playback.anchor, errors: g.errors.slice(-3), members: g.members.map((m) => [m.name, m.online]) }) : 'none';
    };
    return observer.after<GroupState>(since, topic, what, match, timeoutMs).catch((err: Error) => {
      throw new Error(`${err.message}; the group's last state: ${last()}`);
    });
  }

  const started = (since: number) => stateAfter(since, 'a started session', (g) => g.playback.anchor !== null && g.playback.state === 'playing');
  const originOf = (g: GroupState) => g.playback.anchor!.hubMs - g.playback.anchor!.positionMs;

  /** The native nodes' own origin (true time of track position 0) from their measured frames: the median over frames. */
  async function nodeOrigins(g: GroupState): Promise<number[]> {
    const out: number[] = [];
    for (const n of nodes) {
      const frames = framesOf(await readMeasure(n.measure), g.playback.session!, g.playback.entryId!);
      const origins = [...frames].map(([frame, trueMs]) => trueMs - (frame * 1000) / RATE).sort((a, b) => a - b);
      assert.ok(origins.length > 5, `${n.name} recorded ${origins.length} frames of the session`);
      out.push(origins[origins.length >> 1]);
    }
    return out;
  }

  /** Waits until the double's latest start (after `since`) sits within the bound of the timeline; returns it. */
  async function compensated(label: string, starts: DoubleStart[], sinceCount: number, g: GroupState, timeoutMs = 20_000): Promise<{ start: DoubleStart; offsetMs: number; startsNeeded: number }> {
    const origin = originOf(g);
    const s = await waitFor(
      `${label} in step with the group (its starts: ${JSON.stringify(starts.slice(sinceCount).map((x) => Math.round(x.originMs - origin)))})`,
      () => {
        const last = starts.at(-1);
        return starts.length > sinceCount && last && Math.abs(last.originMs - origin) <= BOUND_MS ? last : undefined;
      },
      timeoutMs,
      50,
    );
    const first = starts[sinceCount];
    process.stderr.write(`  ${label}: first sound ${(first.atMs - g.playback.anchor!.hubMs).toFixed(0)} ms after the group's start instant, in step from ${(s.atMs - g.playback.anchor!.hubMs).toFixed(0)} ms\n`);
    return { start: s, offsetMs: s.originMs - origin, startsNeeded: starts.length - sinceCount };
  }

  before(async () => {
    broker = await embeddedBroker();
    library = await tempDir('firefly-music-');
    await makeTrack(join(library, 'a.flac'), { format: 'flac', seconds: 40, seed: 11, title: 'A' });
    await makeTrack(join(library, 'b.mp3'), { format: 'mp3', seconds: 30, seed: 12, title: 'B' });
    await makeTrack(join(library, 'c.opus'), { format: 'opus', seconds: 30, seed: 13, title: 'C' });
    await cast.start();
    await sonos.start();
    hub = await startControlHub(broker, {
      library,
      extraArgs: ['--no-device-discovery', '--cast', `127.0.0.1:${cast.port}`, '--sonos', `127.0.0.1:${sonos.port}`, '--device-advertise-host', '127.0.0.1', '--log-level', process.env.FIREFLY_TEST_LOG_LEVEL ?? 'info'],
    });
    await hub.proc.waitForLog('library indexed', 60_000);
    httpPort = Number((await hub.proc.waitForLog('HTTP listening', 20_000)).port);
    for (const e of await ctlLibrary(hub.grpc)) entries.set(e.path, e.id);
    assert.equal(entries.size, 3);

    observer = await new Observer(broker).connect();
    await observer.subscribe(`${broker.prefix}/group/+/state`, observer.topics.nodes, `${broker.prefix}/node/+/heartbeat`);
    for (const name of ['kitchen', 'lounge']) {
      const measure = join(await tempDir('firefly-measure-'), 'frames.jsonl');
      const n = { name, measure, proc: undefined as FireflyProcess | undefined };
      nodes.push(n);
      n.proc = (await startControlNode(broker, hub, { name, extraArgs: ['--serve-host', '127.0.0.1', '--serve-port', '0', '--output', 'measure', '--measure-file', measure, '--output-buffer', '50'] })).proc;
    }
    for (const n of nodes) await n.proc!.waitForLog((l) => l.msg === 'sync complete' && (l.chunksWanted as number) > 0, 60_000);
    const list = await observer.waitFor<NodeList>('2 nodes and 2 devices online', observer.topics.nodes, (l) => l.nodes.filter((n) => n.online).length === 4, 30_000);
    ids.cast = list.nodes.find((n) => n.kind === 'cast')!.nodeId;
    ids.sonos = list.nodes.find((n) => n.kind === 'sonos')!.nodeId;
    const created = (await command('group/create', { name: 'Mixed', members: list.nodes.map((n) => n.nodeId) })) as GroupState;
    groupId = created.groupId;
    await observer.clocksSynced({ skip: /\/node\/(cast|sonos)-/ });
    await new Promise((r) => setTimeout(r, 1500));
  });

  after(async () => {
    if (process.env.FIREFLY_TEST_KEEP) await writeFile(process.env.FIREFLY_TEST_KEEP === '1' ? join(hub.dataDir, 'hub.log') : process.env.FIREFLY_TEST_KEEP, hub.proc.logs.map((l) => JSON.stringify(l)).join('\n'));
    await observer?.close();
    await cast.stop();
    await sonos.stop();
    await cleanup();
  });

  it('streams refuse bad requests clearly: a bad name, an unknown entry, the wrong extension, a range past the end', async () => {
    const base = `http://127.0.0.1:${httpPort}/stream`;
    const a = entries.get('a.flac')!;
    const size = (await readFile(join(library, 'a.flac'))).length;
    let r = await fetch(`${base}/a.flac`);
    assert.equal(r.status, 400);
    assert.match(((await r.json()) as { error: { message: string } }).error.message, /expected \/stream\/<entryId>\.<ext>/);
    r = await fetch(`${base}/99999.flac`);
    assert.equal(r.status, 404);
    r = await fetch(`${base}/${a}.mp3`);
    assert.equal(r.status, 404);
    assert.match(((await r.json()) as { error: { message: string } }).error.message, new RegExp(`entry ${a} is flac.*/stream/${a}\\.flac`));
    r = await fetch(`${base}/${a}.flac`, { headers: { range: `bytes=${size}-` } });
    assert.equal(r.status, 416);
    assert.equal(r.headers.get('content-range'), `bytes */${size}`);
    r = await fetch(`${base}/${a}.flac`, { headers: { range: 'bytes=-10' } });
    assert.equal(r.status, 206);
    assert.equal((await r.arrayBuffer()).byteLength, 10);
    r = await fetch(`${base}/${a}.mp3?transcode&start=-1`);
    assert.equal(r.status, 400);
    const b = entries.get('b.mp3')!;
    r = await fetch(`${base}/${b}.mp3`, { method: 'HEAD' });
    assert.equal(r.headers.get('content-type'), 'audio/mpeg');
    assert.equal(Number(r.headers.get('content-length')), (await readFile(join(library, 'b.mp3'))).length);
  });

  it('lists the speakers as members of their kind, beside the native nodes', () => {
    const g = state();
    assert.ok(g.members.some((m) => m.kind === 'sonos' && m.name === 'Study'), `the Sonos is called by its room: ${g.members.map((m) => m.name).join(', ')}`);
    const kinds = g.members.map((m) => m.kind).sort();
    assert.deepEqual(kinds, ['cast', 'native', 'native', 'sonos']);
    assert.ok(g.members.every((m) => m.online), JSON.stringify(g.members));
  });

  it('plays: the devices fetch the stream (HEAD, Range), learn their start delay and start in step with the native nodes', async () => {
    const castBefore = cast.playhead.starts.length;
    const sonosBefore = sonos.playhead.starts.length;
    const since = mark();
    await command('play', { groupId, entryIds: [entries.get('a.flac'), entries.get('b.mp3')] });
    const g = await started(since);
    const c = await compensated('Cast', cast.playhead.starts, castBefore, g);
    const s = await compensated('Sonos', sonos.playhead.starts, sonosBefore, g, 30_000);
    const natives = await nodeOrigins(g);
    const origin = originOf(g);
    const spread = [...natives, c.start.originMs, s.start.originMs].map((o) => o - origin);
    process.stderr.write(
      `first play: Cast off by ${c.offsetMs.toFixed(1)} ms after ${c.startsNeeded} start(s); Sonos off by ${s.offsetMs.toFixed(1)} ms after ${s.startsNeeded}; native nodes ${natives.map((o) => (o - origin).toFixed(2)).join(', ')} ms (vs the group timeline)\n`,
    );
    assert.ok(Math.max(...spread) - Math.min(...spread) <= BOUND_MS, `start instants spread ${JSON.stringify(spread)}`);

    // What they fetched is the file, byte for byte, through HEAD and two ranged GETs.
    const file = await readFile(join(library, 'a.flac'));
    const sha = createHash('sha256').update(file).digest('hex');
    for (const [name, d] of [['Cast', cast], ['Sonos', sonos]] as const) {
      const f = d.fetches.at(-1)!;
      assert.match(f.url, /^http:\/\/127\.0\.0\.1:\d+\/stream\/\d+\.flac$/, `${name} fetched ${f.url}`);
      assert.equal(f.contentType, 'audio/flac');
      assert.equal(f.contentLength, file.length);
      assert.equal(f.acceptRanges, 'bytes');
      assert.deepEqual(f.ranges.map((r) => r.status), [206, 206]);
      assert.equal(f.ranges[0].contentRange, `bytes 0-16383/${file.length}`);
      assert.equal(f.sha256, sha, `${name} got other bytes than the file`);
    }
    // The group state reports each device's measured offset, small once corrected.
    const measured = await stateAfter(mark() - 50, 'measured offsets in the group state', (st) =>
      st.members.filter((m) => m.kind !== 'native').every((m) => typeof m.measuredOffsetMs === 'number' && Math.abs(m.measuredOffsetMs) <= BOUND_MS),
    );
    const devs = measured.members.filter((m) => m.kind !== 'native');
    process.stderr.write(`group state: ${devs.map((m) => `${m.kind} measured ${m.measuredOffsetMs} ms, start delay ${m.startDelayMs} ms`).join('; ')}\n`);
    const castMember = devs.find((m) => m.kind === 'cast')!;
    assert.ok(Math.abs(castMember.startDelayMs! - CAST_DELAY_MS) <= BOUND_MS, `learnt Cast delay ${castMember.startDelayMs}`);
  });

  it('pause stops the devices; resume starts them in step at once, with the delay learnt', async () => {
    await command('pause', { groupId });
    await waitFor('devices paused', () => cast.playhead.state === 'paused' && sonos.playhead.state === 'paused', 10_000);
    const pausedAt = cast.playhead.positionMs();
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(cast.playhead.positionMs(), pausedAt, 'the Cast double does not move while paused');
    const castBefore = cast.playhead.starts.length;
    const sonosBefore = sonos.playhead.starts.length;
    const since = mark();
    await command('resume', { groupId });
    const g = await started(since);
    const c = await compensated('Cast', cast.playhead.starts, castBefore, g);
    const s = await compensated('Sonos', sonos.playhead.starts, sonosBefore, g, 30_000);
    process.stderr.write(`resume: Cast off by ${c.offsetMs.toFixed(1)} ms after ${c.startsNeeded} start(s); Sonos off by ${s.offsetMs.toFixed(1)} ms after ${s.startsNeeded}\n`);
    // Learnt: the first start after the resume is planned with the measured delay, not the 300 ms a new device is assumed to
    // have (that would start it 350 ms late). Looser than BOUND_MS: one start, no correction, on a busy machine.
    const firstOff = cast.playhead.starts[castBefore].originMs - originOf(g);
    assert.ok(Math.abs(firstOff) <= 150, `Cast's first start after resume off by ${firstOff.toFixed(1)} ms`);
  });

  it('seeks every member to the new position, together', async () => {
    const castBefore = cast.playhead.starts.length;
    const sonosBefore = sonos.playhead.starts.length;
    const since = mark();
    await command('seek', { groupId, seconds: 20 });
    const g = await started(since);
    assert.equal(g.playback.anchor!.positionMs, 20_000);
    const c = await compensated('Cast', cast.playhead.starts, castBefore, g);
    const s = await compensated('Sonos', sonos.playhead.starts, sonosBefore, g, 30_000);
    const natives = await waitFor('native frames after the seek', async () => {
      try {
        return await nodeOrigins(g);
      } catch {
        return undefined;
      }
    });
    const origin = originOf(g);
    process.stderr.write(`seek: Cast ${c.offsetMs.toFixed(1)} ms, Sonos ${s.offsetMs.toFixed(1)} ms, native ${natives.map((o) => (o - origin).toFixed(2)).join(', ')} ms\n`);
    assert.ok(c.start.positionMs >= 20_000 && s.start.positionMs >= 20_000);
  });

  it('sets each device volume to its own volume times the group volume', async () => {
    await command('group/volume', { groupId, volume: 50 });
    await command('node/volume', { nodeId: ids.cast, volume: 60 });
    await command('node/volume', { nodeId: ids.sonos, volume: 80 });
    await waitFor('device volumes', () => Math.abs(cast.volume.level - 0.3) < 0.001 && sonos.volume === 40, 10_000);
    await command('mute', { nodeId: ids.sonos, muted: true });
    await waitFor('Sonos muted', () => sonos.muted, 10_000);
    await command('mute', { nodeId: ids.sonos, muted: false });
    await waitFor('Sonos unmuted', () => !sonos.muted, 10_000);
  });

  it('a format Sonos cannot play (Opus) reaches it transcoded to MP3; the Cast plays the file itself', async () => {
    const since = mark();
    const sonosFetches = sonos.fetches.length;
    await command('play', { groupId, entryId: entries.get('c.opus') });
    await started(since);
    await waitFor('Sonos fetched the transcoded stream', () => sonos.fetches.length > sonosFetches && sonos.fetches.at(-1)!.url.includes('transcode'), 20_000);
    const f = sonos.fetches.at(-1)!;
    assert.match(f.url, /\/stream\/\d+\.mp3\?transcode&start=\d+$/);
    assert.equal(f.contentType, 'audio/mpeg');
    assert.equal(f.acceptRanges, 'none');
    assert.ok(f.bytes > 100_000, `only ${f.bytes} bytes of MP3`);
    assert.ok(f.head[0] === 0xff || f.head.subarray(0, 3).toString() === 'ID3', 'an MP3 stream');
    await waitFor('Cast loaded the Opus file', () => cast.fetches.at(-1)?.url.endsWith('.opus'), 20_000);
    assert.equal(cast.fetches.at(-1)!.contentType, 'audio/ogg; codecs=opus');
    await waitFor('Sonos playing', () => sonos.playhead.state === 'playing', 20_000);
  });

  it('a speaker that vanishes mid-track is marked unavailable; the rest of the group plays on', async () => {
    const since = mark();
    await command('play', { groupId, entryId: entries.get('a.flac') });
    const g = await started(since);
    await waitFor('Sonos playing', () => sonos.playhead.state === 'playing', 20_000);
    const vanishedAt = monotonicMs();
    sonos.vanish();
    const after = await stateAfter(since, 'Sonos marked unavailable', (st) => st.members.some((m) => m.kind === 'sonos' && !m.online), 30_000);
    process.stderr.write(`Sonos marked unavailable ${(monotonicMs() - vanishedAt).toFixed(0)} ms after it vanished\n`);
    assert.equal(after.playback.state, 'playing');
    assert.equal(after.playback.session, g.playback.session, 'the session goes on');
    const castStarts = cast.playhead.starts.length;
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(cast.playhead.state, 'playing');
    assert.equal(cast.playhead.starts.length, castStarts, 'the Cast was not restarted');
    for (const n of nodes) {
      const frames = framesOf(await readMeasure(n.measure), g.playback.session!, g.playback.entryId!);
      const late = [...frames.values()].filter((t) => t > vanishedAt + 1000).length;
      assert.ok(late > 5, `${n.name} kept playing after the Sonos vanished (${late} marks)`);
    }
  });

  it('a Cast that drops its connection is unavailable, and rejoins in step when it is back', async () => {
    const port = cast.port;
    cast.vanish();
    await stateAfter(mark() - 20, 'Cast marked unavailable', (st) => st.members.some((m) => m.kind === 'cast' && !m.online), 30_000);
    const castBefore = cast.playhead.starts.length;
    await cast.start(port);
    const back = await stateAfter(mark(), 'Cast online again', (st) => st.members.some((m) => m.kind === 'cast' && m.online), 30_000);
    const c = await compensated('Cast after reconnecting', cast.playhead.starts, castBefore, back, 30_000);
    process.stderr.write(`Cast rejoined mid-track, off by ${c.offsetMs.toFixed(1)} ms after ${c.startsNeeded} start(s)\n`);
  });

  it('a Cast whose stream breaks mid-track (IDLE, reason ERROR) loads it again and rejoins in step', async () => {
    const g = state();
    assert.equal(g.playback.state, 'playing');
    const castBefore = cast.playhead.starts.length;
    const loads = cast.count('LOAD');
    cast.failPlayback();
    const c = await compensated('Cast after its stream broke', cast.playhead.starts, castBefore, g, 30_000);
    assert.ok(cast.count('LOAD') > loads, 'loaded again');
    assert.equal(state().playback.session, g.playback.session, 'the group session went on');
    process.stderr.write(`Cast recovered from a broken stream, off by ${c.offsetMs.toFixed(1)} ms\n`);
  });

  it('remembers the speakers across a hub restart: the Cast comes back with its node id, its group and its learnt delay', async () => {
    await hub.proc.stop();
    const restartedAt = Date.now();
    hub = await startControlHub(broker, { dataDir: hub.dataDir, library, extraArgs: ['--device-advertise-host', '127.0.0.1'] });
    const list = await observer.waitFor<NodeList>('the Cast online again after the restart', observer.topics.nodes, (l) => l.at >= restartedAt && l.nodes.some((n) => n.kind === 'cast' && n.online), 30_000);
    assert.equal(list.nodes.find((n) => n.kind === 'cast')!.nodeId, ids.cast);
    assert.ok(list.nodes.some((n) => n.kind === 'sonos' && n.nodeId === ids.sonos && !n.online), 'the vanished Sonos is remembered, offline');
    const g = await observer.waitFor<GroupState>('group state after the restart', observer.topics.groupState(groupId), (st) => st.at >= restartedAt && st.members.some((m) => m.kind === 'cast'), 20_000);
    const castMember = g.members.find((m) => m.kind === 'cast')!;
    assert.ok(Math.abs(castMember.startDelayMs! - CAST_DELAY_MS) <= BOUND_MS, `remembered Cast delay ${castMember.startDelayMs}`);
  });
});
