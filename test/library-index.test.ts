/**
 * Integration: the hub's indexer as a real process. Odd files are recorded with a reason
 * rather than breaking the scan, a file being written is not indexed half-way, and bad
 * settings stop the command with a message that names them.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTrack } from './helpers/audio.js';
import { cleanup, ctlLibrary, firefly, hubChanges, isolationArgs, startHub, syncOnce, tempDir, verifyNodeCopies, waitFor, type CtlEntry, type HubHandle } from './helpers/processes.js';

/** Deterministic noise: the same "random" bytes on every run. */
function noise(size: number, seed: string): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(seed).digest();
  for (let off = 0; off < size; off += block.length) {
    block.copy(out, off);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

after(cleanup);

describe('odd files in the library', () => {
  let lib: string;
  let hub: HubHandle;
  const UNICODE_DIR = 'Sigur Rós – Ágætis byrjun ☃';
  const UNICODE = `${UNICODE_DIR}/01 Svefn-g-englar (live) 日本.ogg`;
  const SPACED = 'with  two spaces and a trailing one .m4a';
  const GOOD = ['good.flac', 'flac-named.mp3', UNICODE, SPACED];

  before(async () => {
    lib = await tempDir('firefly-odd-');
    const scratch = await tempDir('firefly-scratch-');
    await Promise.all([
      makeTrack(join(lib, 'good.flac'), { format: 'flac', seconds: 5, title: 'Good', seed: 1 }),
      makeTrack(join(scratch, 'long.mp3'), { format: 'mp3', seconds: 30, seed: 2 }),
      // FLAC bytes behind an .mp3 name (made elsewhere: ffmpeg picks the muxer by name).
      makeTrack(join(scratch, 'really.flac'), { format: 'flac', seconds: 4, title: 'Really FLAC', seed: 3 }),
      makeTrack(join(lib, UNICODE), { format: 'ogg', seconds: 4, title: 'Svefn-g-englar', seed: 4 }),
      makeTrack(join(lib, SPACED), { format: 'm4a', seconds: 4, title: 'Spaced', seed: 5 }),
    ]);
    await writeFile(join(lib, 'flac-named.mp3'), await readFile(join(scratch, 'really.flac')));
    await writeFile(join(lib, 'corrupt.flac'), noise(300 * 1024, 'corrupt'));
    await writeFile(join(lib, 'empty.mp3'), Buffer.alloc(0));
    // An interrupted copy: the first 15 % of a 30-second MP3.
    const long = await readFile(join(scratch, 'long.mp3'));
    await writeFile(join(lib, 'truncated.mp3'), long.subarray(0, Math.floor(long.length * 0.15)));
    await writeFile(join(lib, 'notes.txt'), 'Liner notes, not audio.\n');
    // Symlink loops: the library folder inside itself, and a folder pointing at its parent.
    await symlink('.', join(lib, 'loop'));
    await mkdir(join(lib, 'deeper'));
    await symlink('..', join(lib, 'deeper', 'up'));
    hub = await startHub({ library: [lib], settleMs: 300 });
  });

  test('the scan completes and records each odd file with a status and a reason', async () => {
    const indexed = await hub.proc.waitForLog('library indexed');
    assert.equal(indexed.ok, GOOD.length, JSON.stringify(indexed));
    assert.equal(Number(indexed.failed) + Number(indexed.unsupported), 4, JSON.stringify(indexed));

    const all = await ctlLibrary(hub.address);
    const byPath = new Map(all.map((e) => [e.path, e]));
    // Every real file is there once; nothing came in through the symlink loops.
    assert.deepEqual(
      all.map((e) => e.path).sort(),
      [...GOOD, 'corrupt.flac', 'empty.mp3', 'truncated.mp3', 'notes.txt'].sort(),
    );
    for (const p of GOOD) assert.equal(byPath.get(p)?.status, 'OK', `${p}: ${byPath.get(p)?.error}`);
    assert.equal(byPath.get('flac-named.mp3')?.format, 'flac', 'the format comes from the bytes, not the name');
    assert.equal(byPath.get(UNICODE)?.title, 'Svefn-g-englar');
    assert.equal(byPath.get(SPACED)?.format, 'm4a');

    const failed = await ctlLibrary(hub.address, true);
    const bad = new Map<string, CtlEntry>(failed.map((e) => [e.path, e]));
    assert.deepEqual([...bad.keys()].sort(), ['corrupt.flac', 'empty.mp3', 'notes.txt', 'truncated.mp3']);
    for (const e of failed) {
      assert.ok(e.status === 'FAILED' || e.status === 'UNSUPPORTED', `${e.path}: ${e.status}`);
      assert.ok(e.error && e.error.length > 5, `${e.path} has a reason`);
      assert.doesNotMatch(e.error, /worker failed/, `${e.path}: indexing must not crash a worker: ${e.error}`);
    }
    assert.equal(bad.get('empty.mp3')?.status, 'FAILED');
    assert.match(bad.get('empty.mp3')!.error!, /empty/);
    assert.equal(bad.get('truncated.mp3')?.status, 'FAILED');
    assert.match(bad.get('truncated.mp3')!.error!, /truncated/);
    assert.equal(bad.get('notes.txt')?.status, 'UNSUPPORTED');
    assert.match(bad.get('notes.txt')!.error!, /not a supported audio format/);

    // The hub logged each failure with the file it concerns.
    for (const p of ['corrupt.flac', 'empty.mp3', 'truncated.mp3', 'notes.txt']) {
      assert.ok(
        hub.proc.logs.some((l) => l.msg === 'file not playable' && l.file === join(lib, p)),
        `no "file not playable" log for ${p}`,
      );
    }
  });

  test('a node mirrors the playable files of such a library', async () => {
    const nodeDir = await tempDir('firefly-node-');
    const { report } = await syncOnce(hub.address, nodeDir);
    assert.equal(report.chunksFailed, 0);
    const copies = await verifyNodeCopies(nodeDir);
    assert.deepEqual(copies.map((c) => c.path).sort(), [...GOOD].sort());
  });
});

describe('a hub whose data folder is inside its library', () => {
  let hub: HubHandle;
  let lib: string;

  before(async () => {
    lib = await tempDir('firefly-nested-');
    await makeTrack(join(lib, 'song.flac'), { format: 'flac', seconds: 2, seed: 31 });
    hub = await startHub({ library: [lib], dataDir: join(lib, 'firefly-data') });
  });

  test('does not index its own catalogue files', async () => {
    // The catalogue writes (WAL) while indexing; give the watcher time to see them.
    await new Promise((r) => setTimeout(r, 1500));
    const entries = await ctlLibrary(hub.address);
    assert.deepEqual(entries.map((e) => e.path), ['song.flac']);
  });
});

describe('a file written slowly into the library', () => {
  const SETTLE_MS = 800;
  let lib: string;
  let source: Buffer;
  let hub: HubHandle;

  before(async () => {
    lib = await tempDir('firefly-slow-');
    const scratch = await tempDir('firefly-scratch-');
    await makeTrack(join(lib, 'already here.flac'), { format: 'flac', seconds: 3, seed: 21 });
    await makeTrack(join(scratch, 'slow.mp3'), { format: 'mp3', seconds: 30, title: 'Slowly Copied', seed: 22 });
    source = await readFile(join(scratch, 'slow.mp3'));
    // The settle time must exceed the writer's pauses (200 ms) with room for a busy
    // machine; 800 ms keeps the test honest on two loaded cores.
    hub = await startHub({ library: [lib], settleMs: SETTLE_MS });
  });

  test('is not indexed half-way, and is indexed once complete', async () => {
    const name = 'incoming/slow.mp3';
    const file = join(lib, name);
    await mkdir(join(lib, 'incoming'));
    const seen: { status: string; size: number }[] = [];
    let writing = true;
    const watcher = (async () => {
      while (writing) {
        const { entries } = await hubChanges(hub.address);
        const e = entries.find((x) => !x.removed && x.path === name);
        if (e) seen.push({ status: e.status, size: Number(e.size) });
        await delay(100);
      }
    })();

    const pieces = 10;
    const piece = Math.ceil(source.length / pieces);
    const fh = await open(file, 'w');
    let maxGap = 0;
    let last = Date.now();
    try {
      for (let off = 0; off < source.length; off += piece) {
        await fh.write(source.subarray(off, off + piece));
        await fh.sync();
        const now = Date.now();
        if (off > 0) maxGap = Math.max(maxGap, now - last);
        last = now;
        if (off + piece < source.length) await delay(200);
      }
    } finally {
      await fh.close();
    }
    writing = false;
    await watcher;
    // Otherwise the hub would be right to index a file that stood still for settle-ms.
    assert.ok(maxGap < SETTLE_MS - 200, `the writer paused ${maxGap} ms; the test needs pauses well below ${SETTLE_MS} ms`);
    assert.deepEqual(seen, [], 'the hub listed the file while it was still being written');

    const done = await waitFor('the complete file to be indexed', async () => {
      const e = (await ctlLibrary(hub.address)).find((x) => x.path === name);
      return e?.status === 'OK' ? e : undefined;
    });
    assert.equal(done.title, 'Slowly Copied');
    assert.ok(Math.abs(done.duration! - 30) < 0.5, `duration ${done.duration}`);
    const entry = (await hubChanges(hub.address)).entries.find((e) => !e.removed && e.path === name)!;
    assert.equal(Number(entry.size), source.length);
    assert.deepEqual(
      hub.proc.logs.filter((l) => l.file === file && (l.msg === 'file not playable' || l.msg === 'cannot read file')),
      [],
      'no failure was logged for the file while it was being written',
    );
  });
});

describe('bad settings', () => {
  async function runToExit(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stderr: string }> {
    const proc = firefly(args, env);
    const timer = setTimeout(() => proc.child.kill('SIGKILL'), 15_000);
    const { code } = await proc.exited;
    clearTimeout(timer);
    return { code, stderr: [...proc.rawStderr, ...proc.logs.map((l) => JSON.stringify(l))].join('\n') };
  }

  let lib: string;
  let data: string;
  before(async () => {
    lib = await tempDir('firefly-cfg-lib-');
    data = await tempDir('firefly-cfg-data-');
  });

  test('a flag that is not a number', async () => {
    const r = await runToExit(['hub', '--library', lib, '--data-dir', data, '--grpc-port', 'abc']);
    assert.notEqual(r.code, 0);
    assert.notEqual(r.code, null, 'the hub exited by itself');
    assert.match(r.stderr, /--grpc-port/);
    assert.match(r.stderr, /abc/);
  });

  test('a config file with a bad value', async () => {
    const file = join(data, 'firefly.json');
    await writeFile(file, JSON.stringify({ hub: { library: [lib], dataDir: data, grpc: { port: 70000 } } }));
    const r = await runToExit(['hub', '--config', file]);
    assert.notEqual(r.code, 0);
    assert.notEqual(r.code, null);
    assert.match(r.stderr, /grpc\.port/);
    assert.ok(r.stderr.includes(file), `the message names the file: ${r.stderr}`);

    await writeFile(file, JSON.stringify({ hub: { library: [lib], dataDir: data, index: { settleMs: 'soon' } } }));
    const r2 = await runToExit(['hub', '--config', file]);
    assert.notEqual(r2.code, 0);
    assert.match(r2.stderr, /index\.settleMs/);
  });

  test('an environment variable and a node flag with bad values', async () => {
    const r = await runToExit(['hub', '--library', lib, '--data-dir', data], { FIREFLY_GRPC_PORT: 'seven' });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /FIREFLY_GRPC_PORT/);

    const nodeDir = await tempDir('firefly-cfg-node-');
    const r2 = await runToExit(['node', '--once', '--hub', '127.0.0.1:1', '--data-dir', nodeDir, '--store-budget', 'lots']);
    assert.notEqual(r2.code, 0);
    assert.match(r2.stderr, /--store-budget/);
  });

  test('a good configuration still starts (the checks above are not vacuous)', async () => {
    const file = join(data, 'good.json');
    await writeFile(file, JSON.stringify({ hub: { library: [lib], dataDir: data, grpc: { host: '127.0.0.1', port: 0 }, index: { settleMs: 300 } } }));
    const proc = firefly(['hub', '--config', file, ...(await isolationArgs())]);
    const listening = await proc.waitForLog('data plane (gRPC) listening', 20_000);
    assert.ok(Number(listening.port) > 0);
    await proc.waitForLog('library indexed', 20_000);
    await proc.stop();
  });
});
