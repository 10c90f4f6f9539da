/**
 * Node faults, with real processes:
 * - kill -9 at random moments of a sync, over and over: after every kill the store's
 *   index names only whole, verified chunks (the bytes at each row's pack and offset
 *   hash to its name), what interrupted writes left is dead space the next start writes
 *   after, and a last sync completes with every track identical to the library's file;
 * - a disk that fills (a real 3 MiB tmpfs as the node's data folder; needs root): the
 *   node says so in its heartbeat and log, stays up, keeps its store consistent and
 *   plays what it holds.
 * The link cut between hub and node is in node-faults-netns.test.ts.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, describe, test } from 'node:test';
import { openNodeDb } from '../src/node/node-db.js';
import { makeTrack } from './helpers/audio.js';
import { ctl, embeddedBroker, Observer, startControlHub, startControlNode } from './helpers/control-plane.js';
import { readMeasure } from './helpers/measure.js';
import { prng } from './helpers/control-plane-suite.js';
import { cleanup, ctlLibrary, firefly, startHub, syncOnce, tempDir, verifyNodeCopies, waitFor } from './helpers/processes.js';

const run = promisify(execFile);


/**
 * Reads a node's store straight from disk, without the store's own code (which would
 * verify and drop): every indexed chunk must be whole where the index says it is, in its
 * pack, and hash to its name. Bytes in the packs that no row names are dead space (a
 * write a crash interrupted, or chunks a full disk refused).
 */
async function auditStore(dataDir: string): Promise<{ indexed: number; deadBytes: number; liveBytes: number }> {
  const db = openNodeDb(dataDir);
  let rows: { hash: Buffer; size: number; pack: number | null; offset: number | null }[];
  try {
    rows = db.prepare('SELECT hash, size, pack, offset FROM chunks').all() as typeof rows;
  } finally {
    db.close();
  }
  const packDir = join(dataDir, 'chunks', 'packs');
  const packFile = (id: number) => join(packDir, `${String(id).padStart(6, '0')}.pack`);
  const packBytes = new Map<number, Buffer>();
  let liveBytes = 0;
  for (const r of rows) {
    const hex = r.hash.toString('hex');
    assert.notEqual(r.pack, null, `chunk ${hex.slice(0, 16)} is in no pack`);
    let pack = packBytes.get(r.pack!);
    if (!pack) packBytes.set(r.pack!, (pack = await readFile(packFile(r.pack!))));
    const data = pack.subarray(r.offset!, r.offset! + r.size);
    assert.equal(data.length, r.size, `chunk ${hex.slice(0, 16)}: ${data.length} bytes in pack ${r.pack} at ${r.offset}, ${r.size} indexed`);
    assert.equal(createHash('sha256').update(data).digest('hex'), hex, `chunk ${hex.slice(0, 16)} does not hash to its name`);
    liveBytes += r.size;
  }
  let diskBytes = 0;
  for (const name of await readdir(packDir).catch(() => [])) diskBytes += (await stat(join(packDir, name))).size;
  return { indexed: rows.length, deadBytes: diskBytes - liveBytes, liveBytes };
}

describe('node faults', () => {
  after(() => cleanup());

  test('kill -9 at random moments of a sync never leaves a half-written chunk in the store', async () => {
    const library = await tempDir('firefly-music-');
    for (let i = 0; i < 4; i++) await makeTrack(join(library, `t${i}.wav`), { format: 'wav', seconds: 25, seed: 10 + i, title: `T${i}` });
    // 1 MB/s from the hub: a whole sync takes about 18 s, so every kill lands mid-sync.
    const hub = await startHub({ library: [library], extraArgs: ['--upload-limit', '8M'] });
    const dataDir = await tempDir('firefly-node-');
    const rnd = prng(20_261_125);
    const KILLS = 12;
    let killedMidWrite = 0;
    let killedBeforeDone = 0;
    let dead = 0;
    const counts: number[] = [];
    for (let i = 0; i < KILLS; i++) {
      // Between process start (about 0.4 s to load) and a whole sync (a few seconds here).
      const delayMs = 300 + Math.floor(rnd() * 2200);
      const proc = firefly(['node', '--once', '--hub', hub.address, '--data-dir', dataDir, '--serve-host', '127.0.0.1', '--serve-port', '0', '--sync-interval', '3600']);
      const timer = setTimeout(() => proc.child.kill('SIGKILL'), delayMs);
      const { signal } = await proc.exited;
      clearTimeout(timer);
      if (signal === 'SIGKILL') killedBeforeDone++;
      const audit = await auditStore(dataDir);
      if (audit.deadBytes > dead) killedMidWrite++;
      dead = audit.deadBytes;
      counts.push(audit.indexed);
    }
    process.stderr.write(`kill -9 loop: ${KILLS} kills (${killedBeforeDone} before the sync finished, ${killedMidWrite} with a chunk write in flight); chunks indexed after each: ${counts.join(' ')}; dead bytes ${dead}\n`);
    assert.ok(killedBeforeDone >= KILLS / 2, `most kills must land mid-sync (${killedBeforeDone} of ${KILLS})`);
    // The next start appends after what the kills left unindexed and completes the sync; every track is whole.
    const { report } = await syncOnce(hub.address, dataDir, ['--serve-host', '127.0.0.1', '--serve-port', '0']);
    assert.equal(report.chunksFailed, 0);
    const after = await auditStore(dataDir);
    assert.ok(after.deadBytes < after.liveBytes, `dead space (${after.deadBytes} B) stays below what is held (${after.liveBytes} B)`);
    const copies = await verifyNodeCopies(dataDir);
    assert.equal(copies.length, 4);
  });

  test('a full disk is reported, the node stays up, its store stays consistent and it plays what it holds', async (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root to mount a tmpfs');
    // Not a tempDir: cleanup() would try to remove the mount point while it is mounted.
    const mount = join(await tempDir('firefly-full-'), 'mnt');
    await mkdir(mount);
    try {
      await run('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mount]);
    } catch (err) {
      return t.skip(`cannot mount a tmpfs here: ${(err as Error).message.split('\n')[0]}`);
    }
    const procs: { stop(): Promise<void> }[] = [];
    try {
      const broker = await embeddedBroker();
      const library = await tempDir('firefly-music-');
      await makeTrack(join(library, 'small.wav'), { format: 'wav', seconds: 4, seed: 1, title: 'Small' });
      const hub = await startControlHub(broker, { library });
      procs.push(hub.proc);
      await hub.proc.waitForLog('library indexed', 30_000);
      const observer = await new Observer(broker).connect();
      await observer.subscribe(`${broker.prefix}/node/+/heartbeat`, `${broker.prefix}/group/+/state`);
      const dataDir = join(mount, 'node');
      await mkdir(dataDir);
      const measure = join(await tempDir('firefly-measure-'), 'frames.jsonl');
      const { proc } = await startControlNode(broker, hub, {
        name: 'full',
        dataDir,
        extraArgs: ['--serve-host', '127.0.0.1', '--serve-port', '0', '--output', 'measure', '--measure-file', measure, '--output-buffer', '50'],
      });
      procs.push(proc);
      await proc.waitForLog((l) => l.msg === 'sync complete' && Number(l.chunksStored) > 0, 30_000);
      const uuid = String(proc.logs.find((l) => l.msg === 'node starting')?.uuid);

      // Now the library grows past the disk: 3 × 12 s of WAV is about 6 MB.
      const filledAt = Date.now();
      for (let i = 0; i < 3; i++) await makeTrack(join(library, `big${i}.wav`), { format: 'wav', seconds: 12, seed: 20 + i, title: `Big${i}` });
      const logged = await proc.waitForLog((l) => String(l.msg).startsWith('disk full'), 60_000).catch((err: Error) => {
        throw new Error(`${err.message}\nhub:\n${hub.proc.tail(30)}`);
      });
      const beat = await observer.waitFor<{ store: { full?: boolean; bytes: number } }>('heartbeat saying full', `${broker.prefix}/node/${uuid}/heartbeat`, (h) => h.store.full === true, 10_000);
      process.stderr.write(`disk full: reported ${(Number(logged.time) - filledAt).toFixed(0)} ms after the library grew; store ${beat.store.bytes} bytes\n`);
      assert.equal(proc.child.exitCode, null, 'the node is still running');
      assert.equal(hub.proc.child.exitCode, null);

      // What it holds plays.
      const entries = await ctlLibrary(hub.grpc);
      const small = entries.find((e) => e.path === 'small.wav')!;
      await ctl(broker, ['group', 'create', 'Full', 'full']);
      await ctl(broker, ['play', 'Full', String(small.id)]);
      await waitFor('frames of the small track played', async () => (await readMeasure(measure)).length > 20, 20_000).catch((err: Error) => {
        throw new Error(`${err.message}\nnode:\n${proc.tail(20)}\nhub:\n${hub.proc.tail(20)}`);
      });
      assert.equal(proc.child.exitCode, null);
      await proc.stop();
      await observer.close();
      // Everything indexed is whole, even though writes failed part-way.
      const audit = await auditStore(dataDir);
      assert.ok(audit.indexed > 0);
      process.stderr.write(`disk full: ${audit.indexed} whole chunks indexed, ${audit.deadBytes} bytes unindexed in the packs\n`);
    } finally {
      for (const p of procs) await p.stop();
      await run('umount', ['-l', mount]).catch(() => undefined);
    }
  });
});
