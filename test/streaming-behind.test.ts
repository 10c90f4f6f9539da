/**
 * Falling behind in a streaming start (issue 5, item 5): a group starts a track none of
 * its members holds; one member's stream stalls (its link stops for seconds, simulated
 * with --sim-stream-stall on that node only) so its audio runs out. That member — not
 * the group — drops out: it goes silent and says so, the others play on untouched, and
 * once it has a safe margin again it rejoins at exactly the group's position.
 *
 * A real hub with its upload capped, three real nodes with --prefetch none and the
 * measurement output, their clocks offset and skewed; true time is the machine's
 * monotonic clock, which every process shares.
 */
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { monotonicMs } from '../src/clock/local-clock.js';
import type { GroupState } from '../src/protocol/schemas.js';
import { makeTrack } from './helpers/audio.js';
import { ctl, embeddedBroker, Observer, startControlHub, startControlNode, type BrokerAccess, type HubProcess } from './helpers/control-plane.js';
import { agreement, framesOf, readMeasure, scheduleError } from './helpers/measure.js';
import { cleanup, ctlLibrary, tempDir, waitFor, type FireflyProcess } from './helpers/processes.js';

const RATE = 48000;
const TRACK_SECONDS = 30;
/** As playback.test.ts: loose on purpose for a loaded CI machine. */
const BOUND_MS = 2;
const MARK_EVERY = RATE / 10;
/** The stalled node's stream stops this long just past the beginning it started on (about 9 s of audio here), so it runs dry. */
const STALL_MS = 14_000;

const NODES = [
  { name: 'kitchen', offsetSeconds: 3.5, skewPpm: 100, rateErrorPpm: 50, stall: 0 },
  { name: 'lounge', offsetSeconds: -7.25, skewPpm: -100, rateErrorPpm: -50, stall: 0 },
  { name: 'study', offsetSeconds: 1000, skewPpm: 40, rateErrorPpm: 20, stall: STALL_MS },
];

/** Runs of missing marks (two or more in a row: audio that did not play) between the first and last mark. */
function gaps(frames: Map<number, number>): { from: number; to: number }[] {
  const marks = [...frames.keys()].filter((f) => f % MARK_EVERY === 0).sort((x, y) => x - y);
  const out: { from: number; to: number }[] = [];
  for (let i = 1; i < marks.length; i++) if (marks[i] - marks[i - 1] > 2 * MARK_EVERY) out.push({ from: marks[i - 1], to: marks[i] });
  return out;
}

describe('streaming start: a member whose stream stalls drops out and rejoins in sync; the group plays on', () => {
  let broker: BrokerAccess;
  let hub: HubProcess;
  let observer: Observer;
  let groupId: number;
  let entryId: number;
  const nodes: { name: string; proc?: FireflyProcess; measure: string }[] = [];

  before(async () => {
    broker = await embeddedBroker();
    const library = await tempDir('firefly-music-');
    await makeTrack(join(library, 'long.flac'), { format: 'flac', seconds: TRACK_SECONDS, seed: 21, title: 'Long', sampleRate: RATE });
    hub = await startControlHub(broker, { library, extraArgs: ['--upload-limit', '8M'] });
    await hub.proc.waitForLog('library indexed', 60_000);
    const entries = await ctlLibrary(hub.grpc);
    entryId = entries[0].id;
    observer = await new Observer(broker).connect();
    await observer.subscribe(`${broker.prefix}/group/+/state`, `${broker.prefix}/node/+/heartbeat`);
    for (const n of NODES) {
      const measure = join(await tempDir('firefly-measure-'), 'frames.jsonl');
      const args = [
        '--serve-host', '127.0.0.1', '--serve-port', '0', '--advertise-host', '127.0.0.1', '--prefetch', 'none',
        '--output', 'measure', '--measure-file', measure, `--sim-clock-offset=${n.offsetSeconds}`, `--sim-clock-skew=${n.skewPpm}`,
        `--sim-output-rate-error=${n.rateErrorPpm}`, '--output-buffer', '200', '--log-level', process.env.FIREFLY_TEST_LOG_LEVEL ?? 'info',
        ...(n.stall ? ['--sim-stream-stall', String(n.stall)] : []),
      ];
      nodes.push({ name: n.name, measure, proc: (await startControlNode(broker, hub, { name: n.name, extraArgs: args })).proc });
    }
    for (const n of nodes) await n.proc!.waitForLog('sync complete', 60_000);
    await waitFor('nodes known to the hub', async () => (await ctl(broker, ['nodes', '--json'])).trim().split('\n').length >= nodes.length);
    groupId = (JSON.parse(await ctl(broker, ['group', 'create', 'House', ...nodes.map((n) => n.name), '--json'])) as GroupState).groupId;
    await observer.clocksSynced({ window: 9, least: 6 });
  });

  after(async () => {
    await observer?.close();
    await cleanup();
  });

  it('the stalled member goes silent, reports it, and comes back on the group position; the others never stop', async () => {
    const topic = observer.topics.groupState(groupId);
    const since = observer.messages.length;
    await ctl(broker, ['play', 'House', String(entryId)]);
    const g = await waitFor(
      'a started session',
      () => {
        for (const m of observer.messages.slice(since)) {
          if (m.topic !== topic || m.payload.length === 0) continue;
          const s = JSON.parse(m.payload.toString()) as GroupState;
          if (s.playback.anchor !== null && s.playback.state === 'playing') return s;
        }
        return undefined;
      },
      20_000,
      20,
    );
    const anchor = g.playback.anchor!;
    const session = g.playback.session!;
    const study = nodes[2];
    await study.proc!.waitForLog('simulated stall of the stream (sim.streamStallMs; tests only)', 20_000);
    await study.proc!.waitForLog((l) => l.msg.startsWith('fell behind the play position'), 20_000);
    const rejoined = await study.proc!.waitForLog('rejoined the group in sync', 30_000);
    const endAt = anchor.hubMs - anchor.positionMs + TRACK_SECONDS * 1000;
    await waitFor('the track to play out', () => monotonicMs() > endAt + 1500, (TRACK_SECONDS + 30) * 1000, 100);

    // The group never stopped: every state published during the track is the same session, playing.
    const states = observer.messages.slice(since).filter((m) => m.topic === topic && m.payload.length > 0).map((m) => JSON.parse(m.payload.toString()) as GroupState);
    const during = states.filter((s) => s.playback.session === session);
    assert.ok(during.length > 0);
    assert.ok(!states.some((s) => s.playback.session !== session && s.playback.state === 'playing'), 'the group restarted its session');
    // The hub heard it: the group's errors name the stalled node.
    const studyId = (JSON.parse((await ctl(broker, ['nodes', '--json'])).trim().split('\n').find((l) => l.includes('"study"'))!) as { nodeId: number }).nodeId;
    const reported = during.flatMap((s) => s.errors ?? []).find((e) => e.nodeId === studyId && /fell behind/.test(e.message));
    assert.ok(reported, `no 'fell behind' error for the study node in the group state: ${JSON.stringify(during.at(-1)?.errors)}`);
    for (const n of nodes.slice(0, 2)) assert.ok(!n.proc!.logs.some((l) => l.msg.startsWith('fell behind')), `${n.name} dropped out too`);
    // ...and once the member rejoined, the entry is resolved: the last state of the session no longer lists it.
    const last = during.at(-1)!;
    assert.ok(!(last.errors ?? []).some((e) => e.nodeId === studyId && /fell behind/.test(e.message)), `the 'fell behind' error stayed after the rejoin: ${JSON.stringify(last.errors)}`);

    const perNode = await Promise.all(nodes.map(async (n) => framesOf(await readMeasure(n.measure), session, entryId)));
    // The others: no audio missing. The stalled one: one silent stretch, then the rest of the track.
    for (const [i, frames] of perNode.slice(0, 2).entries()) assert.deepEqual(gaps(frames), [], `${nodes[i].name} has a gap`);
    const studyGaps = gaps(perNode[2]);
    assert.equal(studyGaps.length, 1, `study: silent stretches ${JSON.stringify(studyGaps)}`);
    const gap = studyGaps[0];
    const silentSeconds = (gap.to - gap.from) / RATE;
    process.stderr.write(`falling behind: study silent from ${(gap.from / RATE).toFixed(1)} s to ${(gap.to / RATE).toFixed(1)} s of the track (${silentSeconds.toFixed(1)} s of audio skipped; it reported ${String(rejoined.silentMs)} ms out)\n`);
    assert.ok(silentSeconds > 1, `study skipped only ${silentSeconds.toFixed(2)} s`);
    const lastPlayed = perNode.map((f) => Math.max(...[...f.keys()].filter((k) => k % MARK_EVERY === 0)));
    assert.ok(lastPlayed[2] >= Math.max(lastPlayed[0], lastPlayed[1]) && lastPlayed[2] > (TRACK_SECONDS - 1) * RATE, `study did not play on to the end after rejoining: last marks per node ${lastPlayed.join(', ')}`);

    // After rejoining: on the group's schedule, in step with the others.
    const backAt = perNode[2].get(gap.to)! + 500;
    const a = agreement(perNode, backAt);
    assert.ok(a.compared > 50, `only ${a.compared} frames after the rejoin to compare`);
    assert.ok(a.maxSpreadMs <= BOUND_MS, `after the rejoin the nodes disagree by up to ${a.maxSpreadMs.toFixed(3)} ms`);
    const worst = scheduleError(perNode[2], anchor, RATE, backAt);
    assert.ok(worst <= BOUND_MS, `study plays up to ${worst.toFixed(3)} ms off the schedule after rejoining`);
    process.stderr.write(`falling behind: after the rejoin ${a.compared} frames compared, spread max ${a.maxSpreadMs.toFixed(3)} ms; study off schedule by at most ${worst.toFixed(3)} ms\n`);
  });
});
