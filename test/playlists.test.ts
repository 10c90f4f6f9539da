/**
 * Saved playlists on a real hub process with its embedded broker and a real library:
 * the playlist/* commands, their refusals (each with one error event and state left
 * untouched), `play {playlistId}`, the retained hub/playlists topic, `firefly ctl`, and
 * that playlists survive a hub restart (SQLite, published again at start). The retained
 * list carries no entries (they come in pages from playlist/get), so a list of full
 * 10,000-entry playlists stays under the 64 KiB payload limit and `firefly ctl` reads it.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MAX_PAYLOAD_BYTES, PLAYLIST_PAGE_ENTRIES, playlistListSchema, type CommandReply, type ErrorEvent, type GroupState, type Playlist, type PlaylistList, type PlaylistPage, type PlaylistSummary } from '../src/protocol/schemas.js';
import type { CommandName } from '../src/protocol/topics.js';
import { makeTrack } from './helpers/audio.js';
import { ctl, embeddedBroker, Observer, startControlHub, type BrokerAccess, type HubProcess } from './helpers/control-plane.js';
import { cleanup, ctlLibrary, tempDir, waitFor } from './helpers/processes.js';

describe('saved playlists (real hub, embedded broker)', () => {
  let broker: BrokerAccess;
  let hub: HubProcess;
  let observer: Observer;
  let library: string;
  const ids: Record<string, number> = {};

  async function send(name: CommandName, body: Record<string, unknown>): Promise<CommandReply> {
    const id = randomBytes(4).toString('hex');
    const replyTo = observer.topics.reply(`pl-${id}`);
    await observer.subscribe(replyTo);
    await observer.publish(observer.topics.command(name), { ...body, id, replyTo });
    return observer.waitFor<CommandReply>(`reply to ${name}`, replyTo);
  }

  async function ok<T>(name: CommandName, body: Record<string, unknown>): Promise<T> {
    const reply = await send(name, body);
    assert.ok(reply.ok, `${name} refused: ${reply.error?.message}`);
    return reply.result as T;
  }

  /** A refusal: the reply's code, and exactly one error event naming the request. */
  async function refused(name: CommandName, body: Record<string, unknown>, code: string, text: RegExp): Promise<void> {
    const before = listNow();
    const reply = await send(name, body);
    assert.equal(reply.ok, false, `${name} ${JSON.stringify(body)} should be refused`);
    assert.equal(reply.error?.code, code, reply.error?.message ?? "no error in the reply");
    assert.match(reply.error!.message, text);
    const events = observer.json<ErrorEvent>(observer.topics.errors).filter((e) => e.id === reply.id);
    assert.equal(events.length, 1, 'one error event per refusal');
    assert.equal(events[0].code, code);
    // Nothing changed: no new list was published with different content.
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(stripAt(listNow()), stripAt(before));
  }

  function listNow(): PlaylistList | undefined {
    return observer.last<PlaylistList>(observer.topics.playlists);
  }

  function stripAt(list: PlaylistList | undefined): PlaylistSummary[] | undefined {
    return list?.playlists;
  }

  function waitList(what: string, match: (l: PlaylistList) => boolean): Promise<PlaylistList> {
    return observer.waitFor<PlaylistList>(what, observer.topics.playlists, match, 15_000);
  }

  /** Every entry of a playlist, page by page, as a reader of the list gets them. */
  async function entriesOf(playlistId: number): Promise<number[]> {
    const out: number[] = [];
    for (;;) {
      const page = await ok<PlaylistPage>('playlist/get', { playlistId, offset: out.length });
      assert.equal(page.offset, out.length);
      out.push(...page.entryIds);
      if (page.entryIds.length === 0 || out.length >= page.entryCount) return out;
    }
  }

  before(async () => {
    broker = await embeddedBroker();
    library = await tempDir('firefly-music-');
    await makeTrack(join(library, 'a.flac'), { format: 'flac', seconds: 4, seed: 1, title: 'Alpha' });
    await makeTrack(join(library, 'b.flac'), { format: 'flac', seconds: 3, seed: 2, title: 'Beta' });
    await makeTrack(join(library, 'c.ogg'), { format: 'ogg', seconds: 2, seed: 3, title: 'Gamma' });
    // Playlists need no Home Assistant bridge: this hub runs without it.
    hub = await startControlHub(broker, { library, extraArgs: ['--no-home-assistant'] });
    await hub.proc.waitForLog('library indexed', 60_000);
    for (const e of await ctlLibrary(hub.grpc)) ids[e.path] = e.id;
    assert.equal(Object.keys(ids).length, 3);
    observer = await new Observer(broker).connect();
    await observer.subscribe(observer.topics.playlists, observer.topics.errors, observer.topics.allGroupStates);
  });

  after(async () => {
    await observer?.close();
    await hub?.proc.stop();
    await cleanup();
  });

  it('with --no-home-assistant: no discovery, and the plain …/set topics are not served', async () => {
    const probe = await new Observer(broker).connect();
    try {
      await probe.subscribe('homeassistant/#', probe.topics.groupSet('+'), probe.topics.errors);
      await probe.publish(probe.topics.groupSet(1), 'play');
      await new Promise((r) => setTimeout(r, 1000));
      assert.deepEqual(probe.messages.filter((m) => m.topic.startsWith('homeassistant/') || m.topic === probe.topics.errors).map((m) => m.topic), []);
      assert.equal(hub.proc.logs.filter((l) => l.msg === 'Home Assistant discovery published').length, 0);
    } finally {
      await probe.close();
    }
  });

  it('publishes an empty retained list at start', async () => {
    const list = await waitList('the retained playlist list', () => true);
    assert.deepEqual(list.playlists, []);
  });

  it('creates, changes and refuses with clear errors', async () => {
    const [a, b, c] = [ids['a.flac'], ids['b.flac'], ids['c.ogg']];
    const created = await ok<PlaylistPage>('playlist/create', { name: 'Evening', entryIds: [a, b] });
    assert.deepEqual([created.entryIds, created.entryCount, created.offset], [[a, b], 2, 0], 'the reply is the first page');
    // 4 s + 3 s of audio, as the tags say (encoders round a little).
    assert.ok(Math.abs(created.durationMs - 7000) < 200, `durationMs ${created.durationMs}`);
    const listed = await waitList('Evening in the list', (l) => l.playlists.some((p) => p.name === 'Evening' && p.entryCount === 2));
    assert.deepEqual(Object.keys(listed.playlists[0]).sort(), ['durationMs', 'entryCount', 'name', 'playlistId'], 'the list carries no entries');
    assert.deepEqual(await entriesOf(created.playlistId), [a, b]);
    await refused('playlist/get', { playlistId: 4242 }, 'not-found', /no playlist with id 4242/);
    await refused('playlist/get', { playlistId: created.playlistId, limit: PLAYLIST_PAGE_ENTRIES + 1 }, 'invalid', /limit/);
    ids.evening = created.playlistId;

    await refused('playlist/create', { name: 'evening' }, 'conflict', /exists already/);
    await refused('playlist/create', { name: 'Broken', entryIds: [a, 9999] }, 'not-found', /entry 9999/);
    await refused('playlist/create', { name: '' }, 'invalid', /name/);
    await refused('playlist/add', { playlistId: 4242, entryIds: [a] }, 'not-found', /no playlist with id 4242/);
    await refused('playlist/add', { playlistId: created.playlistId, entryIds: [a], at: 5 }, 'invalid', /insert at 0 to 2/);
    await refused('playlist/remove', { playlistId: created.playlistId, index: 2 }, 'not-found', /no entry at index 2/);
    await refused('playlist/rename', { playlistId: 4242, name: 'X' }, 'not-found', /4242/);
    await refused('playlist/delete', { playlistId: 4242 }, 'not-found', /4242/);
    await refused('playlist/add', { playlistId: created.playlistId, entryIds: [] }, 'invalid', /entryIds/);

    const inserted = await ok<PlaylistPage>('playlist/add', { playlistId: created.playlistId, entryIds: [c, c], at: 1 });
    assert.deepEqual(inserted.entryIds, [a, c, c, b]);
    const removed = await ok<PlaylistPage>('playlist/remove', { playlistId: created.playlistId, index: 2 });
    assert.deepEqual(removed.entryIds, [a, c, b]);
    await ok('playlist/create', { name: 'Morning' });
    await refused('playlist/rename', { playlistId: created.playlistId, name: 'MORNING' }, 'conflict', /exists already/);
    const renamed = await ok<PlaylistPage>('playlist/rename', { playlistId: created.playlistId, name: 'Evening Jazz' });
    assert.equal(renamed.name, 'Evening Jazz');
    await waitList('the final list', (l) => l.playlists.map((p) => `${p.name}:${p.entryCount}`).join('|') === 'Evening Jazz:3|Morning:0');
    assert.deepEqual(await entriesOf(created.playlistId), [a, c, b]);
  });

  it('plays a playlist in a group: its entries become the queue', async () => {
    const group = await ok<GroupState>('group/create', { name: 'Kitchen' });
    ids.kitchen = group.groupId;
    const played = await ok<GroupState>('play', { groupId: group.groupId, playlistId: ids.evening });
    assert.deepEqual(
      played.queue.items.map((i) => i.entryId),
      [ids['a.flac'], ids['c.ogg'], ids['b.flac']],
    );
    assert.equal(played.playback.entryId, ids['a.flac']);
    const morning = listNow()!.playlists.find((p) => p.name === 'Morning')!;
    await refused('play', { groupId: group.groupId, playlistId: morning.playlistId }, 'invalid', /is empty/);
    await refused('play', { groupId: group.groupId, playlistId: 4242 }, 'not-found', /no playlist 4242/);
    await refused('play', { groupId: group.groupId, playlistId: ids.evening, entryId: ids['a.flac'] }, 'invalid', /not both/);
  });

  it('firefly ctl lists, creates and deletes playlists', async () => {
    const out = await ctl(broker, ['playlists']);
    assert.match(out, /Evening Jazz\s+3 entries/);
    const made = await ctl(broker, ['playlist', 'create', 'Party', String(ids['b.flac'])]);
    assert.match(made, /Party\s+1 entries/);
    await ctl(broker, ['playlist', 'add', 'party', String(ids['a.flac'])]);
    await waitList('Party with two entries', (l) => l.playlists.some((p) => p.name === 'Party' && p.entryCount === 2));
    const shown = await ctl(broker, ['playlist', 'show', 'party']);
    assert.match(shown, new RegExp(`Party\\s+2 entries.*\\n${ids['b.flac']} ${ids['a.flac']}\\n`));
    await ctl(broker, ['playlist', 'delete', 'Party']);
    await waitList('Party gone', (l) => !l.playlists.some((p) => p.name === 'Party'));
    await assert.rejects(ctl(broker, ['playlist', 'delete', 'Nope']), /no playlist "Nope"/);
  });

  it('reads a list from an older hub (entries, no count)', () => {
    const old = playlistListSchema.parse({ playlists: [{ playlistId: 3, name: 'Old', entryIds: [1, 2, 2], durationMs: 5 }], at: 1 });
    assert.deepEqual(old.playlists[0], { playlistId: 3, name: 'Old', entryCount: 3, durationMs: 5 });
    assert.equal(playlistListSchema.safeParse({ playlists: [{ playlistId: 3, name: 'Bad', durationMs: 5 }], at: 1 }).success, false, 'neither a count nor entries');
  });

  it('keeps the retained list under the payload limit: full 10,000-entry playlists, and as many playlists as fit', async () => {
    const pool = [ids['a.flac'], ids['b.flac'], ids['c.ogg']];
    const big = Array.from({ length: 10_000 }, (_, i) => pool[i % 3]);
    const names: string[] = [];
    for (let k = 0; k < 3; k++) {
      const page = await ok<PlaylistPage>('playlist/create', { name: `Marathon ${k}`, entryIds: big });
      assert.deepEqual([page.entryCount, page.entryIds.length], [10_000, PLAYLIST_PAGE_ENTRIES], 'the reply holds the first page only');
      names.push(page.name);
      if (k === 0) {
        assert.deepEqual(await entriesOf(page.playlistId), big, 'all 10,000 entries, in order, in pages');
        const tail = await ok<PlaylistPage>('playlist/get', { playlistId: page.playlistId, offset: 9_998, limit: 50 });
        assert.deepEqual([tail.offset, tail.entryIds], [9_998, big.slice(9_998)]);
        const past = await ok<PlaylistPage>('playlist/get', { playlistId: page.playlistId, offset: 10_000 });
        assert.deepEqual(past.entryIds, []);
        await refused('playlist/add', { playlistId: page.playlistId, entryIds: [pool[0]] }, 'invalid', /limit is 10000/);
        // Whole over HTTP (no payload limit there).
        const port = Number((await hub.proc.waitForLog('HTTP listening')).port);
        const r = await fetch(`http://127.0.0.1:${port}/api/playlists/${page.playlistId}`);
        const whole = (await r.json()) as Playlist & { entryCount: number };
        assert.deepEqual([r.status, whole.entryCount, whole.entryIds.length, whole.entryIds.slice(-3)], [200, 10_000, 10_000, big.slice(-3)]);
        assert.equal((await fetch(`http://127.0.0.1:${port}/api/playlists/4242`)).status, 404);
      }
    }
    // Playlists with the longest names until the hub says the list is full.
    // Sent 25 at a time (the hub handles them in order): one by one takes minutes.
    let refusal: CommandReply | undefined;
    for (let k = 0; k < 2000 && !refusal; k += 25) {
      const replies = await Promise.all(Array.from({ length: 25 }, (_, i) => send('playlist/create', { name: `${String(k + i).padStart(4, '0')} ${'x'.repeat(59)}` })));
      refusal = replies.find((r) => !r.ok);
    }
    assert.ok(refusal, 'the hub refuses a playlist once the list would not fit');
    assert.equal(refusal.error?.code, 'invalid');
    assert.match(refusal.error!.message, /over the \d+-byte budget of its retained topic \(\d+ playlists\)/);
    const full = await waitList('the full list', (l) => l.playlists.length > 400);
    const raw = observer.messages.filter((m) => m.topic === observer.topics.playlists).at(-1)!.payload;
    const count = full.playlists.length;
    console.log(`retained playlist list: ${count} playlists (3 of 10,000 entries), ${raw.length} bytes of ${MAX_PAYLOAD_BYTES}`);
    assert.ok(raw.length < MAX_PAYLOAD_BYTES, `${raw.length} bytes`);
    // firefly ctl reads it (it refused a list over the limit before).
    const out = await ctl(broker, ['playlists']);
    assert.match(out, /Marathon 2\s+10000 entries/);
    assert.equal(out.trim().split('\n').length, count);
    const extra = full.playlists.filter((x) => /^\d{4} x+$/.test(x.name) || names.includes(x.name));
    for (let i = 0; i < extra.length; i += 25) await Promise.all(extra.slice(i, i + 25).map((p) => ok('playlist/delete', { playlistId: p.playlistId })));
    await waitList('the extra playlists deleted', (l) => l.playlists.length === count - extra.length);
  });

  it('keeps playlists across a hub restart', async () => {
    const before = listNow()!.playlists;
    await hub.proc.stop();
    await observer.close();
    hub = await startControlHub(broker, { library, dataDir: hub.dataDir });
    observer = await new Observer(broker).connect();
    await observer.subscribe(observer.topics.playlists);
    const list = await waitList('the list after restart', (l) => l.playlists.length > 0);
    assert.deepEqual(list.playlists, before);
    await waitFor('the deleted playlist to stay deleted', () => !list.playlists.some((p) => p.name === 'Party'));
  });
});
