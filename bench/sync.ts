/**
 * Playback benchmarks with real hub and node processes and the measurement output:
 *
 * - benchSync: 4 nodes whose clocks are seconds apart and ±100 ppm skewed, whose virtual
 *   sound cards run ±50 ppm off, the clock exchange through a proxy adding 0–20 ms of
 *   random one-way delay; one track on repeat. Per minute: how far apart the nodes play
 *   the same frame (p50/p99/max), and the time until they converge.
 * - benchCommandToSound: 8 nodes holding the tracks, once each has decoded their starts
 *   while idle; from a play command (or a resume, a next, a seek) to the first frame at
 *   every output (p50/p95), split by how the hub started it (after the barrier, or at
 *   once). FIREFLY_BENCH_C2S_ROUNDS plays (13), FIREFLY_BENCH_C2S_RESUMES resumes (4),
 *   FIREFLY_BENCH_C2S_NEXTS nexts (4), FIREFLY_BENCH_C2S_SEEKS seeks (2).
 *
 * True time is the machine's monotonic clock, which every process reads underneath.
 */
import { randomBytes } from 'node:crypto';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { monotonicMs } from '../src/clock/local-clock.js';
import type { CommandReply, GroupState } from '../src/protocol/schemas.js';
import type { CommandName } from '../src/protocol/topics.js';
import { makeTrack } from '../test/helpers/audio.js';
import { ctl, embeddedBroker, Observer, startControlHub, startControlNode, type BrokerAccess, type HubProcess } from '../test/helpers/control-plane.js';
import { readMeasure, type MeasureRecord } from '../test/helpers/measure.js';
import { cleanup, ctlLibrary, tempDir, waitFor, type FireflyProcess } from '../test/helpers/processes.js';
import { UdpDelayProxy } from '../test/helpers/udp-delay-proxy.js';
import { keepLogs } from './swarm.js';
import { note, percentile, Table } from './util.js';

export interface SyncBenchOptions {
  /** Length of the run (default 2; the issue's figure is 10). */
  minutes?: number;
  nodes?: number;
}

export interface CommandToSoundOptions {
  nodes?: number;
  rounds?: number;
  /** Pause-and-resume rounds after the plays. */
  resumes?: number;
  /** Rounds of `next` to a track not played before, after the resumes. */
  nexts?: number;
  /** Seeks into the middle of a playing track (a barrier: nothing decoded there), last. */
  seeks?: number;
}

const SIM = [
  { offsetSeconds: 3.5, skewPpm: 100, rateErrorPpm: 50 },
  { offsetSeconds: -7.25, skewPpm: -100, rateErrorPpm: -50 },
  { offsetSeconds: 1000, skewPpm: 60, rateErrorPpm: 25 },
  { offsetSeconds: -42, skewPpm: -80, rateErrorPpm: -35 },
];

interface Rig {
  broker: BrokerAccess;
  hub: HubProcess;
  observer: Observer;
  proxy?: UdpDelayProxy;
  groupId: number;
  /** The first track's entry; entryIds: every track's, in library order. */
  entryId: number;
  entryIds: number[];
  nodes: { name: string; proc: FireflyProcess; measure: string }[];
  command(name: CommandName, body: Record<string, unknown>): Promise<unknown>;
}

async function rig(count: number, trackSeconds: number, simulate: boolean, tracks = 1): Promise<Rig> {
  const broker = await embeddedBroker();
  const library = await tempDir('firefly-bench-music-');
  for (let i = 0; i < tracks; i++) await makeTrack(join(library, `track${i}.flac`), { format: 'flac', seconds: trackSeconds, seed: 7 + i });
  const hub = await startControlHub(broker, { library });
  await hub.proc.waitForLog('library indexed', 120_000);
  await hub.proc.waitForLog('clock server listening (UDP)');
  const entryIds = (await ctlLibrary(hub.grpc)).map((e) => e.id);
  const entryId = entryIds[0];
  let proxy: UdpDelayProxy | undefined;
  if (simulate) {
    proxy = new UdpDelayProxy({ target: { host: '127.0.0.1', port: hub.clockPort }, maxDelayMs: 20, seed: 7 });
    await proxy.start();
  }
  const observer = await new Observer(broker).connect();
  await observer.subscribe(`${broker.prefix}/group/+/state`, `${broker.prefix}/node/+/heartbeat`);
  const nodes: Rig['nodes'] = [];
  for (let i = 0; i < count; i++) {
    const measure = join(await tempDir('firefly-bench-measure-'), 'frames.jsonl');
    const sim = simulate ? SIM[i % SIM.length] : undefined;
    const args = ['--serve-host', '127.0.0.1', '--serve-port', '0', '--output', 'measure', '--measure-file', measure, '--output-buffer', '50'];
    if (process.env.FIREFLY_BENCH_LOG_LEVEL) args.push('--log-level', process.env.FIREFLY_BENCH_LOG_LEVEL);
    if (sim) args.push('--clock-port', String(proxy!.port), `--sim-clock-offset=${sim.offsetSeconds}`, `--sim-clock-skew=${sim.skewPpm}`, `--sim-output-rate-error=${sim.rateErrorPpm}`);
    const { proc } = await startControlNode(broker, hub, { name: `bench${i}`, extraArgs: args });
    nodes.push({ name: `bench${i}`, proc, measure });
  }
  for (const n of nodes) await n.proc.waitForLog((l) => l.msg === 'sync complete' && (l.chunksWanted as number) > 0, 120_000);
  const created = JSON.parse(await ctl(broker, ['group', 'create', 'Bench', ...nodes.map((n) => n.name), '--json'])) as GroupState;
  await waitFor('clocks synced', () => {
    const beats = observer.messages.filter((m) => m.topic.endsWith('/heartbeat')).slice(-2 * count).map((m) => JSON.parse(m.payload.toString()) as { clock: { synced: boolean } });
    return beats.length >= count && beats.every((b) => b.clock.synced);
  }, 60_000);
  const command = async (name: CommandName, body: Record<string, unknown>) => {
    const id = randomBytes(4).toString('hex');
    const replyTo = observer.topics.reply(`bench-${id}`);
    await observer.subscribe(replyTo);
    await observer.publish(observer.topics.command(name), { ...body, id, replyTo });
    const reply = await observer.waitFor<CommandReply>(`reply to ${name}`, replyTo);
    if (!reply.ok) throw new Error(`${name} refused: ${reply.error?.message}`);
    return reply.result;
  };
  return { broker, hub, observer, proxy, groupId: created.groupId, entryId, entryIds, nodes, command };
}

async function teardown(r: Rig | undefined): Promise<void> {
  await r?.observer.close();
  await r?.proxy?.stop();
  await cleanup();
}

/**
 * Every recorded frame, keyed by session, by which gapless repeat of the track it is in
 * and by its track frame: "session:repeat:frame" → true time. Nodes are compared within
 * one session. (Keyed on the last mark seen before each repeat instead, a node whose
 * last mark of a repeat went unrecorded would be numbered 4800 frames short from then on:
 * 100 ms apart in the table without being so.)
 */
function timeline(records: readonly MeasureRecord[]): Map<string, number> {
  const out = new Map<string, number>();
  const state = new Map<string, { repeats: number; last: number }>();
  for (const r of records) {
    if (r.trackFrame < 0) continue;
    const b = state.get(r.session) ?? { repeats: 0, last: -1 };
    if (r.trackFrame < b.last) b.repeats++;
    b.last = r.trackFrame;
    state.set(r.session, b);
    out.set(`${r.session}:${b.repeats}:${r.trackFrame}`, r.trueMs);
  }
  return out;
}

const us = (ms: number) => `${(ms * 1000).toFixed(0)} µs`;

export async function benchSync(options: SyncBenchOptions = {}): Promise<string> {
  const minutes = options.minutes ?? 2;
  const count = options.nodes ?? 4;
  let r: Rig | undefined;
  try {
    note(`sync: starting a hub and ${count} nodes`);
    r = await rig(count, 60, true);
    await r.command('repeat', { groupId: r.groupId, mode: 'one' });
    await r.command('play', { groupId: r.groupId, entryId: r.entryId });
    const g = await waitFor('started', () => {
      const s = r!.observer.last<GroupState>(r!.observer.topics.groupState(r!.groupId));
      return s?.playback.anchor ? s : undefined;
    }, 20_000);
    const start = g.playback.anchor!.hubMs;
    note(`sync: playing for ${minutes} min`);
    await new Promise((res) => setTimeout(res, minutes * 60_000 + 2000));
    await keepLogs('sync', [{ name: 'hub', proc: r.hub.proc }, ...r.nodes]);
    if (process.env.FIREFLY_BENCH_LOGS) for (const n of r.nodes) await copyFile(n.measure, join(process.env.FIREFLY_BENCH_LOGS, `sync-${n.name}.frames.jsonl`));
    const perNode = await Promise.all(r.nodes.map(async (n) => timeline(await readMeasure(n.measure))));
    const spreads: { at: number; spread: number }[] = [];
    for (const [frame, t0] of perNode[0]) {
      if (t0 < start) continue;
      const times = perNode.map((m) => m.get(frame));
      if (times.some((t) => t === undefined)) continue;
      spreads.push({ at: t0 - start, spread: Math.max(...(times as number[])) - Math.min(...(times as number[])) });
    }
    spreads.sort((a, b) => a.at - b.at);
    // Converged: from the first moment after which every spread stays within 0.1 ms.
    let converged = spreads.length;
    while (converged > 0 && spreads[converged - 1].spread <= 0.1) converged--;
    const table = new Table(`Sync: ${count} nodes, offsets of seconds, ±100 ppm skew, ±50 ppm output rate error, 0–20 ms clock-path jitter`, ['minute', 'frames', 'p50', 'p99', 'max']);
    for (let m = 0; m < minutes; m++) {
      const xs = spreads.filter((s) => s.at >= m * 60_000 && s.at < (m + 1) * 60_000).map((s) => s.spread).sort((a, b) => a - b);
      table.row(m + 1, xs.length, us(percentile(xs, 50)), us(percentile(xs, 99)), us(xs.at(-1) ?? NaN));
    }
    table.note(`inter-node offset: largest difference between nodes in when the same frame played, every 0.1 s of audio (goal p99 ≤ 100 µs, max ≤ 500 µs)`);
    table.note(converged < spreads.length ? `converged (within 100 µs from then on) ${((spreads[converged]?.at ?? 0) / 1000).toFixed(1)} s after the start` : 'never stayed within 100 µs');
    return table.render();
  } finally {
    await teardown(r);
  }
}

export async function benchCommandToSound(options: CommandToSoundOptions = {}): Promise<string> {
  const count = options.nodes ?? 8;
  const rounds = options.rounds ?? Number(process.env.FIREFLY_BENCH_C2S_ROUNDS ?? 13);
  let r: Rig | undefined;
  try {
    note(`command-to-sound: starting a hub and ${count} nodes`);
    const nexts = options.nexts ?? Number(process.env.FIREFLY_BENCH_C2S_NEXTS ?? 4);
    r = await rig(count, 20, false, 2 + nexts);
    // Nodes that have been up a little while hold the starts of the tracks they hold,
    // decoded while idle (playback.prepareStarts): waited for, so the plays below are
    // those of a system in use, not of one that started a second ago.
    const preparing = performance.now();
    await Promise.all(
      r.nodes.map(async (n) => {
        const pass = await n.proc.waitForLog((l) => l.msg === 'prepared the starts of held tracks' && (l.cached as number) >= 2 + nexts, 60_000);
        // …and told the hub (the report follows the last change by 300 ms).
        await n.proc.waitForLog((l) => l.msg === 'cached track starts reported to the hub' && (l.time as number) >= (pass.time as number) && (l.tracks as number) >= 2 + nexts, 10_000);
      }),
    );
    const preparedMs = performance.now() - preparing;
    // …and the hub has that report: one run sent its first play 8 ms after the last
    // node logged its report, before the hub had it, and that play met the barrier.
    await new Promise((res) => setTimeout(res, 500));
    const all: number[] = [];
    const worst: number[] = [];
    // Where the time goes, from the hub's log: command → session prepared, the barrier, the start margin.
    const toPrepare: number[] = [];
    const barrier: number[] = [];
    const margin: number[] = [];
    const prepare: number[] = [];
    let missing = 0;
    /** Node-plays whose first frame was not the track's first: the start reached them too late (ms of audio skipped). */
    const skipped: { ms: number; round: number }[] = [];
    /** The first round: the nodes' first play since they started (no decode kept from an earlier one). */
    let firstPlay = NaN;
    /**
     * The rounds after the first play tracks A, A, B, B, A, A…, each from its start: the
     * track just stopped again, or the other one. Either has its start cached on the
     * nodes from when it last played ('intros') — except the first time B plays: nothing,
     * the hub waits for the barrier. Then `resumes` rounds pause a track 2.5 s in and
     * resume it: the nodes keep it decoded where it stopped ('kept'). Then `nexts` rounds
     * play A with a track never played before after it, and skip to that one 4 s in (its
     * start decoded in the background while A played, 'intros'). Split by how the hub
     * started each play (its log says why).
     */
    const byStart = new Map<string, number[]>();
    /** Each play command's round, for the note on the slowest ones: where its time went. */
    const playRounds: { round: number; lastMs: number; toPrepareMs: number; marginMs: number; why: string }[] = [];
    const [a, b] = r.entryIds;
    const resumes = options.resumes ?? Number(process.env.FIREFLY_BENCH_C2S_RESUMES ?? 4);
    const seeks = options.seeks ?? Number(process.env.FIREFLY_BENCH_C2S_SEEKS ?? 2);
    const plays = rounds + resumes + nexts + seeks;
    /** Sends the command, waits for the session it starts; when its start position played at each node (monotonic ms), less the frames a late node skipped. */
    const measure = async (round: number, kind: 'play' | 'resume' | 'next' | 'seek', command: () => Promise<unknown>) => {
      const sentWall = Date.now();
      const sent = monotonicMs();
      await command();
      const g = await waitFor('started', () => {
        const s = r!.observer.last<GroupState>(r!.observer.topics.groupState(r!.groupId));
        return s?.playback.anchor && s.playback.anchor.hubMs > sent ? s : undefined;
      }, 20_000);
      await new Promise((res) => setTimeout(res, 1000));
      const startFrame = Math.round(g.playback.anchor!.positionMs * 48);
      const firsts = await Promise.all(
        // When the start frame played, or would have for a node that came in a few frames
        // late (it then skipped to the right frame): its first record, less the frames it skipped.
        r!.nodes.map(async (n) => {
          const first = (await readMeasure(n.measure)).find((x) => x.session === g.playback.session && x.trackFrame >= 0);
          const late = first ? first.trackFrame - startFrame : 0;
          if (late > 48) skipped.push({ ms: late / 48, round });
          return first ? first.trueMs - (late / 48_000) * 1000 : NaN;
        }),
      );
      const logs = r!.hub.proc.logs;
      const prepared = logs.find((l) => l.msg === 'session prepared' && l.session === g.playback.session);
      const startedLog = logs.find((l) => l.msg === 'session started' && l.session === g.playback.session);
      const toPrepareMs = prepared ? (prepared.time as number) - sentWall : NaN;
      if (prepared) toPrepare.push(toPrepareMs);
      for (const n of r!.nodes) {
        const ready = n.proc.logs.find((l) => l.msg === 'ready' && l.session === g.playback.session);
        if (ready) prepare.push(ready.prepareMs as number);
      }
      if (startedLog) barrier.push(startedLog.barrierMs as number), margin.push(startedLog.marginMs as number);
      // A node with no frame yet (it joined late, after the barrier timeout) counts as missing, not as NaN in the order.
      const lat = firsts.map((t) => t - sent).filter((x) => Number.isFinite(x));
      missing += firsts.length - lat.length;
      all.push(...lat);
      if (lat.length === firsts.length) worst.push(Math.max(...lat));
      if (round === 1) firstPlay = Math.max(...lat);
      const why = String(startedLog?.why ?? 'unknown');
      const key = `${kind}: ${why}`;
      byStart.set(key, [...(byStart.get(key) ?? []), ...lat]);
      if (kind === 'play') playRounds.push({ round, lastMs: Math.max(...lat), toPrepareMs, marginMs: Number(startedLog?.marginMs ?? NaN), why });
    };
    for (let i = 0; i < rounds; i++) {
      const entryId = i === 0 ? a : Math.floor(i / 2) % 2 === 0 ? a : b;
      await measure(i + 1, 'play', () => r!.command('play', { groupId: r!.groupId, entryId }));
      await r.command('stop', { groupId: r.groupId });
      await new Promise((res) => setTimeout(res, 300));
    }
    for (let i = 0; i < resumes; i++) {
      await r.command('play', { groupId: r.groupId, entryId: i % 2 === 0 ? a : b });
      await new Promise((res) => setTimeout(res, 2500));
      await r.command('pause', { groupId: r.groupId });
      await new Promise((res) => setTimeout(res, 600));
      await measure(rounds + i + 1, 'resume', () => r!.command('resume', { groupId: r!.groupId }));
      await r.command('stop', { groupId: r.groupId });
      await new Promise((res) => setTimeout(res, 300));
    }
    for (let i = 0; i < nexts; i++) {
      await r.command('play', { groupId: r.groupId, entryIds: [a, r.entryIds[2 + i]] });
      await new Promise((res) => setTimeout(res, 4000));
      await measure(rounds + resumes + i + 1, 'next', () => r!.command('next', { groupId: r!.groupId }));
      await r.command('stop', { groupId: r.groupId });
      await new Promise((res) => setTimeout(res, 300));
    }
    // A seek while playing, into the middle of the track: no node has that spot decoded.
    for (let i = 0; i < seeks; i++) {
      await r.command('play', { groupId: r.groupId, entryId: i % 2 === 0 ? a : b });
      await new Promise((res) => setTimeout(res, 1500));
      await measure(rounds + resumes + nexts + i + 1, 'seek', () => r!.command('seek', { groupId: r!.groupId, seconds: 6 + i }));
      await r.command('stop', { groupId: r.groupId });
      await new Promise((res) => setTimeout(res, 300));
    }
    await keepLogs('command-to-sound', [{ name: 'hub', proc: r.hub.proc }, ...r.nodes]);
    all.sort((a, b) => a - b);
    worst.sort((a, b) => a - b);
    const ms = (x: number) => `${x.toFixed(1)} ms`;
    const row = (t: Table, label: string, xs: number[]) => {
      xs.sort((a, b) => a - b);
      return t.row(label, ms(percentile(xs, 50)), ms(percentile(xs, 95)), ms(xs.at(-1) ?? NaN));
    };
    const table = new Table(`Command-to-sound: ${count} nodes, ${2 + nexts} tracks held, ${rounds} plays, ${resumes} resumes, ${nexts} nexts, ${seeks} seeks`, ['', 'p50', 'p95', 'max'])
      .row('first frame at each output, every command', ms(percentile(all, 50)), ms(percentile(all, 95)), ms(all.at(-1)!))
      .row('first frame at the last output, every command', ms(percentile(worst, 50)), ms(percentile(worst, 95)), ms(worst.at(-1)!));
    // The goal's case: a play command, the track held (whichever way the hub started it).
    const playCommands = [...byStart].filter(([key]) => key.startsWith('play: ')).flatMap(([, xs]) => xs);
    if (playCommands.length > 0) row(table, `play commands (the goal's case), ${playCommands.length / count}`, playCommands);
    const kinds: [string, string][] = [
      ['play: all ready', 'play, after the barrier (not played since the nodes started)'],
      ['play: every member has the start decoded', 'play, at once: its start cached (played, or prepared while idle)'],
      ['play: every member keeps the track decoded', 'play, at once: kept decoded since it stopped'],
      ['resume: every member keeps the track decoded', 'resume, at once: kept decoded where it paused'],
      ['next: every member has the start decoded', 'next, at once: its start decoded while the one before played'],
      ['seek: all ready', 'seek into the middle, after the barrier (nothing decoded there)'],
    ];
    for (const [key, label] of kinds) if (byStart.has(key)) row(table, `${label}, ${byStart.get(key)!.length / count}`, byStart.get(key)!);
    for (const [key, xs] of byStart) if (!kinds.some(([k]) => k === key)) row(table, `${key}, ${xs.length / count}`, xs);
    row(table, '  command → hub prepared (wall clock)', toPrepare);
    row(table, '  start barrier (all ready)', barrier);
    row(table, '  a node: prepare → ready (pre-roll decoded)', prepare);
    row(table, '  start margin (output delay + slack)', margin);
    table.note(`the first play after the nodes started (its start prepared while idle; every node had the starts of the ${2 + nexts} tracks ${(preparedMs / 1000).toFixed(1)} s after the last one synced): ${firstPlay.toFixed(1)} ms at the last output`);
    table.note(`node-plays that began more than 1 ms into the track (the start came too late for the output, the first audio skipped): ${skipped.length} of ${plays * count}${skipped.length ? `, up to ${Math.max(...skipped.map((x) => x.ms)).toFixed(1)} ms (plays ${[...new Set(skipped.map((x) => x.round))].join(', ')})` : ''}`);
    const slowest = [...playRounds].sort((x, y) => y.lastMs - x.lastMs).slice(0, 2);
    table.note(
      `the slowest play commands (at the last output; command → hub prepared + start margin; the rest passed between the hub's two log lines): ${slowest
        .map((x) => `play ${x.round} ${x.lastMs.toFixed(1)} ms (${x.toPrepareMs} + ${x.marginMs} ms, ${x.why})`)
        .join('; ')}`,
    );
    if (missing > 0) table.note(`${missing} node-plays had no frame 1 s after the start (late joiners after the barrier timeout): left out of the first row, and their rounds out of the second`);
    return table
      .note('from the play command published over MQTT to the first frame played by the measurement outputs (goal p95 ≤ 150 ms)')
      .render();
  } finally {
    await teardown(r);
  }
}
