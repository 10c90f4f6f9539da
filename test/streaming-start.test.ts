/**
 * Streaming start end to end (issue 5, item 5): a track that no member of the group
 * holds starts playing before its download finishes, and plays in sync to the end.
 *
 * A real hub whose chunk upload is capped (1 MB/s) and three real nodes that keep
 * nothing ahead (--prefetch none) and play into the measurement output, their clocks
 * offset and skewed. Every chunk of the track has to leave the hub at least once, so no
 * node can hold the whole track sooner than size / cap after the play command; the
 * measurement files say in true time (the machine's monotonic clock, which the test
 * shares) when each frame played on each node.
 */
import { strict as assert } from 'node:assert';
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { monotonicMs } from '../src/clock/local-clock.js';
import type { GroupState } from '../src/protocol/schemas.js';
import { makeTrack } from './helpers/audio.js';
import { ctl, embeddedBroker, Observer, startControlHub, startControlNode, type BrokerAccess, type HubProcess } from './helpers/control-plane.js';
import { agreement, framesOf, readMeasure, scheduleError } from './helpers/measure.js';
import { cleanup, ctlLibrary, tempDir, waitFor, type FireflyProcess, type LogLine } from './helpers/processes.js';

const RATE = 48000;
const TRACK_SECONDS = 25;
/** 8 Mbit/s: the hub uploads 1 MB a second, so the whole track takes seconds to leave it. */
const UPLOAD_LIMIT = '8M';
const UPLOAD_BYTES_PER_SECOND = 1_000_000;
/** As playback.test.ts: loose on purpose for a loaded CI machine. */
const BOUND_MS = 2;
/** Frames are compared once the clocks and the drift correction had this long (ms). */
const SETTLE_MS = 1500;
/** The measurement output marks every tenth of a second of track position. */
const MARK_EVERY = RATE / 10;

const NODES = [
  { name: 'kitchen', offsetSeconds: 3.5, skewPpm: 100, rateErrorPpm: 50 },
  { name: 'lounge', offsetSeconds: -7.25, skewPpm: -100, rateErrorPpm: -50 },
  { name: 'study', offsetSeconds: 1000, skewPpm: 40, rateErrorPpm: 20 },
];

describe('streaming start: a track no member holds (hub upload capped, nodes with --prefetch none)', () => {
  let broker: BrokerAccess;
  let hub: HubProcess;
  let observer: Observer;
  let groupId: number;
  let entryId: number;
  let trackBytes: number;
  const nodes: { name: string; proc?: FireflyProcess; measure: string; args: string[] }[] = [];

  /** Node ids (as the hub knows them) to node names. */
  async function lateNames(ids: Set<number>): Promise<string[]> {
    if (ids.size === 0) return [];
    const known = (await ctl(broker, ['nodes', '--json'])).trim().split('\n').map((l) => JSON.parse(l) as { nodeId: number; name: string });
    return known.filter((k) => ids.has(k.nodeId)).map((k) => k.name);
  }

  before(async () => {
    broker = await embeddedBroker();
    const library = await tempDir('firefly-music-');
    await makeTrack(join(library, 'long.flac'), { format: 'flac', seconds: TRACK_SECONDS, seed: 7, title: 'Long', sampleRate: RATE });
    trackBytes = (await stat(join(library, 'long.flac'))).size;
    hub = await startControlHub(broker, { library, extraArgs: ['--upload-limit', UPLOAD_LIMIT] });
    await hub.proc.waitForLog('library indexed', 60_000);
    const entries = await ctlLibrary(hub.grpc);
    assert.equal(entries.length, 1);
    entryId = entries[0].id;

    observer = await new Observer(broker).connect();
    await observer.subscribe(`${broker.prefix}/group/+/state`, `${broker.prefix}/node/+/heartbeat`);
    for (const n of NODES) {
      const measure = join(await tempDir('firefly-measure-'), 'frames.jsonl');
      const args = [
        '--serve-host', '127.0.0.1', '--serve-port', '0', '--advertise-host', '127.0.0.1', '--prefetch', 'none',
        '--output', 'measure', '--measure-file', measure, `--sim-clock-offset=${n.offsetSeconds}`, `--sim-clock-skew=${n.skewPpm}`,
        `--sim-output-rate-error=${n.rateErrorPpm}`, '--output-buffer', '50', '--log-level', process.env.FIREFLY_TEST_LOG_LEVEL ?? 'info',
      ];
      nodes.push({ name: n.name, measure, args });
    }
    for (const n of nodes) n.proc = (await startControlNode(broker, hub, { name: n.name, extraArgs: n.args })).proc;
    // With --prefetch none the first sync mirrors the library and fetches nothing.
    for (const n of nodes) {
      const report = await n.proc!.waitForLog('sync complete', 60_000);
      assert.equal(Number(report.chunksWanted ?? 0), 0, `${n.name} fetched chunks before playing: ${JSON.stringify(report)}`);
    }
    await waitFor('nodes known to the hub', async () => (await ctl(broker, ['nodes', '--json'])).trim().split('\n').length >= nodes.length);
    const created = JSON.parse(await ctl(broker, ['group', 'create', 'House', ...nodes.map((n) => n.name), '--json'])) as GroupState;
    groupId = created.groupId;
    await observer.clocksSynced({ window: 9, least: 6 });
  });

  after(async () => {
    if (process.env.FIREFLY_TEST_KEEP) {
      for (const n of nodes) if (n.proc) await writeFile(`${n.measure}.log`, n.proc.logs.map((l) => JSON.stringify(l)).join('\n'));
      await writeFile(join(hub.dataDir, 'hub.log'), hub.proc.logs.map((l) => JSON.stringify(l)).join('\n'));
    }
    await observer?.close();
    await cleanup();
  });

  it('starts before the download finishes, plays in sync to the end, and plays the whole track', async () => {
    const topic = observer.topics.groupState(groupId);
    const since = observer.messages.length;
    const t0 = monotonicMs();
    await ctl(broker, ['play', 'House', String(entryId)]);
    const g = await waitFor(
      'a started session',
      () => {
        for (const m of observer.messages.slice(since)) {
          if (m.topic !== topic || m.payload.length === 0) continue;
          const s = JSON.parse(m.payload.toString()) as GroupState;
          if (s.playback.anchor !== null && s.playback.state === 'playing' && s.playback.entryId === entryId) return s;
        }
        return undefined;
      },
      20_000,
      20,
    );
    const anchor = g.playback.anchor!;
    const session = g.playback.session!;
    const startedAt = monotonicMs();

    // The download, per node: the streaming start, then the end of the fetch.
    const streamed: LogLine[] = [];
    const fetched: LogLine[] = [];
    for (const n of nodes) {
      streamed.push(await n.proc!.waitForLog((l) => l.msg === 'streaming start: the beginning is here, the rest follows' && l.entryId === entryId, 20_000));
      fetched.push(await n.proc!.waitForLog((l) => l.msg === 'fetched the missing chunks of a track' && l.entryId === entryId, 60_000));
    }
    const fetchedSeenAt = monotonicMs();

    // Let the track play out (plus the output buffer and the file flush).
    const endAt = anchor.hubMs - anchor.positionMs + TRACK_SECONDS * 1000;
    await waitFor('the track to play out', () => monotonicMs() > endAt + 1500, (TRACK_SECONDS + 30) * 1000, 100);

    const perNode = await Promise.all(nodes.map(async (n) => framesOf(await readMeasure(n.measure), session, entryId)));
    const firsts = perNode.map((frames) => Math.min(...frames.values()));
    const summary = {
      trackBytes,
      minWholeTransferMs: Math.round((trackBytes / UPLOAD_BYTES_PER_SECOND) * 1000),
      commandToAnchorMs: Math.round(anchor.hubMs - t0),
      commandToStartedStateMs: Math.round(startedAt - t0),
      firstFrameAfterCommandMs: firsts.map((f) => Math.round(f - t0)),
      headBytes: streamed.map((l) => l.headBytes),
      streamStartMs: streamed.map((l) => l.ms),
      fetchChunks: fetched.map((l) => l.chunks),
      fetchMs: fetched.map((l) => l.ms),
      fetchFailed: fetched.map((l) => l.failed),
      allFetchedSeenAfterCommandMs: Math.round(fetchedSeenAt - t0),
      hubUploads: hub.proc.logs.filter((l) => l.msg === 'chunks uploaded').map((l) => l.bytesSent),
    };
    process.stderr.write(`streaming start: ${JSON.stringify(summary)}\n`);

    // (a) Playing began before any node held the whole track. Each node's fetch began no
    // earlier than the play command (t0) and lasted `ms`, so it ended no earlier than
    // t0 + ms; every node's first frame played well before that.
    for (const [i, n] of nodes.entries()) {
      assert.equal(fetched[i].failed, 0, `${n.name}: chunks could not be fetched: ${JSON.stringify(summary)}`);
      assert.ok((fetched[i].chunks as number) > 1, `${n.name}: the track was not missing: ${JSON.stringify(summary)}`);
      assert.ok((streamed[i].headBytes as number) < trackBytes, `${n.name}: the track opened only once whole: ${JSON.stringify(summary)}`);
      // A clear margin (1 s), not a race.
      assert.ok(firsts[i] < t0 + (fetched[i].ms as number) - 1000, `${n.name}: first frame played after (or just before) its download finished: ${JSON.stringify(summary)}`);
    }
    // How the barrier fell: members whose beginning was not stored within the barrier
    // timeout join the running session in progress (the hub's 'session started' log).
    const startLog = hub.proc.logs.find((l) => l.msg === 'session started' && l.session === session);
    const lateIds = new Set(((startLog?.late as number[] | undefined) ?? []).map(Number));
    const late = await lateNames(lateIds);
    process.stderr.write(`streaming start: barrier ${JSON.stringify({ why: startLog?.why, barrierMs: startLog?.barrierMs, late })}\n`);

    // (b) In sync to the end: every node's frames agree, and play when the anchor says.
    for (const [i, frames] of perNode.entries()) assert.ok(frames.size > TRACK_SECONDS * 5, `${nodes[i].name} recorded only ${frames.size} frames`);
    // Compared once the last member to join (a late one) had its settle time too.
    const settledAt = Math.max(anchor.hubMs, ...firsts) + SETTLE_MS;
    const a = agreement(perNode, settledAt);
    const expected = Math.floor(((endAt - settledAt) / 1000) * 10);
    assert.ok(a.compared >= expected - 10, `only ${a.compared} frames present on every node to compare (about ${expected} expected)`);
    assert.ok(a.maxSpreadMs <= BOUND_MS, `nodes disagree by up to ${a.maxSpreadMs.toFixed(3)} ms (bound ${BOUND_MS}): ${JSON.stringify(summary)}`);
    for (const [i, frames] of perNode.entries()) {
      const worst = scheduleError(frames, anchor, RATE, settledAt);
      assert.ok(worst <= BOUND_MS, `${nodes[i].name} plays up to ${worst.toFixed(3)} ms off the schedule`);
    }
    process.stderr.write(`streaming start: ${a.compared} frames compared, spread p50 ${a.spreads[a.spreads.length >> 1].toFixed(3)} ms, max ${a.maxSpreadMs.toFixed(3)} ms\n`);

    // (c) The whole track played on every node: the marks run without a gap from where
    // the node began to the last tenth of a second of the track…
    const lastMark = Math.floor((TRACK_SECONDS * RATE - 1) / MARK_EVERY) * MARK_EVERY;
    const began: number[] = [];
    for (const [i, frames] of perNode.entries()) {
      const marks = [...frames.keys()].filter((f) => f % MARK_EVERY === 0).sort((x, y) => x - y);
      began.push(Math.min(...frames.keys()));
      assert.equal(marks.at(-1), lastMark, `${nodes[i].name}: the last frame recorded is ${marks.at(-1)}, the track ends after ${lastMark}`);
      const have = new Set(marks);
      const missing: number[] = [];
      for (let f = marks[0]; f <= lastMark; f += MARK_EVERY) if (!have.has(f)) missing.push(f);
      // A drift correction drops single frames; one that drops a mark's own frame leaves
      // that one mark unrecorded. So a missing mark must stand alone (its neighbours
      // played) and be rare; a gap of two or more marks is audio that did not play.
      const lone = missing.filter((f) => have.has(f - MARK_EVERY) && have.has(f + MARK_EVERY));
      assert.ok(lone.length === missing.length && missing.length <= 3, `${nodes[i].name}: marks missing between ${marks[0]} and ${lastMark}: frames ${missing.join(', ')}`);
    }
    const beginnings = nodes.map((n, i) => `${n.name} ${(began[i] / RATE).toFixed(2)} s${late.includes(n.name) ? ' (late)' : ''}`).join(', ');
    process.stderr.write(`streaming start: first frame played per node: ${beginnings}\n`);
    // …and from its beginning: members ready when the barrier fell start at frame 0 (a
    // late one joins where the group is), and the group did not skip the start.
    for (const [i, n] of nodes.entries()) if (!late.includes(n.name)) assert.ok(began[i] <= MARK_EVERY, `${n.name} was ready at the start yet began at ${(began[i] / RATE).toFixed(2)} s`);
    assert.ok(
      began.some((b) => b <= MARK_EVERY),
      `no member played the beginning of the track: the session started (${String(startLog?.why)}, after ${String(startLog?.barrierMs)} ms) with ${late.length} of ${nodes.length} members late; first frames at ${beginnings}`,
    );
  });
});
