/**
 * The hub crashes during playback (kill -9, its embedded broker with it) and comes back
 * a minute later on the same data folder. Three real node processes with measurement
 * outputs and simulated clocks that disagree (offsets of seconds, skews of ±100 ppm)
 * must play on in sync through the queue they were told, and the restarted hub must
 * find everything as it was and adopt the playback under way: same session, same
 * timeline, the track the nodes have got to, nodes online again.
 *
 * Every process reads the same machine clock, so the measurement files say in true time
 * when each frame played on each node.
 */
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { monotonicMs } from '../src/clock/local-clock.js';
import type { GroupState } from '../src/protocol/schemas.js';
import { makeTrack } from './helpers/audio.js';
import { ctl, embeddedBroker, Observer, startControlHub, startControlNode, type BrokerAccess, type HubProcess } from './helpers/control-plane.js';
import { agreement, frameZeroMs, framesOf, percentile, readMeasure, type MeasureRecord } from './helpers/measure.js';
import { cleanup, ctlLibrary, freePort, tempDir, waitFor, type FireflyProcess } from './helpers/processes.js';

const RATE = 48000;
/** What issue 10 asks: the nodes agree within 1 ms while the hub is away. */
const BOUND_MS = 1;
/** How long the hub stays dead. */
const AWAY_MS = 60_000;

const NODES = [
  { name: 'kitchen', offsetSeconds: 3.5, skewPpm: 100, rateErrorPpm: 50 },
  { name: 'lounge', offsetSeconds: -7.25, skewPpm: -100, rateErrorPpm: -50 },
  { name: 'study', offsetSeconds: 1000, skewPpm: 40, rateErrorPpm: 20 },
];

/** Group state with what legitimately moves (time-derived position, online flags, heartbeat-fed fields) left out. */
function persistent(g: GroupState): unknown {
  return {
    groupId: g.groupId,
    name: g.name,
    volume: g.volume,
    members: g.members.map((m) => ({ nodeId: m.nodeId, name: m.name, volume: m.volume, muted: m.muted, latencyMs: m.latencyMs })),
    queue: g.queue,
    playback: { state: g.playback.state, session: g.playback.session, shuffle: g.playback.shuffle, repeat: g.playback.repeat, muted: g.playback.muted },
  };
}

describe('hub crash during playback (kill -9, 60 s away, restart on the same data folder)', () => {
  let broker: BrokerAccess;
  let hub: HubProcess;
  let observer: Observer;
  let groupId: number;
  const entries = new Map<string, number>();
  const nodes: { name: string; proc?: FireflyProcess; measure: string }[] = [];
  let playing: GroupState;
  let beforeCrash: GroupState;
  let killedAt = 0;
  let killedWall = 0;
  let restartedAt = 0;

  const topic = () => observer.topics.groupState(groupId);
  const records = (): Promise<MeasureRecord[][]> => Promise.all(nodes.map((n) => readMeasure(n.measure)));

  before(async () => {
    broker = await embeddedBroker();
    const library = await tempDir('firefly-music-');
    // 25 + 25 + 40 s: the hub dies in A; while it is away the nodes play on through B into C.
    await makeTrack(join(library, 'a.flac'), { format: 'flac', seconds: 25, seed: 11, title: 'A' });
    await makeTrack(join(library, 'b.flac'), { format: 'flac', seconds: 25, seed: 12, title: 'B' });
    await makeTrack(join(library, 'c.flac'), { format: 'flac', seconds: 40, seed: 13, title: 'C' });
    // Fixed ports: a restarted hub listens where the nodes look for it.
    hub = await startControlHub(broker, { library, httpPort: await freePort() });
    await hub.proc.waitForLog('library indexed', 60_000);
    for (const e of await ctlLibrary(hub.grpc)) entries.set(e.path, e.id);
    assert.equal(entries.size, 3);

    observer = await new Observer(broker).connect();
    await observer.subscribe(`${broker.prefix}/group/+/state`, `${broker.prefix}/node/+/heartbeat`);
    for (const n of NODES) {
      const measure = join(await tempDir('firefly-measure-'), 'frames.jsonl');
      const args = ['--serve-host', '127.0.0.1', '--serve-port', '0', '--output', 'measure', '--measure-file', measure, `--sim-clock-offset=${n.offsetSeconds}`, `--sim-clock-skew=${n.skewPpm}`, `--sim-output-rate-error=${n.rateErrorPpm}`, '--output-buffer', '400', '--log-level', process.env.FIREFLY_TEST_LOG_LEVEL ?? 'info'];
      const { proc } = await startControlNode(broker, hub, { name: n.name, extraArgs: args });
      nodes.push({ name: n.name, proc, measure });
    }
    for (const n of nodes) await n.proc!.waitForLog((l) => l.msg === 'sync complete' && (l.chunksWanted as number) > 0, 60_000);
    await waitFor('nodes known to the hub', async () => (await ctl(broker, ['nodes', '--json'])).trim().split('\n').length >= 3);
    const created = JSON.parse(await ctl(broker, ['group', 'create', 'House', ...nodes.map((n) => n.name), '--json'])) as GroupState;
    groupId = created.groupId;
    await ctl(broker, ['group', 'volume', 'House', '70']);
    await observer.clocksSynced({ least: 6 });
    // Drift needs a longer look than sync does: the nodes will extrapolate it for a minute.
    await new Promise((r) => setTimeout(r, 15_000));
  });

  after(async () => {
    await observer?.close();
    await cleanup();
  });

  it('plays on every node, in sync, while the hub is dead for 60 s', async () => {
    const since = observer.messages.length;
    await ctl(broker, ['play', 'House', String(entries.get('a.flac')), String(entries.get('b.flac')), String(entries.get('c.flac'))]);
    playing = await waitFor('a started session', () => {
      for (const m of observer.messages.slice(since)) {
        if (m.topic !== topic() || m.payload.length === 0) continue;
        const g = JSON.parse(m.payload.toString()) as GroupState;
        if (g.playback.state === 'playing' && g.playback.anchor) return g;
      }
      return undefined;
    });
    await waitFor('4 s of playback', () => monotonicMs() > playing.playback.anchor!.hubMs + 4000, 15_000);
    beforeCrash = observer.last<GroupState>(topic())!;

    killedAt = monotonicMs();
    killedWall = Date.now();
    hub.proc.child.kill('SIGKILL');
    await hub.proc.exited;
    await waitFor('the hub to be gone for 60 s', () => monotonicMs() > killedAt + AWAY_MS, AWAY_MS + 10_000, 500);

    // Every frame the nodes played while the hub was away, per track: together within 1 ms.
    const all = await records();
    const session = playing.playback.session!;
    for (const name of ['a.flac', 'b.flac', 'c.flac']) {
      const perNode = all.map((r) => new Map([...framesOf(r, session, entries.get(name))].filter(([, t]) => t > killedAt && t < killedAt + AWAY_MS)));
      for (const [i, frames] of perNode.entries()) assert.ok(frames.size > 20, `${name}: ${nodes[i].name} played only ${frames.size} marked frames while the hub was away`);
      const a = agreement(perNode);
      assert.ok(a.compared > 20, `${name}: only ${a.compared} frames to compare`);
      process.stderr.write(`hub away, ${name}: ${a.compared} frames, spread p50 ${percentile(a.spreads, 50).toFixed(3)} ms, p99 ${percentile(a.spreads, 99).toFixed(3)} ms, max ${a.maxSpreadMs.toFixed(3)} ms\n`);
      assert.ok(a.maxSpreadMs <= BOUND_MS, `${name}: nodes disagree by up to ${a.maxSpreadMs.toFixed(3)} ms while the hub is away (bound ${BOUND_MS})`);
    }
    // Gapless through the queue they were told: B's frame 0 follows A's last frame on time.
    for (const [i, r] of all.entries()) {
      const b0 = frameZeroMs(r, session, entries.get('b.flac')!, RATE);
      const c0 = frameZeroMs(r, session, entries.get('c.flac')!, RATE);
      assert.ok(b0 !== undefined && c0 !== undefined, `${nodes[i].name} did not go on into B and C without the hub`);
      assert.ok(Math.abs(c0 - b0 - 25_000) < 0.5, `${nodes[i].name}: C starts ${(c0 - b0).toFixed(3)} ms after B, which lasts 25 s`);
    }
  });

  it('comes back with the same state, adopts the playback under way, and the nodes rejoin', async () => {
    const since = observer.messages.length;
    restartedAt = monotonicMs();
    hub = await startControlHub(broker, { dataDir: hub.dataDir, library: hub.library, grpcPort: Number(hub.grpc.split(':')[1]), clockPort: hub.clockPort, httpPort: await freePort() });
    const adopted = await hub.proc.waitForLog('adopted the session under way before the restart', 20_000);
    assert.equal(adopted.session, playing.playback.session);

    // The nodes report C, where they are: the hub follows them, same session, same timeline.
    const session = playing.playback.session!;
    const c0 = (await records()).map((r) => frameZeroMs(r, session, entries.get('c.flac')!, RATE)!);
    const rejoined = await waitFor(
      'the group state after the nodes rejoined',
      () => {
        for (const m of observer.messages.slice(since)) {
          if (m.topic !== topic() || m.payload.length === 0) continue;
          const g = JSON.parse(m.payload.toString()) as GroupState;
          if (g.playback.entryId === entries.get('c.flac') && g.members.every((x) => x.online)) return g;
        }
        return undefined;
      },
      30_000,
      50,
    );
    const rejoinMs = monotonicMs() - restartedAt;
    assert.equal(rejoined.playback.state, 'playing');
    assert.equal(rejoined.playback.session, session, 'the session under way was adopted, not restarted');
    // The hub's anchor for C is when the nodes really played its frame 0 (hub time = true time here).
    const anchorC0 = rejoined.playback.anchor!.hubMs - rejoined.playback.anchor!.positionMs;
    for (const [i, t] of c0.entries()) assert.ok(Math.abs(t - anchorC0) < 2, `${nodes[i].name} began C at ${t.toFixed(1)}, the hub's anchor says ${anchorC0.toFixed(1)}`);
    const expectedPosition = monotonicMs() - anchorC0;
    const state = observer.last<GroupState>(topic())!;
    assert.ok(Math.abs(state.playback.positionMs - expectedPosition) < 3000, `position ${state.playback.positionMs} ms, expected about ${expectedPosition.toFixed(0)}`);

    // Everything the hub knew is as it was (the current item moved on with the music).
    const want = persistent(beforeCrash) as { queue: GroupState['queue'] };
    const got = persistent(state) as { queue: GroupState['queue'] };
    assert.equal(got.queue.current, state.queue.items.find((i) => i.entryId === entries.get('c.flac'))!.itemId);
    assert.deepEqual({ ...got, queue: { ...got.queue, current: null } }, { ...want, queue: { ...want.queue, current: null } });
    assert.equal(state.volume, 70);
    // The library and the nodes the hub knew, from SQLite: the same entries, the same node ids.
    const library = await ctlLibrary(hub.grpc);
    assert.deepEqual(library.map((e) => [e.id, e.path]).sort(), [...entries].map(([path, id]) => [id, path]).sort());
    const known = (await ctl(broker, ['nodes', '--json'])).trim().split('\n').map((l) => JSON.parse(l) as { nodeId: number; name: string; online: boolean });
    assert.deepEqual(known.map((n) => [n.nodeId, n.name, n.online]).sort(), beforeCrash.members.map((m) => [m.nodeId, m.name, true]).sort());

    // No restart on any node: C's frames keep coming at the same timeline, through the restart.
    await new Promise((r) => setTimeout(r, 3000));
    const after = await records();
    for (const [i, r] of after.entries()) {
      const frames = [...framesOf(r, session, entries.get('c.flac'))].sort((x, y) => x[0] - y[0]);
      let worst = 0;
      let worstAt = 0;
      const series: string[] = [];
      for (const [frame, t] of frames) {
        const dev = t - (c0[i] + (frame * 1000) / RATE);
        if (frame % (RATE * 2) === 0) series.push(`${((t - restartedAt) / 1000).toFixed(1)}s:${dev.toFixed(2)}`);
        if (Math.abs(dev) > worst) [worst, worstAt] = [Math.abs(dev), t - restartedAt];
      }
      process.stderr.write(`${nodes[i].name}: C deviation from its start, worst ${worst.toFixed(3)} ms at ${worstAt.toFixed(0)} ms after the restart; ${series.join(' ')}\n`);
    }
    for (const [i, r] of after.entries()) {
      const frames = [...framesOf(r, session, entries.get('c.flac'))].sort((x, y) => x[0] - y[0]);
      let worst = 0;
      for (const [frame, t] of frames) worst = Math.max(worst, Math.abs(t - (c0[i] + (frame * 1000) / RATE)));
      assert.ok(worst < BOUND_MS, `${nodes[i].name}: C drifted ${worst.toFixed(3)} ms from its own start (a restart or a jump)`);
      assert.ok(frames.at(-1)![1] > monotonicMs() - 1000, `${nodes[i].name} stopped playing after the restart`);
      const other = r.filter((x) => x.session !== session && x.trueMs > restartedAt && x.trackFrame >= 0);
      assert.equal(other.length, 0, `${nodes[i].name} started another session after the restart`);
    }
    const perNode = after.map((r) => new Map([...framesOf(r, session, entries.get('c.flac'))].filter(([, t]) => t > restartedAt)));
    const a = agreement(perNode);
    assert.ok(a.compared > 20 && a.maxSpreadMs <= BOUND_MS, `after the restart: ${a.compared} frames, spread up to ${a.maxSpreadMs.toFixed(3)} ms`);
    // Figures for docs/reliability.md, from the nodes' own logs (wall-clock times).
    const restartWall = Math.round(Date.now() - (monotonicMs() - restartedAt));
    const detect = nodes.map((n) => (n.proc!.logs.find((l) => l.msg === 'control plane unreachable; retrying' && (l.time as number) >= killedWall)?.time as number) - killedWall);
    const reconnect = nodes.map((n) => (n.proc!.logs.find((l) => l.msg === 'connected to the control plane' && (l.time as number) >= restartWall)?.time as number) - restartWall);
    const reported = nodes.map((n) => (n.proc!.logs.find((l) => l.msg.startsWith('the hub asked again') && (l.time as number) >= restartWall)?.time as number) - restartWall);
    process.stderr.write(`hub crash figures: nodes noticed the loss after ${detect.join(', ')} ms; after the restart command they reconnected in ${reconnect.join(', ')} ms and were adopted (reported their track) in ${reported.join(', ')} ms; the group state showed all online on C ${rejoinMs.toFixed(0)} ms after\n`);
  });
});
