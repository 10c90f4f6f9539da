/**
 * Integration: a hub and nodes as separate processes on loopback. The node mirrors the
 * library, follows re-tags, deletes, renames and additions with deltas only, and rejects
 * chunks that arrive with the wrong bytes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Server, ServerCredentials, status, type ServerWritableStream } from '@grpc/grpc-js';
import { chunksClient, dataPlane, libraryClient, type ChunkData, type ChunksHandlers, type LibraryHandlers } from '../src/protocol/data-plane.js';
import type { ChunkData__Output } from '../src/generated/firefly/v1/ChunkData.js';
import type { FetchRequest__Output } from '../src/generated/firefly/v1/FetchRequest.js';
import { makeTrack, type TrackSpec } from './helpers/audio.js';
import { cleanup, ctlLibrary, hubChanges, hubEntry, mirrorEntries, startHub, syncOnce, tempDir, verifyNodeCopies, waitFor, withNodeStore, type HubHandle } from './helpers/processes.js';

const run = promisify(execFile);
const MAX_CHUNK = 256 * 1024;

/** The library: several formats, a few long tracks (many chunks), nested and spaced names. */
const TRACKS: Record<string, TrackSpec> = {
  'long/forty-five.flac': { format: 'flac', seconds: 45, title: 'Forty-five', artist: 'Long Player', seed: 11 },
  'long/sixty.mp3': { format: 'mp3', seconds: 60, title: 'Sixty', artist: 'Long Player', seed: 12 },
  'long/thirty.wav': { format: 'wav', seconds: 30, title: 'Thirty', seed: 13 },
  'short/vorbis.ogg': { format: 'ogg', seconds: 8, title: 'Vorbis', seed: 14 },
  'short/opus track.opus': { format: 'opus', seconds: 8, title: 'Opus', seed: 15 },
  'short/aac.m4a': { format: 'm4a', seconds: 8, title: 'AAC', seed: 16 },
  'short/five.mp3': { format: 'mp3', seconds: 5, title: 'Five', seed: 17 },
  'Artist Name/The Album/01 First Song.flac': { format: 'flac', seconds: 10, title: 'First Song', album: 'The Album', seed: 18 },
};

async function makeAll(root: string, tracks: Record<string, TrackSpec>): Promise<void> {
  const todo = Object.entries(tracks);
  const worker = async () => {
    for (let next = todo.shift(); next; next = todo.shift()) await makeTrack(join(root, next[0]), next[1]);
  };
  await Promise.all([worker(), worker(), worker()]);
}

/** Bytes of `b` not covered by the longest common prefix and suffix with `a`: what an edit changed. */
function editedBytes(a: Buffer, b: Buffer): number {
  let p = 0;
  while (p < a.length && p < b.length && a[p] === b[p]) p++;
  let s = 0;
  while (s < a.length - p && s < b.length - p && a[a.length - 1 - s] === b[b.length - 1 - s]) s++;
  return b.length - p - s;
}

/** Rewrites a file's tags with ffmpeg (stream copy) and swaps it in place atomically. */
async function retag(file: string, scratch: string, tags: Record<string, string>): Promise<void> {
  const tmp = join(scratch, `retag-${Date.now()}${file.slice(file.lastIndexOf('.'))}`);
  const meta = Object.entries(tags).flatMap(([k, v]) => ['-metadata', `${k}=${v}`]);
  await run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-i', file, '-map', '0', '-c', 'copy', ...meta, tmp]);
  await rename(tmp, file);
}

describe('hub and node on loopback', () => {
  let lib: string;
  let scratch: string;
  let hub: HubHandle;

  before(async () => {
    lib = await tempDir('firefly-lib-');
    scratch = await tempDir('firefly-scratch-');
    await makeAll(lib, TRACKS);
    hub = await startHub({ library: [lib], settleMs: 300 });
  });

  after(cleanup);

  test('a node mirrors the library and every track reassembles byte-identical', async () => {
    const listed = await ctlLibrary(hub.address);
    assert.deepEqual(listed.map((e) => e.path).sort(), Object.keys(TRACKS).sort());
    for (const e of listed) assert.equal(e.status, 'OK', `${e.path}: ${e.error}`);
    assert.equal(listed.find((e) => e.path === 'long/sixty.mp3')?.format, 'mp3');
    assert.equal(listed.find((e) => e.path === 'short/opus track.opus')?.format, 'opus');
    assert.equal(listed.find((e) => e.path === 'long/forty-five.flac')?.title, 'Forty-five');

    const nodeDir = await tempDir('firefly-node-');
    const { report } = await syncOnce(hub.address, nodeDir);
    const { version } = await hubChanges(hub.address);
    assert.equal(report.toVersion, version);
    assert.equal(report.entriesChanged, Object.keys(TRACKS).length);
    assert.equal(report.chunksFailed, 0);
    assert.equal(report.chunksRejected, 0);
    assert.ok(report.chunksWanted > 0);
    assert.equal(report.chunksStored, report.chunksWanted);
    assert.equal(report.bytesReceived, report.store.bytes);

    const copies = await verifyNodeCopies(nodeDir);
    assert.deepEqual(copies.map((c) => c.path).sort(), Object.keys(TRACKS).sort());
    let total = 0;
    for (const c of copies) {
      assert.equal(c.size, (await stat(join(lib, c.path))).size);
      total += c.size;
    }
    // The long tracks really are cut into many chunks.
    assert.ok(copies.find((c) => c.path === 'long/forty-five.flac')!.chunks >= 30, JSON.stringify(copies));
    assert.ok(copies.find((c) => c.path === 'long/thirty.wav')!.chunks >= 30, JSON.stringify(copies));
    // Different noise seeds share no audio, so the store holds (about) every byte once.
    assert.ok(report.store.bytes <= total && report.store.bytes > total * 0.9, `store ${report.store.bytes} vs library ${total}`);

    // Nothing changed: a second sync moves nothing.
    const { report: again } = await syncOnce(hub.address, nodeDir);
    assert.equal(again.fromVersion, report.toVersion);
    assert.equal(again.entriesChanged, 0);
    assert.equal(again.chunksWanted, 0);
    assert.equal(again.bytesReceived, 0);
  });

  test('a re-tag moves only the chunks around the tags', async () => {
    const nodeDir = await tempDir('firefly-node-');
    await syncOnce(hub.address, nodeDir);
    for (const [path, tags] of [
      ['long/forty-five.flac', { title: 'Forty-five (remastered, with a much longer title)', comment: 'c'.repeat(3000) }],
      ['long/sixty.mp3', { title: 'Sixty — a new and longer title', comment: 'liner notes '.repeat(300) }],
    ] as const) {
      const file = join(lib, path);
      const old = await readFile(file);
      const beforeEntry = (await hubEntry(hub.address, path))!;
      assert.ok(beforeEntry, `${path} is in the library`);

      await retag(file, scratch, tags);
      const edited = await readFile(file);
      assert.notEqual(edited.length, old.length, 'the tag block changed size');

      const afterEntry = await waitFor(`the hub to re-index ${path}`, async () => {
        const e = await hubEntry(hub.address, path);
        return e && e.status === 'OK' && !e.contentId.equals(beforeEntry.contentId) && Number(e.size) === edited.length ? e : undefined;
      });
      assert.equal(afterEntry.id, beforeEntry.id, 'a re-tagged file keeps its id');
      assert.equal(afterEntry.metadata?.title, tags.title);

      const { report } = await syncOnce(hub.address, nodeDir);
      const changedBytes = editedBytes(old, edited);
      assert.equal(report.entriesChanged, 1);
      assert.equal(report.chunksFailed, 0);
      assert.ok(report.bytesReceived > 0, 'the changed chunks were fetched');
      assert.ok(
        report.bytesReceived <= changedBytes + 2 * MAX_CHUNK,
        `${path}: received ${report.bytesReceived} bytes for an edit of ${changedBytes} bytes in a ${edited.length}-byte file`,
      );
      if (edited.length > 3 * 1024 * 1024) {
        assert.ok(report.bytesReceived < edited.length * 0.25, `${path}: received ${report.bytesReceived} of ${edited.length} bytes`);
      }
      const mirrored = (await mirrorEntries(nodeDir)).find((e) => e.path === path)!;
      assert.equal(mirrored.id, Number(beforeEntry.id));
      assert.ok(mirrored.contentId!.equals(afterEntry.contentId));
    }
    const copies = await verifyNodeCopies(nodeDir);
    assert.equal(copies.length, Object.keys(TRACKS).length);
  });

  test('deletes, renames and additions while the hub runs reach the node', async () => {
    const nodeDir = await tempDir('firefly-node-');
    await syncOnce(hub.address, nodeDir);

    // Delete.
    const gone = 'short/vorbis.ogg';
    const goneEntry = (await hubEntry(hub.address, gone))!;
    assert.ok(goneEntry);
    await rm(join(lib, gone));
    await waitFor(`the hub to drop ${gone}`, async () => !(await ctlLibrary(hub.address)).some((e) => e.path === gone));
    const { report: r1 } = await syncOnce(hub.address, nodeDir);
    assert.equal(r1.entriesRemoved, 1);
    assert.equal(r1.entriesChanged, 0);
    const m1 = await mirrorEntries(nodeDir);
    assert.ok(!m1.some((e) => e.path === gone || e.id === Number(goneEntry.id)), 'the deleted file left the mirror');
    await withNodeStore(nodeDir, async (mirror) => assert.equal(mirror.manifest(goneEntry.contentId), undefined, 'its chunk list was dropped'));

    // Rename, into a new folder.
    const from = 'short/opus track.opus';
    const to = 'moved here/opus track (renamed).opus';
    const fromEntry = (await hubEntry(hub.address, from))!;
    assert.ok(fromEntry);
    await mkdir(join(lib, 'moved here'));
    await rename(join(lib, from), join(lib, to));
    const toEntry = await waitFor(`the hub to see ${to}`, async () => {
      const { entries } = await hubChanges(hub.address);
      const live = entries.filter((e) => !e.removed);
      return !live.some((e) => e.path === from) ? live.find((e) => e.path === to) : undefined;
    });
    assert.equal(toEntry.id, fromEntry.id, 'a renamed file keeps its id');
    assert.ok(toEntry.contentId.equals(fromEntry.contentId));
    const { report: r2 } = await syncOnce(hub.address, nodeDir);
    assert.equal(r2.bytesReceived, 0, 'a rename moves no audio');
    const m2 = await mirrorEntries(nodeDir);
    assert.ok(!m2.some((e) => e.path === from));
    const moved = m2.find((e) => e.id === Number(fromEntry.id));
    assert.equal(moved?.path, to);

    // Rename a whole folder.
    const albumBefore = (await hubChanges(hub.address)).entries.filter((e) => !e.removed && e.path.startsWith('Artist Name/The Album/'));
    assert.equal(albumBefore.length, 1);
    await rename(join(lib, 'Artist Name', 'The Album'), join(lib, 'Artist Name', 'The Album (Deluxe)'));
    const albumAfter = await waitFor('the hub to follow the folder rename', async () => {
      const live = (await hubChanges(hub.address)).entries.filter((e) => !e.removed);
      const moved = live.filter((e) => e.path.startsWith('Artist Name/The Album (Deluxe)/'));
      return !live.some((e) => e.path.startsWith('Artist Name/The Album/')) && moved.length === 1 ? moved : undefined;
    });
    assert.equal(albumAfter[0].path, 'Artist Name/The Album (Deluxe)/01 First Song.flac');
    assert.equal(albumAfter[0].id, albumBefore[0].id, 'files in a renamed folder keep their ids');
    const { report: rf } = await syncOnce(hub.address, nodeDir);
    assert.equal(rf.bytesReceived, 0);
    assert.equal((await mirrorEntries(nodeDir)).find((e) => e.id === Number(albumBefore[0].id))?.path, albumAfter[0].path);

    // Add (written by ffmpeg straight into the watched folder).
    const added = 'short/new arrival.flac';
    await makeTrack(join(lib, added), { format: 'flac', seconds: 12, title: 'New Arrival', seed: 99 });
    const size = (await stat(join(lib, added))).size;
    // ffmpeg finishes a FLAC by seeking back to its header: wait for the final bytes.
    await waitFor(`the hub to index all of ${added}`, async () => {
      const e = await hubEntry(hub.address, added);
      return e?.status === 'OK' && Number(e.size) === size;
    });
    const addedEntry = (await ctlLibrary(hub.address)).find((x) => x.path === added)!;
    assert.equal(addedEntry.title, 'New Arrival');
    assert.equal(addedEntry.format, 'flac');
    const { report: r3 } = await syncOnce(hub.address, nodeDir);
    assert.equal(r3.entriesChanged, 1);
    assert.ok(r3.bytesReceived >= size * 0.9 && r3.bytesReceived <= size, `received ${r3.bytesReceived} for a ${size}-byte file`);
    const m3 = await mirrorEntries(nodeDir);
    assert.equal(m3.find((e) => e.path === added)?.status, 'OK');

    const copies = await verifyNodeCopies(nodeDir);
    const paths = copies.map((c) => c.path);
    assert.ok(paths.includes(added) && paths.includes(to) && !paths.includes(gone) && !paths.includes(from), paths.join(', '));
    assert.ok(paths.includes(albumAfter[0].path), paths.join(', '));
  });

  test('a chunk served with the wrong bytes is rejected and fetched again', async (t) => {
    // A proxy in front of the hub: Library calls pass through; the first time each chunk
    // comes through, one byte of it is flipped.
    const upLibrary = libraryClient(hub.address);
    const upChunks = chunksClient(hub.address);
    const seen = new Set<string>();
    let corrupted = 0;
    let served = 0;
    const libraryHandlers: LibraryHandlers = {
      Changes: (call, callback) => upLibrary.Changes(call.request, callback),
      Manifest: (call, callback) => upLibrary.Manifest(call.request, callback),
      Sources: (call, callback) => upLibrary.Sources(call.request, callback),
    };
    const chunkHandlers: ChunksHandlers = {
      Fetch: (call: ServerWritableStream<FetchRequest__Output, ChunkData>) => {
        const up = upChunks.Fetch({ hashes: call.request.hashes });
        call.on('cancelled', () => up.cancel());
        up.on('data', (msg: ChunkData__Output) => {
          let data = msg.data;
          const key = msg.hash.toString('hex');
          if (!msg.missing && !seen.has(key)) {
            seen.add(key);
            data = Buffer.from(data);
            data[data.length >> 1] ^= 0x5a;
            corrupted++;
          }
          served++;
          call.write({ hash: msg.hash, data, missing: msg.missing });
        });
        up.on('end', () => call.end());
        up.on('error', (err: Error & { code?: number }) => call.emit('error', { code: err.code ?? status.UNAVAILABLE, details: err.message }));
      },
      Stats: (call, callback) => upChunks.Stats(call.request, callback),
    };
    const server = new Server();
    const v1 = dataPlane().firefly.v1;
    server.addService(v1.Library.service, libraryHandlers);
    server.addService(v1.Chunks.service, chunkHandlers);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    t.after(() => {
      server.forceShutdown();
      upLibrary.close();
      upChunks.close();
    });

    const nodeDir = await tempDir('firefly-node-');
    const { report } = await syncOnce(`127.0.0.1:${port}`, nodeDir);
    assert.ok(report.chunksWanted > 0);
    assert.ok(report.chunksRejected > 0, 'damaged chunks were noticed');
    assert.equal(report.chunksRejected, corrupted, 'every damaged chunk was rejected');
    assert.equal(report.chunksRejected, report.chunksWanted, 'each chunk was damaged once');
    assert.equal(report.chunksFailed, 0, 'and every one was fetched again');
    assert.equal(report.chunksStored, report.chunksWanted);
    assert.equal(served, 2 * report.chunksWanted);
    assert.equal(report.bytesReceived, 2 * report.store.bytes);

    const copies = await verifyNodeCopies(nodeDir);
    const live = (await ctlLibrary(hub.address)).filter((e) => e.status === 'OK');
    assert.deepEqual(copies.map((c) => c.path).sort(), live.map((e) => e.path).sort());
  });
});
