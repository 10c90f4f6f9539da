/**
 * Saved playlists on a real hub process with its embedded broker and a real library:
 * the playlist/* commands, their refusals (each with one error event and state left
 * untouched), `play {playlistId}`, the retained hub/playlists topic, `firefly ctl`, and
 * that playlists survive a hub restart (SQLite, published again at start).
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { CommandReply, ErrorEvent, GroupState, Playlist, PlaylistList } from '../src/protocol/schemas.js';
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

  function stripAt(list: PlaylistList | undefined): Playlist[] | undefined {
    return list?.playlists;
  }

  function waitList(what: string, match: (l: PlaylistList) => boolean): Promise<PlaylistList> {
    return observer.waitFor<PlaylistList>(what, observer.topics.playlists, match, 15_000);
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
    const created = await ok<Playlist>('playlist/create', { name: 'Evening', entryIds: [a, b] });
    assert.deepEqual(created.entryIds, [a, b]);
    // 4 s + 3 s of audio, as the tags say (encoders round a little).
    assert.ok(Math.abs(created.durationMs - 7000) < 200, `durationMs ${created.durationMs}`);
    await waitList('Evening in the list', (l) => l.playlists.some((p) => p.name === 'Evening' && p.entryIds.join() === [a, b].join()));
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

    const inserted = await ok<Playlist>('playlist/add', { playlistId: created.playlistId, entryIds: [c, c], at: 1 });
    assert.deepEqual(inserted.entryIds, [a, c, c, b]);
    const removed = await ok<Playlist>('playlist/remove', { playlistId: created.playlistId, index: 2 });
    assert.deepEqual(removed.entryIds, [a, c, b]);
    await ok('playlist/create', { name: 'Morning' });
    await refused('playlist/rename', { playlistId: created.playlistId, name: 'MORNING' }, 'conflict', /exists already/);
    const renamed = await ok<Playlist>('playlist/rename', { playlistId: created.playlistId, name: 'Evening Jazz' });
    assert.equal(renamed.name, 'Evening Jazz');
    await waitList('the final list', (l) => l.playlists.map((p) => `${p.name}:${p.entryIds.join(',')}`).join('|') === `Evening Jazz:${a},${c},${b}|Morning:`);
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
    await waitList('Party with two entries', (l) => l.playlists.some((p) => p.name === 'Party' && p.entryIds.join() === `${ids['b.flac']},${ids['a.flac']}`));
    await ctl(broker, ['playlist', 'delete', 'Party']);
    await waitList('Party gone', (l) => !l.playlists.some((p) => p.name === 'Party'));
    await assert.rejects(ctl(broker, ['playlist', 'delete', 'Nope']), /no playlist "Nope"/);
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
