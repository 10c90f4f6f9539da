import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openHubDb } from '../hub/hub-db.js';
import { PlayQueue, SESSION_SCHEMA } from '../hub/playback/play-queue.js';
import { DEFAULT_COORDINATOR, SyncCoordinator, type CoordinatorContext, type TrackInfo } from '../hub/playback/sync-coordinator.js';
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
  function rig(members: number[], holds: (nodeId: number) => boolean) {
    const groupId = ++groupSeq;
    db.prepare('INSERT INTO groups (id, name, created_at) VALUES (?, ?, ?)').run(groupId, `g${groupId}`, Date.now());
    const queue = new PlayQueue(db, groupId);
    queue.add([track.entryId]);
    const sent: { nodeId: number; command: NodeCommand }[] = [];
    const clock = { now: 10_000 };
    const ctx: CoordinatorContext = {
      now: () => clock.now,
      track: (entryId) => (entryId === track.entryId ? track : undefined),
      onlineMembers: () => members,
      send: (nodeId, command) => sent.push({ nodeId, command }),
      sendOutput: () => undefined,
      holds: (nodeId, contentId) => contentId === track.contentId && holds(nodeId),
      changed: () => undefined,
    };
    const coordinator = new SyncCoordinator(queue, ctx, DEFAULT_COORDINATOR, createLogger('test', 'silent'));
    const of = (kind: NodeCommand['command']) => sent.filter((s) => s.command.command === kind);
    /** Plays the queue; members say ready `readyAfterMs` later (with a 50 ms output delay). */
    const play = (readyAfterMs: number | ((nodeId: number) => number)) => {
      sent.length = 0;
      coordinator.play();
      const prepare = of('prepare')[0]?.command as Extract<NodeCommand, { command: 'prepare' }>;
      const startedAtOnce = of('start').length;
      const t0 = clock.now;
      for (const nodeId of members) {
        clock.now = t0 + (typeof readyAfterMs === 'number' ? readyAfterMs : readyAfterMs(nodeId));
        coordinator.onPlayerEvent(nodeId, { event: 'ready', session: prepare.session, outputDelayMs: 50 });
      }
      const start = of('start')[0]?.command as Extract<NodeCommand, { command: 'start' }> | undefined;
      coordinator.stop();
      clock.now += 1000;
      return { startedAtOnce, start, preparedAt: t0 };
    };
    return { coordinator, play };
  }

  it('waits for the barrier on a first play: nothing is known of the members yet', () => {
    const { coordinator, play } = rig([1, 2], () => true);
    const r = play(10);
    assert.equal(r.startedAtOnce, 0, 'no start before the members said ready');
    assert.ok(r.start, 'started once all were ready');
    assert.equal(r.start.atHubMs, r.preparedAt + 10 + DEFAULT_COORDINATOR.startMarginMs);
    coordinator.close();
  });

  it('starts at once, with the prepare, when every member holds the track and was ready quickly last time', () => {
    const { coordinator, play } = rig([1, 2, 3], () => true);
    play(10);
    const r = play(10);
    assert.equal(r.startedAtOnce, 3, 'a start for every member went out with the prepares');
    assert.equal(r.start!.atHubMs, r.preparedAt + Math.max(DEFAULT_COORDINATOR.startAtOnceMarginMs, 50 + DEFAULT_COORDINATOR.startSlackMs), 'the start instant counts from the prepare, and covers the output delay');
    coordinator.close();
  });

  it('waits for the barrier when a member does not hold the whole track', () => {
    const { coordinator, play } = rig([1, 2], (nodeId) => nodeId !== 2);
    play(10);
    assert.equal(play(10).startedAtOnce, 0);
    coordinator.close();
  });

  it('waits for the barrier after a member was slow to be ready, and starts at once again once it was quick', () => {
    const { coordinator, play } = rig([1, 2], () => true);
    const slow = (nodeId: number) => (nodeId === 2 ? DEFAULT_COORDINATOR.startAtOnceReadyMs + 40 : 5);
    // The first prepare since a member came online (loading code and decoder) does not count as slow.
    play(slow);
    assert.equal(play(slow).startedAtOnce, 2, 'the first ready was slow, but it was the first');
    assert.equal(play(5).startedAtOnce, 0, 'member 2 was slow last time');
    assert.equal(play(5).startedAtOnce, 2, 'both were quick last time');
    coordinator.close();
  });

  it('waits for the barrier after a member came (back) online: it has no decode kept', () => {
    const { coordinator, play } = rig([1, 2], () => true);
    play(5);
    coordinator.memberOnline(2);
    assert.equal(play(5).startedAtOnce, 0);
    coordinator.close();
  });
});
