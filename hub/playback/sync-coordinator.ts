import { randomBytes } from 'node:crypto';
import type { Logger } from '../../src/log.js';
import type { GroupPlayback, NodeCommand, PlaybackError, PlayerEvent, TrackRef } from '../../src/protocol/schemas.js';
import type { PlayQueue, QueueItem } from './play-queue.js';

/** A playable catalogue entry, as the coordinator tells nodes about it. */
export interface TrackInfo extends TrackRef {
  title: string | null;
}

/** What a coordinator needs from the hub; one per group. */
export interface CoordinatorContext {
  /** The hub's clock (ms): the timebase of every schedule. */
  now(): number;
  track(entryId: number): TrackInfo | undefined;
  /** The group's members that are online now. */
  onlineMembers(): number[];
  send(nodeId: number, command: NodeCommand): void;
  /** Tells a node its mute and latency offset (before a prepare, so it plays right from the first frame). */
  sendOutput(nodeId: number): void;
  /** The group's state changed: publish it. */
  changed(): void;
}

export interface CoordinatorOptions {
  /** Start at hub time now + this after the barrier (covers the start message's trip and the output buffer). */
  startMarginMs: number;
  /** Members not ready after this long join in progress instead of holding the others back. */
  barrierTimeoutMs: number;
  /** A member joining mid-track is prepared at the position this far ahead (it skips forward to the exact frame). */
  joinLeadMs: number;
}

export const DEFAULT_COORDINATOR: CoordinatorOptions = { startMarginMs: 120, barrierTimeoutMs: 2000, joinLeadMs: 300 };

interface Session {
  id: string;
  item: QueueItem;
  track: TrackInfo;
  /** Position the session started from. */
  positionMs: number;
  /** Members asked to prepare that have not said ready. */
  waiting: Set<number>;
  /** Set once the barrier fell: track position anchor.positionMs plays at hub time anchor.hubMs. */
  anchor?: { positionMs: number; hubMs: number };
  barrierTimer?: NodeJS.Timeout;
  /** The barrier timeout passed. */
  timedOut?: boolean;
  /** At least one member said ready. */
  anyReady?: boolean;
  /** When no member reports the track's end (all offline), the hub moves on by itself. */
  endTimer?: NodeJS.Timeout;
  preparedAt: number;
}

const MAX_ERRORS = 10;

/**
 * Plays one group: the queue, the transport (play, pause, seek, next…) and the start
 * barrier. Every change of what plays or where is a new session: prepare to every online
 * member, wait until all are ready (or the barrier times out), then start at hub time
 * T = now + margin, position P. Members that were late, or come online mid-track, are
 * prepared and given the same timeline, so they join in sync. Nodes continue into the
 * next track without a gap on their own (they were told it ahead) and report it; a
 * node's decode error skips the track.
 */
export class SyncCoordinator {
  private session?: Session;
  private state: 'stopped' | 'playing' | 'paused' = 'stopped';
  private errors: PlaybackError[] = [];
  /** Errors in a row without a track playing through: stops a queue of broken files from looping. */
  private failuresInARow = 0;

  constructor(
    readonly queue: PlayQueue,
    private readonly ctx: CoordinatorContext,
    private readonly options: CoordinatorOptions,
    private readonly log: Logger,
  ) {}

  // --- transport -----------------------------------------------------------------------

  play(entryIds?: readonly number[]): void {
    if (entryIds && entryIds.length > 0) {
      this.requireTracks(entryIds);
      const added = this.queue.replace(entryIds);
      this.failuresInARow = 0;
      return this.startAt(added[0], 0);
    }
    if (this.state === 'playing') return;
    if (this.state === 'paused') return this.resume();
    const item = this.queue.current() ?? this.queue.first();
    if (!item) throw new PlaybackRefusal('the queue is empty: give entry ids to play, or add some with queue/add');
    this.failuresInARow = 0;
    this.startAt(item, this.queue.current() ? this.queue.savedPositionMs : 0);
  }

  pause(): void {
    if (this.state !== 'playing') return;
    const position = this.positionMs();
    this.endSession();
    this.state = 'paused';
    this.queue.savePosition(position);
    this.ctx.changed();
  }

  resume(): void {
    if (this.state === 'playing') return;
    if (this.state === 'stopped') return this.play();
    const item = this.queue.current();
    if (!item) return this.stop();
    this.startAt(item, this.queue.savedPositionMs);
  }

  stop(): void {
    this.endSession();
    this.state = 'stopped';
    this.queue.savePosition(0);
    this.ctx.changed();
  }

  seek(seconds: number): void {
    const item = this.queue.current();
    if (!item) throw new PlaybackRefusal('nothing to seek in: the queue has no current track');
    const duration = this.session?.track.durationMs ?? this.ctx.track(item.entryId)?.durationMs ?? null;
    const positionMs = duration === null ? seconds * 1000 : Math.min(seconds * 1000, Math.max(0, duration - 1));
    if (this.state === 'playing') return this.startAt(item, positionMs);
    this.queue.savePosition(positionMs);
    this.ctx.changed();
  }

  next(): void {
    this.moveTo(this.queue.after(this.queue.current(), true));
  }

  previous(): void {
    const current = this.queue.current();
    // Like every player: back to the start of the track unless it only just began.
    const target = current && this.positionMs() > 3000 ? current : this.queue.before(current);
    this.moveTo(target);
  }

  /** The queue changed under the current session: tell the nodes what now follows. */
  queueChanged(): void {
    const s = this.session;
    const current = this.queue.current();
    if (s && current?.itemId !== s.item.itemId) {
      // The playing item was removed: move on to what follows it now.
      return this.moveTo(current ?? this.queue.first());
    }
    if (s) for (const nodeId of this.ctx.onlineMembers()) this.ctx.send(nodeId, { command: 'next', session: s.id, next: this.nextTrack(s.item) });
    this.ctx.changed();
  }

  /** Stops whatever plays (the group is being deleted). */
  close(): void {
    this.endSession();
  }

  // --- members -------------------------------------------------------------------------

  /** A member came online or joined the group: if the group plays, it joins in sync. */
  memberOnline(nodeId: number): void {
    this.ctx.sendOutput(nodeId);
    const s = this.session;
    if (!s || this.state !== 'playing') return;
    const positionMs = s.anchor ? this.positionMs() + this.options.joinLeadMs : s.positionMs;
    this.ctx.send(nodeId, { command: 'prepare', session: s.id, groupId: this.queue.groupId, track: ref(s.track), positionMs, next: this.nextTrack(s.item) });
    if (s.anchor) this.ctx.send(nodeId, { command: 'start', session: s.id, atHubMs: s.anchor.hubMs, positionMs: s.anchor.positionMs });
    else s.waiting.add(nodeId);
  }

  /** A member went offline or left the group: the barrier no longer waits for it. */
  memberGone(nodeId: number, stillReachable: boolean): void {
    const s = this.session;
    if (!s) return;
    if (stillReachable) this.ctx.send(nodeId, { command: 'stop', session: s.id });
    if (s.waiting.delete(nodeId)) this.barrierCheck(s);
  }

  onPlayerEvent(nodeId: number, event: PlayerEvent): void {
    const s = this.session;
    if (event.event === 'error') {
      this.recordError(nodeId, event.entryId, event.message);
      if (!s || event.session !== s.id) return;
      this.log.warn({ nodeId, entryId: event.entryId, err: event.message }, 'a node cannot play the track; skipping it');
      this.failuresInARow++;
      if (this.failuresInARow > Math.max(3, this.queue.items().length)) {
        this.recordError(null, event.entryId, 'every track in the queue failed to play; stopped');
        return this.stop();
      }
      // The failing track is the current one, or the next one the nodes were moving into.
      const failing = event.entryId === s.item.entryId ? s.item : this.queue.after(s.item, false);
      return this.moveTo(this.queue.after(failing, true));
    }
    if (!s || event.session !== s.id) return;
    if (event.event === 'ready') {
      if (s.waiting.delete(nodeId)) {
        s.anyReady = true;
        this.barrierCheck(s);
      }
      return;
    }
    if (event.event === 'track') {
      // The first member to report the gapless change wins; the others report the same instant.
      if (!s.anchor || event.startHubMs < s.anchor.hubMs + 1000) return;
      const next = this.queue.after(s.item, false);
      const track = next && this.ctx.track(next.entryId);
      if (!next || !track || next.entryId !== event.entryId) return;
      this.failuresInARow = 0;
      s.item = next;
      s.track = track;
      s.positionMs = 0;
      s.anchor = { positionMs: 0, hubMs: event.startHubMs };
      this.queue.setCurrent(next);
      this.armEndTimer(s);
      for (const member of this.ctx.onlineMembers()) this.ctx.send(member, { command: 'next', session: s.id, next: this.nextTrack(next) });
      this.ctx.changed();
      return;
    }
    if (event.event === 'ended' && event.entryId === s.item.entryId) {
      this.failuresInARow = 0;
      this.finished();
    }
  }

  // --- state ---------------------------------------------------------------------------

  /** Where the group stands in the current track now (ms). */
  positionMs(): number {
    const s = this.session;
    if (this.state !== 'playing' || !s) return this.queue.savedPositionMs;
    if (!s.anchor) return s.positionMs;
    const p = s.anchor.positionMs + Math.max(0, this.ctx.now() - s.anchor.hubMs);
    return s.track.durationMs === null ? p : Math.min(p, s.track.durationMs);
  }

  playback(): GroupPlayback {
    const item = this.queue.current();
    const track = this.session?.track ?? (item ? this.ctx.track(item.entryId) : undefined);
    const s = this.session;
    return {
      state: this.state,
      trackId: item ? String(item.entryId) : null,
      positionMs: this.positionMs(),
      entryId: item?.entryId ?? null,
      title: track?.title ?? null,
      durationMs: track?.durationMs ?? null,
      session: s?.id ?? null,
      anchor: s?.anchor ?? null,
      shuffle: this.queue.shuffle,
      repeat: this.queue.repeat,
      muted: this.queue.muted,
    };
  }

  playbackErrors(): PlaybackError[] {
    return this.errors;
  }

  // --- sessions ------------------------------------------------------------------------

  private moveTo(item: QueueItem | undefined): void {
    if (!item) {
      this.queue.setCurrent(this.queue.first());
      return this.stop();
    }
    if (this.state === 'playing') return this.startAt(item, 0);
    this.queue.setCurrent(item);
    this.ctx.changed();
  }

  private startAt(item: QueueItem, positionMs: number): void {
    this.endSession();
    const track = this.ctx.track(item.entryId);
    this.queue.setCurrent(item, positionMs);
    if (!track) {
      this.recordError(null, item.entryId, `entry ${item.entryId} is not a playable track in the library (removed, or not indexed)`);
      this.state = 'playing';
      this.failuresInARow++;
      if (this.failuresInARow > Math.max(3, this.queue.items().length)) return this.stop();
      return this.moveTo(this.queue.after(item, true));
    }
    const s: Session = { id: randomBytes(6).toString('hex'), item, track, positionMs, waiting: new Set(), preparedAt: this.ctx.now() };
    this.session = s;
    this.state = 'playing';
    const next = this.nextTrack(item);
    for (const nodeId of this.ctx.onlineMembers()) {
      this.ctx.sendOutput(nodeId);
      s.waiting.add(nodeId);
      this.ctx.send(nodeId, { command: 'prepare', session: s.id, groupId: this.queue.groupId, track: ref(track), positionMs, next });
    }
    this.log.info({ session: s.id, entryId: item.entryId, positionMs, members: [...s.waiting] }, 'session prepared');
    s.barrierTimer = setTimeout(() => this.timeout(s), this.options.barrierTimeoutMs);
    this.ctx.changed();
    this.barrierCheck(s);
  }

  private barrierCheck(s: Session): void {
    if (s.anchor) return;
    if (s.waiting.size === 0) this.go(s, 'all ready');
    // The timeout passed with nobody ready: the first member ready starts the group.
    else if (s.timedOut && s.anyReady) this.go(s, 'first ready after the timeout');
  }

  /**
   * The barrier timeout: members that are ready start and late ones join in progress.
   * With nobody ready yet (all still fetching the track, say) starting would only make
   * every member skip the beginning, so the group waits for its first ready member.
   */
  private timeout(s: Session): void {
    if (this.session !== s || s.anchor) return;
    s.timedOut = true;
    if (s.anyReady || s.waiting.size === 0) this.go(s, 'timeout');
    else this.log.info({ session: s.id, waiting: [...s.waiting] }, 'barrier timeout with no member ready; starting with the first one ready');
  }

  /** The barrier fell: everyone online starts at hub time T = now + margin. */
  private go(s: Session, why: string): void {
    if (this.session !== s || s.anchor) return;
    clearTimeout(s.barrierTimer);
    const now = this.ctx.now();
    s.anchor = { positionMs: s.positionMs, hubMs: now + this.options.startMarginMs };
    for (const nodeId of this.ctx.onlineMembers()) this.ctx.send(nodeId, { command: 'start', session: s.id, atHubMs: s.anchor.hubMs, positionMs: s.positionMs });
    this.log.info({ session: s.id, why, late: [...s.waiting], barrierMs: Math.round(now - s.preparedAt) }, 'session started');
    this.armEndTimer(s);
    this.ctx.changed();
  }

  /** Members report the end; should none (all offline), the hub moves on a little after it. */
  private armEndTimer(s: Session): void {
    clearTimeout(s.endTimer);
    if (!s.anchor || s.track.durationMs === null) return;
    const endsIn = s.anchor.hubMs + (s.track.durationMs - s.anchor.positionMs) - this.ctx.now();
    s.endTimer = setTimeout(() => {
      if (this.session === s && this.ctx.onlineMembers().length === 0) this.finished();
    }, Math.max(0, endsIn) + 3000);
  }

  /** The current track played to its end and nothing followed it gaplessly. */
  private finished(): void {
    const s = this.session;
    const next = s ? this.queue.after(s.item, false) : undefined;
    if (next) return this.startAt(next, 0);
    this.queue.setCurrent(this.queue.first());
    this.stop();
  }

  private endSession(): void {
    const s = this.session;
    if (!s) return;
    this.session = undefined;
    clearTimeout(s.barrierTimer);
    clearTimeout(s.endTimer);
    for (const nodeId of this.ctx.onlineMembers()) this.ctx.send(nodeId, { command: 'stop', session: s.id });
  }

  private nextTrack(item: QueueItem): TrackRef | null {
    const next = this.queue.after(item, false);
    const track = next && this.ctx.track(next.entryId);
    return track ? ref(track) : null;
  }

  private recordError(nodeId: number | null, entryId: number | null, message: string): void {
    this.errors = [...this.errors, { nodeId, entryId, message: message.slice(0, 1000), at: Date.now() }].slice(-MAX_ERRORS);
    this.ctx.changed();
  }

  private requireTracks(entryIds: readonly number[]): void {
    const bad = entryIds.filter((id) => !this.ctx.track(id));
    if (bad.length > 0) throw new PlaybackRefusal(`not playable tracks in the library: entry ${bad.slice(0, 10).join(', ')} (see firefly ctl library --failed)`);
  }
}

/** A command the group cannot carry out as asked (empty queue, unknown entries). */
export class PlaybackRefusal extends Error {}

function ref(t: TrackInfo): TrackRef {
  return { entryId: t.entryId, contentId: t.contentId, format: t.format, durationMs: t.durationMs };
}
