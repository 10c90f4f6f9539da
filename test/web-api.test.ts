/**
 * The REST API of the hub's web server, against a real hub process (embedded broker,
 * real SQLite, real library watcher) and a real node: every route, the answers the page
 * relies on, and hostile input (traversal names, huge bodies, wrong types, bad JSON,
 * content that is not audio). Each refusal must be a JSON error naming what is wrong,
 * and must leave the hub's state and the library folder as they were.
 */
import { strict as assert } from 'node:assert';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeTrack } from './helpers/audio.js';
import { embeddedBroker, Observer, startControlHub, startControlNode, type BrokerAccess, type HubProcess } from './helpers/control-plane.js';
import { cleanup, tempDir, waitFor } from './helpers/processes.js';
import { EventStream, hubHttpUrl, makeTrackWithCover, postOversized, request, upload } from './helpers/web.js';

const UPLOAD_MAX = 400_000;

/** Every file below a folder (hidden ones too), as paths relative to it. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(join(e.parentPath, e.name).slice(dir.length + 1));
  return out.sort();
}

function assertError(res: { status: number; body: any }, status: number, code: string, mention?: RegExp): void {
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${JSON.stringify(res.body)}`);
  assert.equal(res.body?.error?.code, code, `error body: ${JSON.stringify(res.body)}`);
  assert.equal(typeof res.body.error.message, 'string');
  if (mention) assert.match(res.body.error.message, mention);
}

describe('REST API (real hub and node)', () => {
  let broker: BrokerAccess;
  let hub: HubProcess;
  let base: string;
  let library: string;
  let outer: string;
  let nodeId: number;
  const entries = new Map<string, number>();

  before(async () => {
    broker = await embeddedBroker();
    // The library sits alone inside a folder of its own: a traversal would show up beside it.
    outer = await tempDir('firefly-web-');
    library = join(outer, 'music');
    await mkdir(library);
    await makeTrack(join(library, 'a.flac'), { format: 'flac', seconds: 6, seed: 1, title: 'Alpha', artist: 'Ann', album: 'First' });
    await makeTrack(join(library, 'b.flac'), { format: 'flac', seconds: 6, seed: 2, title: 'Beta', artist: 'Bob', album: 'Second' });
    await makeTrackWithCover(join(library, 'covered.mp3'), { title: 'Gamma', artist: 'Ann', album: 'First' });
    await makeTrack(join(library, 'broken.flac'), { format: 'flac', seconds: 10, seed: 3, title: 'Broken' });
    const whole = await readFile(join(library, 'broken.flac'));
    await writeFile(join(library, 'broken.flac'), whole.subarray(0, 200));
    hub = await startControlHub(broker, { library, extraArgs: ['--upload-max', String(UPLOAD_MAX), '--no-advertise'] });
    base = await hubHttpUrl(hub.proc);
    await hub.proc.waitForLog('library indexed', 60_000);
    const all = await request(base, 'GET', '/api/library');
    for (const e of all.body.entries) entries.set(e.path, e.entryId);
    await startControlNode(broker, hub, { name: 'den', extraArgs: ['--output', 'null'] });
    const node = await waitFor('node den online', async () => (await request(base, 'GET', '/api/nodes')).body.nodes.find((n: any) => n.name === 'den' && n.online), 30_000);
    nodeId = node.nodeId;
  });

  after(cleanup);

  it('serves the state, the page and an OpenAPI description of every route', async () => {
    const state = await request(base, 'GET', '/api/state');
    assert.equal(state.status, 200);
    assert.ok(Array.isArray(state.body.groups) && Array.isArray(state.body.nodes));
    assert.equal(state.body.library.counts.ok, 3);
    assert.equal(state.body.limits.uploadMaxBytes, UPLOAD_MAX);
    const page = await fetch(`${base}/`);
    assert.equal(page.status, 200);
    const html = await page.text();
    assert.match(html, /<div id="app">/);
    const script = /src="\.\/(assets\/[^"]+\.js)"/.exec(html);
    assert.ok(script, 'the page loads its script from the package');
    assert.ok(!/https?:\/\//.test(html.replace(/xmlns='http:\/\/www\.w3\.org\/2000\/svg'/, '')), 'no external URL in the page');
    const js = await fetch(`${base}/${script[1]}`);
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type') ?? '', /javascript/);
    assert.match(js.headers.get('cache-control') ?? '', /immutable/, 'hashed assets are cached for good');
    assert.equal(page.headers.get('cache-control'), 'no-cache', 'the page itself is asked again');
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'self'/);
    assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
    const spec = await request(base, 'GET', '/api/openapi.json');
    assert.equal(spec.status, 200);
    assert.match(spec.body.openapi, /^3\./);
    const paths = spec.body.paths as Record<string, Record<string, unknown>>;
    const expected: [string, string][] = [
      ['get', '/api/state'], ['get', '/api/events'], ['get', '/api/groups'], ['post', '/api/groups'], ['get', '/api/groups/{groupId}'], ['patch', '/api/groups/{groupId}'],
      ['delete', '/api/groups/{groupId}'], ['post', '/api/groups/{groupId}/play'], ['post', '/api/groups/{groupId}/pause'], ['post', '/api/groups/{groupId}/resume'],
      ['post', '/api/groups/{groupId}/stop'], ['post', '/api/groups/{groupId}/next'], ['post', '/api/groups/{groupId}/previous'], ['post', '/api/groups/{groupId}/seek'],
      ['post', '/api/groups/{groupId}/queue'], ['delete', '/api/groups/{groupId}/queue'], ['delete', '/api/groups/{groupId}/queue/{itemId}'], ['post', '/api/groups/{groupId}/queue/{itemId}/move'],
      ['get', '/api/nodes'], ['get', '/api/nodes/{nodeId}'], ['patch', '/api/nodes/{nodeId}'], ['get', '/api/library'], ['get', '/api/library/albums'],
      ['get', '/api/library/entries/{entryId}'], ['get', '/api/library/entries/{entryId}/cover'], ['delete', '/api/library/entries/{entryId}'], ['post', '/api/library/rescan'],
      ['get', '/api/library/uploads'], ['post', '/api/library/uploads'], ['get', '/api/playlists'],
    ];
    for (const [method, path] of expected) assert.ok(paths[path]?.[method], `OpenAPI lacks ${method.toUpperCase()} ${path}`);
    // Request bodies are described from the zod schemas.
    const create = paths['/api/groups'].post as any;
    assert.ok(create.requestBody.content['application/json'].schema.properties.name, 'POST /api/groups documents its body');
    assertError(await request(base, 'GET', '/api/nope'), 404, 'not-found', /GET \/api\/nope/);
  });

  it('browses, searches and filters the library, with failed files and their reason', async () => {
    const ann = await request(base, 'GET', '/api/library?q=ann');
    assert.deepEqual(ann.body.entries.map((e: any) => e.title).sort(), ['Alpha', 'Gamma']);
    const byTitle = await request(base, 'GET', '/api/library?q=BET');
    assert.deepEqual(byTitle.body.entries.map((e: any) => e.path), ['b.flac']);
    const album = await request(base, 'GET', `/api/library?artist=${encodeURIComponent('Ann')}&album=First`);
    assert.equal(album.body.total, 2);
    // LIKE wildcards in a search are literal characters.
    assert.equal((await request(base, 'GET', '/api/library?q=%25')).body.total, 0);
    const failed = await request(base, 'GET', '/api/library?status=failed');
    assert.equal(failed.body.entries.length, 1);
    assert.equal(failed.body.entries[0].path, 'broken.flac');
    assert.ok(failed.body.entries[0].error.length > 5, `a reason: ${failed.body.entries[0].error}`);
    const paged = await request(base, 'GET', '/api/library?limit=1&offset=1');
    assert.equal(paged.body.entries.length, 1);
    assert.equal(paged.body.total, 4);
    const albums = await request(base, 'GET', '/api/library/albums');
    const first = albums.body.albums.find((a: any) => a.album === 'First');
    assert.equal(first.tracks, 2);
    assert.equal(first.coverEntryId, entries.get('covered.mp3'));
    const one = await request(base, 'GET', `/api/library/entries/${entries.get('a.flac')}`);
    assert.equal(one.body.title, 'Alpha');
    assert.equal(one.body.durationMs, 6000);
    const cover = await fetch(`${base}/api/library/entries/${entries.get('covered.mp3')}/cover`);
    assert.equal(cover.status, 200);
    assert.equal(cover.headers.get('content-type'), 'image/png');
    const png = Buffer.from(await cover.arrayBuffer());
    assert.equal(png.subarray(1, 4).toString(), 'PNG');
    assertError(await request(base, 'GET', `/api/library/entries/${entries.get('a.flac')}/cover`), 404, 'not-found', /no cover/);
    assertError(await request(base, 'GET', '/api/library/entries/999999'), 404, 'not-found');
    assertError(await request(base, 'GET', '/api/library?limit=100000'), 400, 'invalid', /limit/);
    assertError(await request(base, 'GET', '/api/library?status=bogus'), 400, 'invalid', /status/);
    assertError(await request(base, 'GET', '/api/library?evil=1'), 400, 'invalid');
    assertError(await request(base, 'GET', '/api/library/entries/abc'), 400, 'invalid', /entryId/);
  });

  let groupId: number;

  it('creates, edits and refuses groups with clear errors', async () => {
    const created = await request(base, 'POST', '/api/groups', { name: 'Den', members: [nodeId] });
    assert.equal(created.status, 201);
    groupId = created.body.groupId;
    assert.deepEqual(created.body.members.map((m: any) => m.nodeId), [nodeId]);
    assertError(await request(base, 'POST', '/api/groups', { name: 'Den' }), 409, 'conflict', /exists already/);
    const wrongType = await request(base, 'POST', '/api/groups', { name: 42 });
    assertError(wrongType, 400, 'invalid');
    assert.equal(wrongType.body.error.issues[0].path, 'body.name');
    assertError(await request(base, 'POST', '/api/groups', { name: 'X', admin: true }), 400, 'invalid', /admin/);
    assertError(await request(base, 'POST', '/api/groups', undefined, { raw: '{"name": "X"' }), 400, 'bad-json');
    assertError(await request(base, 'POST', '/api/groups', { name: 'Ghosts', members: [987654] }), 404, 'not-found', /987654/);
    // A 5 MB body is refused before it is parsed.
    assertError(await postOversized(base, '/api/groups', Buffer.from(JSON.stringify({ name: 'x'.repeat(5_000_000) }))), 413, 'too-large');
    assertError(await request(base, 'POST', '/api/groups', undefined, { raw: 'name=x', contentType: 'application/x-www-form-urlencoded' }), 415, 'unsupported-type');
    const patched = await request(base, 'PATCH', `/api/groups/${groupId}`, { name: 'Den 2', volume: 40, repeat: 'all', shuffle: true });
    assert.equal(patched.status, 200);
    assert.equal(patched.body.name, 'Den 2');
    assert.equal(patched.body.volume, 40);
    assert.equal(patched.body.playback.repeat, 'all');
    assert.equal(patched.body.playback.shuffle, true);
    // A bad member leaves the group as it was.
    assertError(await request(base, 'PATCH', `/api/groups/${groupId}`, { name: 'Changed', members: [nodeId, 55555] }), 404, 'not-found', /55555/);
    assert.equal((await request(base, 'GET', `/api/groups/${groupId}`)).body.name, 'Den 2');
    assertError(await request(base, 'PATCH', `/api/groups/${groupId}`, {}), 400, 'invalid', /at least one/);
    assertError(await request(base, 'PATCH', `/api/groups/${groupId}`, { volume: 101 }), 400, 'invalid', /volume/);
    assertError(await request(base, 'PATCH', `/api/groups/${groupId}`, { repeat: 'forever' }), 400, 'invalid', /repeat/);
    assertError(await request(base, 'GET', '/api/groups/0'), 400, 'invalid', /groupId/);
    assertError(await request(base, 'GET', '/api/groups/777'), 404, 'not-found');
    const other = await request(base, 'POST', '/api/groups', { name: 'Spare' });
    const moved = await request(base, 'PATCH', `/api/groups/${other.body.groupId}`, { members: [nodeId] });
    assert.deepEqual(moved.body.members.map((m: any) => m.nodeId), [nodeId]);
    assert.deepEqual((await request(base, 'GET', `/api/groups/${groupId}`)).body.members, [], 'the node left its old group');
    await request(base, 'PATCH', `/api/groups/${groupId}`, { members: [nodeId], shuffle: false, repeat: 'off' });
    const gone = await request(base, 'DELETE', `/api/groups/${other.body.groupId}`);
    assert.equal(gone.status, 200);
    assertError(await request(base, 'DELETE', `/api/groups/${other.body.groupId}`), 404, 'not-found');
    const list = await request(base, 'GET', '/api/groups');
    assert.deepEqual(list.body.groups.map((g: any) => g.name), ['Den 2']);
  });

  it('plays, pauses, seeks, skips and edits the queue through the group commands', async () => {
    const [a, b, c] = [entries.get('a.flac')!, entries.get('b.flac')!, entries.get('covered.mp3')!];
    const played = await request(base, 'POST', `/api/groups/${groupId}/play`, { entryIds: [a, b] });
    assert.equal(played.status, 200, JSON.stringify(played.body));
    assert.equal(played.body.queue.length, 2);
    await waitFor('playing', async () => (await request(base, 'GET', `/api/groups/${groupId}`)).body.playback.state === 'playing', 20_000);
    const paused = await request(base, 'POST', `/api/groups/${groupId}/pause`);
    assert.equal(paused.body.playback.state, 'paused');
    const resumed = await request(base, 'POST', `/api/groups/${groupId}/resume`);
    assert.equal(resumed.status, 200);
    const sought = await request(base, 'POST', `/api/groups/${groupId}/seek`, { seconds: 2 });
    assert.equal(sought.status, 200);
    assertError(await request(base, 'POST', `/api/groups/${groupId}/seek`, { seconds: -1 }), 400, 'invalid', /seconds/);
    assertError(await request(base, 'POST', `/api/groups/${groupId}/seek`, { seconds: '2' }), 400, 'invalid', /seconds/);
    const next = await request(base, 'POST', `/api/groups/${groupId}/next`);
    assert.equal(next.body.playback.entryId, b);
    const previous = await request(base, 'POST', `/api/groups/${groupId}/previous`);
    assert.equal(previous.status, 200);
    const added = await request(base, 'POST', `/api/groups/${groupId}/queue`, { entryIds: [c] });
    assert.deepEqual(added.body.queue.items.map((i: any) => i.entryId), [a, b, c]);
    const itemC = added.body.queue.items[2].itemId;
    const movedQ = await request(base, 'POST', `/api/groups/${groupId}/queue/${itemC}/move`, { to: 0 });
    assert.deepEqual(movedQ.body.queue.items.map((i: any) => i.entryId), [c, a, b]);
    const removed = await request(base, 'DELETE', `/api/groups/${groupId}/queue/${itemC}`);
    assert.deepEqual(removed.body.queue.items.map((i: any) => i.entryId), [a, b]);
    assertError(await request(base, 'DELETE', `/api/groups/${groupId}/queue/${itemC}`), 404, 'not-found');
    assertError(await request(base, 'POST', `/api/groups/${groupId}/queue`, { entryIds: [entries.get('broken.flac')] }), 404, 'not-found', /not playable/);
    assertError(await request(base, 'POST', `/api/groups/${groupId}/queue`, { entryIds: [] }), 400, 'invalid', /entryIds/);
    assertError(await request(base, 'POST', `/api/groups/${groupId}/play`, { entryIds: ['../../etc/passwd'] }), 400, 'invalid');
    assertError(await request(base, 'POST', '/api/groups/4242/pause'), 404, 'not-found', /4242/);
    const stopped = await request(base, 'POST', `/api/groups/${groupId}/stop`);
    assert.equal(stopped.body.playback.state, 'stopped');
    const cleared = await request(base, 'DELETE', `/api/groups/${groupId}/queue`);
    assert.equal(cleared.body.queue.length, 0);
    // Play without a body plays the queue: an empty queue is refused with the reason.
    const empty = await request(base, 'POST', `/api/groups/${groupId}/play`);
    assert.ok(empty.status === 400 || empty.status === 404 || empty.status === 409, `empty queue play: ${empty.status} ${JSON.stringify(empty.body)}`);
    assert.ok(empty.body.error.message.length > 0);
  });

  it("changes a node's volume, mute and latency; the node hears the volume", async () => {
    const stream = await new EventStream(`${base}/api/events`).open();
    try {
      const res = await request(base, 'PATCH', `/api/nodes/${nodeId}`, { volume: 35, muted: true, latencyMs: 12 });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.volume, 35);
      const member = (await request(base, 'GET', `/api/groups/${groupId}`)).body.members[0];
      assert.equal(member.muted, true);
      assert.equal(member.latencyMs, 12);
      // The node itself reports the volume it was sent, in its heartbeat.
      await waitFor('a heartbeat with volume 35', () => stream.events.find((e) => e.event === 'heartbeat' && e.data.nodeId === nodeId && e.data.volume === 35), 15_000);
    } finally {
      stream.close();
    }
    await request(base, 'PATCH', `/api/nodes/${nodeId}`, { muted: false, latencyMs: 0 });
    assertError(await request(base, 'PATCH', `/api/nodes/${nodeId}`, { volume: 'loud' }), 400, 'invalid', /volume/);
    assertError(await request(base, 'PATCH', `/api/nodes/${nodeId}`, { latencyMs: 99999 }), 400, 'invalid', /latencyMs/);
    assertError(await request(base, 'PATCH', '/api/nodes/31337', { volume: 3 }), 404, 'not-found', /31337/);
    assertError(await request(base, 'GET', '/api/nodes/31337'), 404, 'not-found');
    const list = await request(base, 'GET', '/api/nodes');
    const den = list.body.nodes.find((n: any) => n.nodeId === nodeId);
    assert.equal(den.online, true);
    assert.ok(den.clock, 'clock quality from heartbeats');
    assert.ok(den.downloads, 'download progress from heartbeats');
    assert.equal(typeof den.downloads.chunksWanted, 'number');
  });

  it('stores an upload atomically in the upload folder, where the watcher indexes it', async () => {
    const dir = await tempDir('firefly-upload-src-');
    await makeTrack(join(dir, 'new.flac'), { format: 'flac', seconds: 2, seed: 9, title: 'Uploaded Song', artist: 'Uma' });
    const data = await readFile(join(dir, 'new.flac'));
    const res = await upload(base, [{ name: 'new.flac', data }]);
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.files[0].path, 'Uploads/new.flac');
    assert.ok((await readFile(join(library, 'Uploads', 'new.flac'))).equals(data));
    const indexed = await waitFor('upload indexed', async () => (await request(base, 'GET', '/api/library/uploads')).body.uploads.find((u: any) => u.path === 'Uploads/new.flac' && u.state !== 'indexing'), 30_000);
    assert.equal(indexed.state, 'indexed', JSON.stringify(indexed));
    const found = await request(base, 'GET', '/api/library?q=Uploaded');
    assert.equal(found.body.entries[0].entryId, indexed.entryId);
    assert.equal(found.body.entries[0].artist, 'Uma');
    // The same name again never overwrites.
    assertError(await upload(base, [{ name: 'new.flac', data: Buffer.concat([data, Buffer.from('x')]) }]), 409, 'conflict', /exists already/);
    assert.ok((await readFile(join(library, 'Uploads', 'new.flac'))).equals(data));
  });

  it('refuses hostile uploads and leaves nothing behind', async () => {
    const dir = await tempDir('firefly-upload-src-');
    await makeTrack(join(dir, 't.mp3'), { format: 'mp3', seconds: 1, seed: 4, title: 'Traversal' });
    const mp3 = await readFile(join(dir, 't.mp3'));
    const before = await filesUnder(library);
    // Path parts are dropped: the file lands in the upload folder under its last name.
    for (const name of ['../../escape.mp3', '..\\..\\win.mp3', '/etc/abs.mp3']) {
      const res = await upload(base, [{ name, data: mp3 }]);
      assert.equal(res.status, 201, `${name}: ${JSON.stringify(res.body)}`);
      assert.ok(!res.body.files[0].path.includes('..'));
      assert.match(res.body.files[0].path, /^Uploads\/[^/]+\.mp3$/);
    }
    const beside = (await filesUnder(outer)).filter((f) => !f.startsWith('music/'));
    assert.deepEqual(beside, [], 'nothing written beside the library');
    assertError(await upload(base, [{ name: '..', data: mp3 }]), 400, 'invalid', /nothing left/);
    assertError(await upload(base, [{ name: '.hidden.mp3', data: Buffer.from('not audio') }]), 415, 'unsupported-type', /not audio/);
    assertError(await upload(base, [{ name: 'evil.exe', data: mp3 }]), 415, 'unsupported-type', /not an audio file name/);
    assertError(await upload(base, [{ name: 'fake.mp3', data: Buffer.from('hello, this is text pretending to be an mp3 file') }]), 415, 'unsupported-type', /not audio/);
    assertError(await upload(base, [{ name: 'empty.flac', data: Buffer.alloc(0) }]), 400, 'invalid', /empty/);
    assertError(await upload(base, [{ name: 'huge.flac', data: Buffer.concat([Buffer.from('fLaC'), Buffer.alloc(UPLOAD_MAX + 10)]) }]), 413, 'too-large', /upload limit/);
    assertError(await request(base, 'POST', '/api/library/uploads', { file: 'x' }), 415, 'unsupported-type', /multipart/);
    const after = await filesUnder(library);
    const added = after.filter((f) => !before.includes(f));
    assert.deepEqual(added.sort(), ['Uploads/abs.mp3', 'Uploads/escape.mp3', 'Uploads/win.mp3'], 'only the cleaned names were written, no temporaries left');
    // Several files in one request: each is stored; the first refusal stops the rest and names what was stored.
    const two = await upload(base, [{ name: 'one.mp3', data: mp3 }, { name: 'two.mp3', data: mp3 }]);
    assert.equal(two.status, 201);
    assert.deepEqual(two.body.files.map((f: any) => f.path), ['Uploads/one.mp3', 'Uploads/two.mp3']);
    assertError(await upload(base, [{ name: 'three.mp3', data: mp3 }, { name: 'four.mp3', data: Buffer.from('text') }, { name: 'five.mp3', data: mp3 }]), 415, 'unsupported-type', /four\.mp3.*stored before it: three\.mp3/);
    assert.ok((await filesUnder(library)).includes('Uploads/three.mp3'));
    assert.ok(!(await filesUnder(library)).includes('Uploads/five.mp3'), 'nothing after the refusal');
    // A file with audio's first bytes but nothing playable after them: stored, then the indexer's reason.
    const res = await upload(base, [{ name: 'cut.flac', data: Buffer.concat([Buffer.from('fLaC'), Buffer.alloc(3000, 7)]) }]);
    assert.equal(res.status, 201);
    const failed = await waitFor('cut.flac indexed', async () => (await request(base, 'GET', '/api/library/uploads')).body.uploads.find((u: any) => u.path === 'Uploads/cut.flac' && u.state !== 'indexing'), 30_000);
    assert.equal(failed.state, 'failed');
    assert.ok(failed.error && failed.error.length > 5, `reason: ${failed.error}`);
  });

  it('deletes a file and rescans; the watcher updates the catalogue', async () => {
    const id = entries.get('b.flac')!;
    const del = await request(base, 'DELETE', `/api/library/entries/${id}`);
    assert.equal(del.status, 202);
    await assert.rejects(stat(join(library, 'b.flac')));
    await waitFor('b.flac gone from the catalogue', async () => (await request(base, 'GET', `/api/library/entries/${id}`)).status === 404, 20_000);
    assertError(await request(base, 'DELETE', `/api/library/entries/${id}`), 404, 'not-found');
    const rescan = await request(base, 'POST', '/api/library/rescan');
    assert.equal(rescan.status, 202);
    assert.equal(typeof rescan.body.version, 'number');
  });

  it('shows the playlists retained on hub/playlists; ignores a malformed list', async () => {
    assert.deepEqual((await request(base, 'GET', '/api/playlists')).body.playlists, []);
    const stream = await new EventStream(`${base}/api/events`).open();
    const observer = await new Observer(broker).connect();
    try {
      // What hub/playlists publishes (the playlist module is another part of the hub).
      const a = entries.get('a.flac')!;
      const list = { playlists: [{ playlistId: 3, name: 'Evening', entryCount: 1, durationMs: 6000 }], at: Date.now() };
      await observer.publish(observer.topics.playlists, list, { retain: true, qos: 1 });
      await waitFor('playlists event', () => stream.events.find((e) => e.event === 'playlists' && e.data.playlists[0]?.name === 'Evening'), 10_000);
      assert.deepEqual((await request(base, 'GET', '/api/playlists')).body.playlists, list.playlists);
      // A malformed publication is not shown.
      await observer.publish(observer.topics.playlists, { playlists: 'nope' }, { retain: true, qos: 1 });
      await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual((await request(base, 'GET', '/api/playlists')).body.playlists, list.playlists);
      await observer.publish(observer.topics.playlists, '', { retain: true, qos: 1 });
    } finally {
      stream.close();
      await observer.close();
    }
  });

  it('streams live updates: a snapshot, then what the hub publishes', async () => {
    const stream = await new EventStream(`${base}/api/events`).open();
    try {
      const snapshot = await waitFor('snapshot', () => stream.events.find((e) => e.event === 'snapshot'), 10_000);
      assert.ok(snapshot.data.groups.some((g: any) => g.groupId === groupId));
      await request(base, 'PATCH', `/api/groups/${groupId}`, { volume: 77 });
      await waitFor('groups event with volume 77', () => stream.events.find((e) => e.event === 'groups' && e.data.groups.some((g: any) => g.groupId === groupId && g.volume === 77)), 10_000);
      await waitFor('a heartbeat event', () => stream.events.find((e) => e.event === 'heartbeat' && e.data.nodeId === nodeId && e.data.clock), 10_000);
      const dir = await tempDir('firefly-upload-src-');
      await makeTrack(join(dir, 'live.flac'), { format: 'flac', seconds: 1, seed: 11, title: 'Live' });
      await upload(base, [{ name: 'live.flac', data: await readFile(join(dir, 'live.flac')) }]);
      await waitFor('upload event: indexed', () => stream.events.find((e) => e.event === 'upload' && e.data.name === 'live.flac' && e.data.state === 'indexed'), 30_000);
      await waitFor('library event with the new version', () => stream.events.find((e) => e.event === 'library' && e.data.counts.live >= 5), 10_000);
    } finally {
      stream.close();
    }
  });
});
