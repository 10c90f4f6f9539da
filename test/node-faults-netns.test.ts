/**
 * A node's network link cut during playback and restored, on a LAN of network
 * namespaces: the hub in one, two nodes in two more, each joined to the hub by its own
 * veth pair (so cutting one link touches nothing else). The hub listens on 0.0.0.0, so
 * credentials are on and each node has its own token, as a real installation would.
 *
 * Measured: how long the hub takes to notice (node offline), how long the node takes to
 * rejoin once the link is back, whether the other node's output ever stopped, and
 * whether the cut node plays in step with the other again. Needs root (ip netns);
 * skipped with the reason otherwise.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { monotonicMs } from '../src/clock/local-clock.js';
import { makeTrack } from './helpers/audio.js';
import { agreement, framesOf, readMeasure, type MeasureRecord } from './helpers/measure.js';
import { CLI, cleanup, FireflyProcess, REPO_ROOT, tempDir, waitFor } from './helpers/processes.js';

const run = promisify(execFile);
const RATE = 48000;

interface Lan {
  hubNs: string;
  nodes: { ns: string; dev: string; hubIp: string }[];
  destroy(): Promise<void>;
}

/** The hub's namespace and one namespace per node, each on its own veth pair (10.251.N.0/30, .4/30). */
async function makeLan(count: number): Promise<Lan | string> {
  if (process.getuid?.() !== 0) return 'needs root to create network namespaces (ip netns)';
  const id = `${process.pid % 100000}`;
  const hubNs = `ffc-${id}-hub`;
  const net = `10.251.${process.pid % 250}`;
  const ip = (...args: string[]) => run('ip', args);
  const nodes: Lan['nodes'] = [];
  const destroy = async () => {
    for (const ns of [hubNs, ...nodes.map((n) => n.ns)]) await ip('netns', 'del', ns).catch(() => undefined);
  };
  try {
    await ip('netns', 'add', hubNs);
    await ip('-n', hubNs, 'link', 'set', 'lo', 'up');
    for (let i = 0; i < count; i++) {
      const ns = `ffc-${id}-n${i}`;
      const [hubDev, dev] = [`ffc${id}h${i}`, `ffc${id}n${i}`];
      await ip('netns', 'add', ns);
      nodes.push({ ns, dev, hubIp: `${net}.${i * 4 + 1}` });
      await ip('link', 'add', hubDev, 'type', 'veth', 'peer', 'name', dev);
      await ip('link', 'set', hubDev, 'netns', hubNs);
      await ip('link', 'set', dev, 'netns', ns);
      await ip('-n', hubNs, 'addr', 'add', `${net}.${i * 4 + 1}/30`, 'dev', hubDev);
      await ip('-n', ns, 'addr', 'add', `${net}.${i * 4 + 2}/30`, 'dev', dev);
      await ip('-n', hubNs, 'link', 'set', hubDev, 'up');
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
      await ip('-n', ns, 'link', 'set', dev, 'up');
    }
  } catch (err) {
    await destroy();
    return `cannot create network namespaces here: ${(err as Error).message.split('\n')[0]}`;
  }
  return { hubNs, nodes, destroy };
}

function fireflyIn(ns: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}): FireflyProcess {
  const env: NodeJS.ProcessEnv = { ...extraEnv };
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FIREFLY_')) env[k] = v;
  return new FireflyProcess(spawn('ip', ['netns', 'exec', ns, process.execPath, CLI, ...args], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] }));
}

/** `firefly ctl ARGS` in the hub's namespace, with a controller token. */
async function ctlIn(ns: string, token: string, args: string[]): Promise<string> {
  const { stdout } = await run('ip', ['netns', 'exec', ns, process.execPath, CLI, 'ctl', ...args], { env: { ...process.env, FIREFLY_TOKEN: token }, timeout: 20_000 });
  return stdout;
}

/** Largest stall of one node's output in a window: true time between marks beyond what the frames between them take. */
function worstStall(records: readonly MeasureRecord[], session: string, fromMs: number, toMs: number): { stallMs: number; marks: number } {
  const rs = records.filter((r) => r.session === session && r.trueMs >= fromMs && r.trueMs <= toMs).sort((a, b) => a.trueMs - b.trueMs);
  let stallMs = 0;
  for (let i = 1; i < rs.length; i++) {
    const expected = ((rs[i].trackFrame - rs[i - 1].trackFrame) * 1000) / RATE;
    stallMs = Math.max(stallMs, Math.abs(rs[i].trueMs - rs[i - 1].trueMs - expected));
  }
  return { stallMs, marks: rs.length };
}

describe('a node loses its network during playback', () => {
  let lan: Lan | string = 'not set up';
  let hub: FireflyProcess | undefined;
  let controller = '';
  const nodes: { name: string; proc?: FireflyProcess; measure: string }[] = [];

  before(async () => {
    lan = await makeLan(2);
    if (typeof lan === 'string') return;
    const music = await tempDir('firefly-music-');
    await makeTrack(join(music, 'long.flac'), { format: 'flac', seconds: 60, seed: 5, title: 'Long' });
    const hubDir = await tempDir('firefly-hub-');
    hub = fireflyIn(lan.hubNs, ['hub', '--library', music, '--data-dir', hubDir, '--no-advertise', '--settle-ms', '100', '--heartbeat-timeout', '3']);
    await hub.waitForLog((l) => l.msg === 'credentials required' && l.auth === true, 20_000);
    await hub.waitForLog('library indexed', 30_000);
    const issue = async (...args: string[]) => JSON.parse((await run(process.execPath, [CLI, 'ctl', 'credentials', ...args, '--data-dir', hubDir, '--json'])).stdout) as { token: string };
    controller = (await issue('add-controller', 'test')).token;
    for (const [i, n] of lan.nodes.entries()) {
      const name = `n${i}`;
      const measure = join(await tempDir('firefly-measure-'), 'frames.jsonl');
      const proc = fireflyIn(
        n.ns,
        ['node', '--hub', n.hubIp, '--name', name, '--data-dir', await tempDir('firefly-node-'), '--no-peers', '--sync-interval', '3600', '--output', 'measure', '--measure-file', measure, '--output-buffer', '50', '--serve-port', '0'],
        { FIREFLY_TOKEN: (await issue('add-node')).token },
      );
      nodes.push({ name, proc, measure });
    }
    for (const n of nodes) {
      await n.proc!.waitForLog((l) => l.msg === 'sync complete' && Number(l.chunksStored) > 0, 60_000);
      await n.proc!.waitForLog('clock synced', 30_000);
    }
  });

  after(async () => {
    await cleanup();
    if (typeof lan !== 'string') await lan.destroy();
  });

  test('cut one node\'s link and restore it: the hub notices, the node rejoins and plays in step again; the other never stops', async (t) => {
    if (typeof lan === 'string') return t.skip(`link-cut test skipped: ${lan}`);
    const { hubNs } = lan;
    const [victim, other] = nodes;
    const victimLan = lan.nodes[0];
    await ctlIn(hubNs, controller, ['group', 'create', 'House', 'n0', 'n1', '--mqtt', '127.0.0.1']);
    const library = JSON.parse(`[${(await ctlIn(hubNs, controller, ['library', '--hub', '127.0.0.1', '--json'])).trim().split('\n').join(',')}]`) as { id: number; path: string }[];
    await ctlIn(hubNs, controller, ['play', 'House', String(library[0].id), '--mqtt', '127.0.0.1']);
    await waitFor('both nodes playing', async () => (await Promise.all(nodes.map((n) => readMeasure(n.measure)))).every((r) => r.length > 30), 20_000);
    const session = (await readMeasure(other.measure)).at(-1)!.session;

    // Cut.
    const cutMono = monotonicMs();
    const cutAt = Date.now();
    await run('ip', ['-n', victimLan.ns, 'link', 'set', victimLan.dev, 'down']);
    const gone = await hub!.waitForLog((l) => l.module === 'registry' && (l.event === 'offline' || l.event === 'timeout') && l.name === 'n0' && Number(l.time) >= cutAt, 20_000);
    const detectMs = Number(gone.time) - cutAt;
    await new Promise((r) => setTimeout(r, 3000));

    // Restore.
    const restoreMono = monotonicMs();
    const restoreAt = Date.now();
    await run('ip', ['-n', victimLan.ns, 'link', 'set', victimLan.dev, 'up']);
    const back = await hub!.waitForLog((l) => l.module === 'registry' && l.event === 'online' && l.name === 'n0' && Number(l.time) >= restoreAt, 30_000);
    const rejoinMs = Number(back.time) - restoreAt;
    const reconnected = await victim.proc!.waitForLog((l) => l.msg === 'connected to the control plane' && Number(l.time) >= restoreAt, 10_000);
    await new Promise((r) => setTimeout(r, 4000));

    const [victimRecords, otherRecords] = await Promise.all(nodes.map((n) => readMeasure(n.measure)));
    // The other node never stopped: its marks keep the pace of the audio across the whole cut.
    const otherStall = worstStall(otherRecords, session, cutMono - 1000, restoreMono + 3000);
    assert.ok(otherStall.marks > 40, `the other node kept playing through the cut (${otherStall.marks} marks)`);
    assert.ok(otherStall.stallMs < 50, `the other node's output stalled by ${otherStall.stallMs.toFixed(1)} ms`);
    // The cut node: in step with the other again once it is back (same session, same frames at the same time).
    const victimSession = victimRecords.at(-1)!.session;
    const frames = [framesOf(victimRecords, victimSession), framesOf(otherRecords, victimSession)];
    const since = restoreMono + 2000;
    const a = agreement(frames, since);
    assert.ok(a.compared >= 10, `frames compared after the restore: ${a.compared}`);
    assert.ok(a.maxSpreadMs <= 5, `after the restore the nodes differ by up to ${a.maxSpreadMs.toFixed(3)} ms`);
    const victimStall = worstStall(victimRecords, session, cutMono, restoreMono);
    process.stderr.write(
      `link cut: hub noticed in ${detectMs} ms; node reconnected ${Number(reconnected.time) - restoreAt} ms and was online at the hub ${rejoinMs} ms after the link came back; ` +
        `other node's worst stall ${otherStall.stallMs.toFixed(1)} ms over ${otherStall.marks} marks; ` +
        `cut node played ${victimStall.marks} marks during the cut (worst stall ${victimStall.stallMs.toFixed(1)} ms); ` +
        `after restore: ${a.compared} frames compared, spread max ${a.maxSpreadMs.toFixed(3)} ms, same session as before: ${victimSession === session}\n`,
    );
  });
});
