import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openHubDb } from '../hub/hub-db.js';
import { PlayQueue, SESSION_SCHEMA } from '../hub/playback/play-queue.js';
import { DEFAULT_COORDINATOR, SyncCoordinator, type CoordinatorContext, type MemberStarts, type TrackInfo } from '../hub/playback/sync-coordinator.js';
import { createLogger } from '../src/log.js';
import type { NodeCommand } from '../src/protocol/schemas.js';
import type { Db } from '../src/storage/sqlite.js';

/**
 * The start decision of a group's coordinator, on a real hub database: when the hub
 * waits for every member to be ready (the barrier) and when it starts at once, with the
 * start sent together with the prepare.
 */
describe('SyncCoordinator: starting at once', () => {
  let dir: string;
  let db: Db;
  let groupSeq = 0;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'firefly-coordinator-'));
    db = openHubDb(dir);
    db.exec(SESSION_SCHEMA);
  });
  after(async () => {
    db.close();
    await rm(dir, { recursive: true, force: true });
  });

  const track: TrackInfo = { entryId: 7, contentId: 'ab'.repeat(32), format: 'flac', durationMs: 60_000, title: 'Seven' };

  /** A coordinator for a new group of `members`, with a hub clock the test moves by hand. */
  function rig(members: number[], holds: (nodeId: number) => boolean, after: TrackInfo[] = []) {
    const groupId = ++groupSeq;
    db.prepare('INSERT INTO groups (id, name, created_at) VALUES (?, ?, ?)').run(groupId, `g${groupId}`, Date.now());
    const queue = new PlayQueue(db, groupId);
    queue.add([track.entryId, ...after.map((t) => t.entryId)]);
    const sent: { nodeId: number; command: NodeCommand }[] = [];
    const clock = { now: 10_000 };
    /** The hub's map of each member's cached starts (Playback keeps it; the coordinator reads it). */
    const starts = new Map<number, MemberStarts>();
    const ctx: CoordinatorContext = {
      now: () => clock.now,
      track: (entryId) => [track, ...after].find((t) => t.entryId === entryId),
      onlineMembers: () => members,
      send: (nodeId, command) => sent.push({ nodeId, command }),
      sendOutput: () => undefined,
      holds: (nodeId, contentId) => [track, ...after].some((t) => t.contentId === contentId) && holds(nodeId),
      changed: () => undefined,
      starts: (nodeId) => starts.get(nodeId),
    };
    const coordinator = new SyncCoordinator(queue, ctx, DEFAULT_COORDINATOR, createLogger('test', 'silent'));
    const of = (kind: NodeCommand['command']) => sent.filter((s) => s.command.command === kind);
    /** Plays the queue; members say ready 10 ms later (with a 50 ms output delay). Ends with a pause or stop. */
    const play = (end: 'stop' | 'pause' = 'stop') => {
      sent.length = 0;
      coordinator.play();
      const prepare = of('prepare')[0]?.command as Extract<NodeCommand, { command: 'prepare' }>;
      const startedAtOnce = of('start').length;
      const t0 = clock.now;
      clock.now = t0 + 10;
      for (const nodeId of members) coordinator.onPlayerEvent(nodeId, { event: 'ready', session: prepare.session, outputDelayMs: 50 });
      const start = of('start')[0]?.command as Extract<NodeCommand, { command: 'start' }> | undefined;
      clock.now += 2000;
      if (end === 'stop') coordinator.stop();
      else coordinator.pause();
      clock.now += 500;
      return { startedAtOnce, start, preparedAt: t0, positionMs: prepare.positionMs };
    };
    /** A member reports the decodes it keeps going (as a node does after a stop or pause). */
    const kept = (nodeId: number, fromMs: number, toMs: number, entryId = track.entryId, outputDelayMs = 50) =>
      coordinator.onPlayerEvent(nodeId, { event: 'kept', spots: [{ entryId, contentId: track.contentId, fromMs, toMs }], outputDelayMs });
    /** A member reports whose starts it keeps decoded (as a node does once a track played from its start). */
    const intros = (nodeId: number, contentIds: string[], outputDelayMs = 50) => starts.set(nodeId, { contentIds: new Set(contentIds), outputDelayMs });
    const cues = () => of('cue').map((c) => ({ nodeId: c.nodeId, ...(c.command as Extract<NodeCommand, { command: 'cue' }>) }));
    const clear = () => (sent.length = 0);
    return { coordinator, play, kept, intros, starts, cues, clear, sent, of, clock };
  }

  it('waits for the barrier on a first play: nothing is kept decoded yet', () => {
    const { coordinator, play } = rig([1, 2], () => true);
    const r = play();
    assert.equal(r.startedAtOnce, 0, 'no start before the members said ready');
    assert.ok(r.start, 'started once all were ready');
    assert.equal(r.start.atHubMs, r.preparedAt + 10 + DEFAULT_COORDINATOR.startMarginMs);
    coordinator.close();
  });

  it('waits for the barrier on a second play when the members kept nothing (they were merely quick last time)', () => {
    const { coordinator, play } = rig([1, 2, 3], () => true);
    play();
    assert.equal(play().startedAtOnce, 0);
    coordinator.close();
  });

  it('starts at once, with the prepare, when every member keeps the track decoded at the position', () => {
    const { coordinator, play, kept } = rig([1, 2, 3], () => true);
    play();
    for (const n of [1, 2, 3]) kept(n, 0, 2900, track.entryId, n === 2 ? 80 : 50);
    const r = play();
    assert.equal(r.startedAtOnce, 3, 'a start for every member went out with the prepares');
    assert.equal(r.start!.atHubMs, r.preparedAt + Math.max(DEFAULT_COORDINATOR.startAtOnceMarginMs, 80 + DEFAULT_COORDINATOR.startSlackMs), 'the start instant counts from the prepare, and covers the largest output delay');
    // The prepare ended what they kept: the next play waits for the barrier again.
    assert.equal(play().startedAtOnce, 0);
    coordinator.close();
  });

  it('a resume starts at once when the kept decodes cover the paused position, and waits when they do not', () => {
    const { coordinator, play, kept } = rig([1, 2], () => true);
    play('pause');
    const paused = coordinator.positionMs();
    assert.ok(paused > 1000, `paused ${paused} ms in`);
    for (const n of [1, 2]) kept(n, paused - 1000, paused + 1900);
    assert.equal(play('pause').startedAtOnce, 2, 'resumed at once');
    const later = coordinator.positionMs();
    kept(1, later - 1000, later + 1900);
    kept(2, 0, 2900); // member 2 kept only the start of the track
    assert.equal(play().startedAtOnce, 0, 'member 2 does not cover the paused position');
    coordinator.close();
  });

  it('waits for the barrier when a member keeps another track, no longer holds the track, or did not report', () => {
    const a = rig([1, 2], () => true);
    a.play();
    a.kept(1, 0, 2900);
    a.kept(2, 0, 2900, track.entryId + 1);
    assert.equal(a.play().startedAtOnce, 0, 'another track');
    a.coordinator.close();
    const b = rig([1, 2], (nodeId) => nodeId !== 2);
    b.play();
    b.kept(1, 0, 2900);
    b.kept(2, 0, 2900);
    assert.equal(b.play().startedAtOnce, 0, 'member 2 does not hold the track');
    b.coordinator.close();
    const c = rig([1, 2], () => true);
    c.play();
    c.kept(1, 0, 2900);
    assert.equal(c.play().startedAtOnce, 0, 'member 2 said nothing');
    c.coordinator.close();
  });

  it('forgets what a member kept when it comes (back) online, and ignores reports while the group plays', () => {
    const { coordinator, play, kept } = rig([1, 2], () => true);
    play();
    kept(1, 0, 2900);
    kept(2, 0, 2900);
    coordinator.memberOnline(2);
    assert.equal(play().startedAtOnce, 0, 'member 2 restarted: nothing kept');
    // A report that arrives while a session plays (a stale one, from before its prepare) does not count.
    kept(1, 0, 2900);
    coordinator.play();
    kept(2, 0, 2900);
    coordinator.stop();
    kept(1, 0, 2900);
    assert.equal(play().startedAtOnce, 0, 'member 2 reported only while playing');
    coordinator.close();
  });

  it('between sessions, cues every member with what a play would start, unless it reported keeping that already', () => {
    const { coordinator, play, kept, cues, clear } = rig([1, 2], () => true);
    play('pause');
    const paused = coordinator.positionMs();
    assert.deepEqual(cues().map((c) => [c.nodeId, c.track.entryId, c.positionMs]), [[1, track.entryId, paused], [2, track.entryId, paused]], 'the pause cues the paused position');
    kept(1, paused - 1000, paused + 1900);
    clear();
    coordinator.seek(30);
    assert.deepEqual(cues().map((c) => [c.nodeId, c.positionMs]), [[1, 30_000], [2, 30_000]], 'a seek while paused cues the new position');
    kept(1, 29_000, 31_900);
    kept(2, 29_000, 31_900);
    clear();
    coordinator.queueChanged();
    assert.equal(cues().length, 0, 'nothing to cue: both keep it');
    coordinator.memberOnline(2);
    assert.deepEqual(cues().map((c) => c.nodeId), [2], 'a member that came (back) online is cued; the other still keeps it');
    kept(2, 29_000, 31_900);
    clear();
    assert.equal(play().startedAtOnce, 2, 'the resume starts at once');
    coordinator.close();
  });

  it('a cue names the tracks after it; a member is cued again until it has their starts too', () => {
    const eight: TrackInfo = { entryId: 8, contentId: 'ef'.repeat(32), format: 'ogg', durationMs: 30_000, title: 'Eight' };
    const { coordinator, play, kept, intros, cues, clear } = rig([1, 2], () => true, [eight]);
    play('pause');
    const paused = coordinator.positionMs();
    assert.deepEqual(cues().map((c) => [c.nodeId, c.upcoming?.map((u) => u.entryId)]), [[1, [8]], [2, [8]]], 'the pause names what follows');
    kept(1, paused - 1000, paused + 1900);
    kept(2, paused - 1000, paused + 1900);
    intros(2, [eight.contentId]);
    clear();
    coordinator.queueChanged();
    assert.deepEqual(cues().map((c) => c.nodeId), [1], 'member 1 keeps the track but has not reported the start of 8');
    intros(1, [eight.contentId]);
    clear();
    coordinator.queueChanged();
    assert.equal(cues().length, 0, 'both keep the track and have the start of what follows');
    coordinator.close();
  });

  it('a play from the start goes at once when every member has the start decoded, across sessions; any other position waits', () => {
    const { coordinator, play, intros, starts, clock, of, sent } = rig([1, 2, 3], () => true);
    play();
    intros(1, [track.contentId]);
    intros(2, [track.contentId], 90);
    assert.equal(play().startedAtOnce, 0, 'member 3 did not report it');
    intros(3, ['cd'.repeat(32), track.contentId]);
    const r = play();
    assert.equal(r.startedAtOnce, 3, 'every member has the start');
    assert.equal(r.start!.atHubMs, r.preparedAt + Math.max(DEFAULT_COORDINATOR.startAtOnceMarginMs, 90 + DEFAULT_COORDINATOR.startSlackMs), 'the margin covers the largest output delay reported');
    // A prepare does not end a cached start: a seek back to the start while it plays goes at once too.
    coordinator.play();
    clock.now += 1000;
    sent.length = 0;
    coordinator.seek(0);
    assert.equal(of('start').length, 3, 'the seek to 0 while playing started at once');
    sent.length = 0;
    coordinator.seek(20);
    assert.equal(of('start').length, 0, 'a seek elsewhere waits for the barrier');
    coordinator.stop();
    // Read from the hub's map at each play: once member 1's starts are gone from it (it restarted), the barrier.
    assert.equal(play().startedAtOnce, 3, 'still every member');
    starts.delete(1);
    assert.equal(play().startedAtOnce, 0, 'member 1 has no starts reported any more');
    coordinator.close();
  });

  it('sends no cue while the group plays, and none for a queue with nothing playable', () => {
    const { coordinator, cues, clear } = rig([1, 2], () => true);
    coordinator.play();
    clear();
    coordinator.queueChanged();
    coordinator.memberOnline(2);
    assert.equal(cues().length, 0);
    coordinator.close();
  });
});
