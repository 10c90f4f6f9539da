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
  /** Does the member hold every chunk of this content (content id, hex), as it announced? Unknown: false. */
  holds?(nodeId: number, contentId: string): boolean;
  /**
   * The starts the member has cached (its last 'intros' report: content ids, and its
   * output delay then), kept by the hub whatever the member's group. Unknown: undefined.
   */
  starts?(nodeId: number): MemberStarts | undefined;
  /** The group's state changed: publish it. */
  changed(): void;
}

/** A member's cached track starts, as it last reported them. */
export interface MemberStarts {
  contentIds: ReadonlySet<string>;
  outputDelayMs: number;
}

export interface CoordinatorOptions {
  /** Start at hub time now + at least this after the barrier (covers the start message's trip and the output buffer). */
  startMarginMs: number;
  /**
   * ...and at least the largest output delay the ready members reported + this (the
   * start message's trip to the nodes and their next write), so a member with a large
   * output buffer is not started too late to play the first frames. Going below
   * startMarginMs for small buffers made starts skip their first milliseconds on a
   * loaded machine (the start message arriving late), so the fixed margin stays the floor.
   */
  startSlackMs: number;
  /** Members not ready after this long join in progress instead of holding the others back. */
  barrierTimeoutMs: number;
  /** A member joining mid-track is prepared at the position this far ahead (it skips forward to the exact frame). */
  joinLeadMs: number;
  /**
   * Start at once, without waiting for the barrier, when every online member said it
   * keeps a decode of the track going that covers the position (a replay or resume after
   * a stop or pause: a 'kept' event): the start goes out with the prepare, at hub time
   * now + at least this (and the largest output delay they reported + startSlackMs), so
   * the barrier's round trip is off the path from command to sound. 0: never.
   * Smaller than startMarginMs: the start travels with the prepare.
   */
  startAtOnceMarginMs: number;
}

export const DEFAULT_COORDINATOR: CoordinatorOptions = { startMarginMs: 120, startSlackMs: 60, barrierTimeoutMs: 2000, joinLeadMs: 300, startAtOnceMarginMs: 100 };

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
  /** The largest output delay the ready members reported (ms); undefined once one did not report it. */
  outputDelayMs?: number;
  /** Some ready member did not report its output delay (an older node): the fixed margin applies. */
  delayUnknown?: boolean;
  /** When no member reports the track's end (all offline), the hub moves on by itself. */
  endTimer?: NodeJS.Timeout;
  preparedAt: number;
  /**
   * Taken over from before a hub restart: the nodes may have moved on through the queue
   * meanwhile, so the first member to report its track sets where the group stands.
   */
  adopted?: boolean;
}

const MAX_ERRORS = 10;
/** The group's error entry for a member that dropped out; removed again once it rejoined. */
const BEHIND_MESSAGE = 'fell behind the play position (the track did not arrive fast enough): silent until it has a safe margin again, then it rejoins in sync';
/** Tracks after the next one that nodes are told (they play on through them while the hub is away). */
export const UPCOMING_TRACKS = 4;
/** How far ahead in the queue a member's track report is looked for (it played on while the hub was away). */
const REPORT_LOOKAHEAD = 1 + UPCOMING_TRACKS;
/** After a restart, members get this long to come back and report before the hub moves on by itself. */
const ADOPT_GRACE_MS = 15_000;

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
  /** What each member said it keeps decoded between sessions (a 'kept' event); forgotten once it is prepared again. */
  private readonly kept = new Map<number, Extract<PlayerEvent, { event: 'kept' }>>();

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
    this.changed();
    this.cue();
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
    this.changed();
    this.cue();
  }

  seek(seconds: number): void {
    const item = this.queue.current();
    if (!item) throw new PlaybackRefusal('nothing to seek in: the queue has no current track');
    const duration = this.session?.track.durationMs ?? this.ctx.track(item.entryId)?.durationMs ?? null;
    const positionMs = duration === null ? seconds * 1000 : Math.min(seconds * 1000, Math.max(0, duration - 1));
    if (this.state === 'playing') return this.startAt(item, positionMs);
    this.queue.savePosition(positionMs);
    this.changed();
    this.cue();
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
    if (s) for (const nodeId of this.ctx.onlineMembers()) this.ctx.send(nodeId, { command: 'next', session: s.id, ...this.following(s.item) });
    this.changed();
    this.cue();
  }

  /** Stops whatever plays (the group is being deleted). */
  close(): void {
    this.endSession();
  }

  /** Lets go without stopping the members (the hub is shutting down; a restarted hub adopts the session). */
  detach(): void {
    const s = this.session;
    if (!s) return;
    clearTimeout(s.barrierTimer);
    clearTimeout(s.endTimer);
  }

  /**
   * At hub start: takes over the session saved before a restart or crash. A started
   * session is adopted as it is (same id and anchor: the nodes played on, and a member
   * that comes back is told the same timeline, which it already follows); one caught
   * inside its start barrier starts again; a paused group stays paused.
   */
  restore(): void {
    const saved = this.queue.savedSession();
    if (!saved) return;
    if (saved.state === 'paused') {
      this.state = 'paused';
      return this.cue();
    }
    const item = saved.itemId === null ? undefined : this.queue.items().find((i) => i.itemId === saved.itemId);
    const track = item && this.ctx.track(item.entryId);
    if (!item || !track || !saved.session) return this.queue.saveSession(null);
    if (!saved.anchor) return this.startAt(item, this.queue.savedPositionMs);
    const s: Session = { id: saved.session, item, track, positionMs: saved.anchor.positionMs, waiting: new Set(), anchor: saved.anchor, preparedAt: this.ctx.now(), adopted: true };
    this.session = s;
    this.state = 'playing';
    this.armEndTimer(s);
    this.log.info({ session: s.id, entryId: item.entryId, anchor: s.anchor, positionMs: Math.round(this.positionMs()) }, 'adopted the session under way before the restart');
  }

  // --- members -------------------------------------------------------------------------

  /** A member came online or joined the group: if the group plays, it joins in sync. */
  memberOnline(nodeId: number): void {
    // A node that (re)started has no decode kept: its next start waits for the barrier
    // (its cached starts are the hub's to know: ctx.starts).
    this.kept.delete(nodeId);
    this.ctx.sendOutput(nodeId);
    const s = this.session;
    if (!s || this.state !== 'playing') return this.cue([nodeId]);
    const positionMs = s.anchor ? this.positionMs() + this.options.joinLeadMs : s.positionMs;
    this.ctx.send(nodeId, { command: 'prepare', session: s.id, groupId: this.queue.groupId, track: ref(s.track), positionMs, ...this.following(s.item) });
    if (s.anchor) this.ctx.send(nodeId, { command: 'start', session: s.id, atHubMs: s.anchor.hubMs, positionMs: s.anchor.positionMs });
    else s.waiting.add(nodeId);
  }

  /** A member went offline or left the group: the barrier no longer waits for it. */
  memberGone(nodeId: number, stillReachable: boolean): void {
    this.kept.delete(nodeId);
    const s = this.session;
    if (!s) return;
    if (stillReachable) this.ctx.send(nodeId, { command: 'stop', session: s.id });
    if (s.waiting.delete(nodeId)) this.barrierCheck(s);
  }

  onPlayerEvent(nodeId: number, event: PlayerEvent): void {
    const s = this.session;
    if (event.event === 'kept') {
      // Only between sessions: a member playing keeps nothing (a late report of a stop before this session's prepare is stale).
      if (this.state !== 'playing' && this.ctx.onlineMembers().includes(nodeId)) this.kept.set(nodeId, event);
      return;
    }
    // The hub keeps each node's cached starts (ctx.starts), whatever its group.
    if (event.event === 'intros') return;
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
    if (event.event === 'behind') {
      this.log.warn({ nodeId, entryId: event.entryId }, 'a member fell behind the play position and dropped out; the group plays on');
      return this.recordError(nodeId, event.entryId, BEHIND_MESSAGE);
    }
    if (event.event === 'rejoined') {
      this.log.info({ nodeId, entryId: event.entryId, silentMs: event.silentMs }, 'a member that fell behind rejoined in sync');
      // Resolved: the member plays again, so its 'fell behind' entry leaves the group's errors.
      const left = this.errors.filter((e) => !(e.nodeId === nodeId && e.message === BEHIND_MESSAGE));
      if (left.length !== this.errors.length) {
        this.errors = left;
        this.changed();
      }
      return;
    }
    if (event.event === 'ready') {
      if (s.waiting.delete(nodeId)) {
        s.anyReady = true;
        if (event.outputDelayMs === undefined) s.delayUnknown = true;
        else s.outputDelayMs = Math.max(s.outputDelayMs ?? 0, event.outputDelayMs);
        this.barrierCheck(s);
      }
      return;
    }
    if (event.event === 'track') {
      // The first member to report the gapless change wins; the others report the same instant.
      const found = this.reportedItem(s, event.entryId, event.startHubMs);
      if (!found) return;
      this.failuresInARow = 0;
      if (found.steps > 0 || s.adopted) this.log.info({ session: s.id, entryId: event.entryId, steps: found.steps, adopted: s.adopted ?? false }, 'members play on into the next track');
      s.adopted = false;
      s.item = found.item;
      s.track = found.track;
      s.positionMs = 0;
      s.anchor = { positionMs: 0, hubMs: event.startHubMs };
      this.queue.setCurrent(found.item);
      this.armEndTimer(s);
      for (const member of this.ctx.onlineMembers()) this.ctx.send(member, { command: 'next', session: s.id, ...this.following(found.item) });
      this.changed();
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
    this.changed();
    this.cue();
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
    const following = this.following(item);
    // Decided before the prepares go out: a prepare ends every decode a member kept.
    const atOnce = this.startAtOnce(track, positionMs);
    for (const nodeId of this.ctx.onlineMembers()) {
      this.kept.delete(nodeId);
      this.ctx.sendOutput(nodeId);
      s.waiting.add(nodeId);
      this.ctx.send(nodeId, { command: 'prepare', session: s.id, groupId: this.queue.groupId, track: ref(track), positionMs, ...following });
    }
    this.log.info({ session: s.id, entryId: item.entryId, positionMs, members: [...s.waiting] }, 'session prepared');
    if (atOnce !== undefined) return this.go(s, atOnce.why, atOnce.marginMs);
    s.barrierTimer = setTimeout(() => this.timeout(s), this.options.barrierTimeoutMs);
    this.changed();
    this.barrierCheck(s);
  }

  /**
   * Between sessions: tells members what a play would start (the current track at its
   * saved position, or the queue's first track), so they keep it decoded and the play
   * starts at once. Members that already reported a decode covering it are skipped; a
   * member that does not hold the track ignores the cue.
   */
  private cue(nodeIds: readonly number[] = this.ctx.onlineMembers()): void {
    if (this.state === 'playing' || this.options.startAtOnceMarginMs <= 0) return;
    const current = this.queue.current();
    const item = current ?? this.queue.first();
    const track = item && this.ctx.track(item.entryId);
    if (!track) return;
    const positionMs = current ? this.queue.savedPositionMs : 0;
    const { next, upcoming } = this.following(item);
    const coming = next ? [next, ...upcoming] : [];
    for (const nodeId of nodeIds) {
      const ready = this.keeps(nodeId, track, positionMs) || this.hasStart(nodeId, track, positionMs);
      const starts = this.ctx.starts?.(nodeId)?.contentIds;
      if (ready && coming.every((t) => starts?.has(t.contentId))) continue;
      this.ctx.send(nodeId, { command: 'cue', track: ref(track), positionMs, ...(coming.length > 0 && { upcoming: coming }) });
    }
  }

  /** The member reported a decode of this track covering the position. */
  private keeps(nodeId: number, track: TrackInfo, positionMs: number): boolean {
    return this.kept.get(nodeId)?.spots.some((k) => k.entryId === track.entryId && k.contentId === track.contentId && k.fromMs <= positionMs && positionMs <= k.toMs) ?? false;
  }

  /** The member reported the track's start decoded, and the play is from the start. */
  private hasStart(nodeId: number, track: TrackInfo, positionMs: number): boolean {
    return positionMs === 0 && (this.ctx.starts?.(nodeId)?.contentIds.has(track.contentId) ?? false);
  }

  /**
   * The margin to start with at once (no barrier), or undefined to wait for the barrier:
   * every online member still holds the track and either keeps a decode of it going that
   * covers the position, or — for a play from the start — has its start decoded (an
   * 'intros' report), so it is ready the moment the prepare arrives. Anything else —
   * another track, a seek elsewhere, a member that (re)started, a Cast or Sonos speaker —
   * waits for the barrier: a member not ready by the start instant would skip the
   * track's first audio (measured: starting at once on members that had merely been
   * quick the time before skipped up to 705 ms when they had to open a decoder afresh).
   */
  private startAtOnce(track: TrackInfo, positionMs: number): { marginMs: number; why: string } | undefined {
    const o = this.options;
    const members = this.ctx.onlineMembers();
    if (o.startAtOnceMarginMs <= 0 || members.length === 0) return undefined;
    let delay = 0;
    let fromIntro = false;
    for (const nodeId of members) {
      if (this.ctx.holds && !this.ctx.holds(nodeId, track.contentId)) return undefined;
      const kept = this.kept.get(nodeId);
      const intros = this.ctx.starts?.(nodeId);
      if (kept && this.keeps(nodeId, track, positionMs)) delay = Math.max(delay, kept.outputDelayMs);
      else if (intros && this.hasStart(nodeId, track, positionMs)) (delay = Math.max(delay, intros.outputDelayMs)), (fromIntro = true);
      else return undefined;
    }
    const why = fromIntro ? 'every member has the start decoded' : 'every member keeps the track decoded';
    return { marginMs: Math.max(o.startAtOnceMarginMs, delay + o.startSlackMs), why };
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

  /** The barrier fell (or is not needed): everyone online starts at hub time T = now + margin. */
  private go(s: Session, why: string, marginMs = this.startMargin(s)): void {
    if (this.session !== s || s.anchor) return;
    clearTimeout(s.barrierTimer);
    const now = this.ctx.now();
    s.anchor = { positionMs: s.positionMs, hubMs: now + marginMs };
    for (const nodeId of this.ctx.onlineMembers()) this.ctx.send(nodeId, { command: 'start', session: s.id, atHubMs: s.anchor.hubMs, positionMs: s.positionMs });
    this.log.info({ session: s.id, why, late: [...s.waiting], barrierMs: Math.round(now - s.preparedAt), marginMs: Math.round(s.anchor.hubMs - now) }, 'session started');
    this.armEndTimer(s);
    this.changed();
  }

  /** How far ahead the start instant goes: the fixed margin, or more if a member's output needs it. */
  private startMargin(s: Session): number {
    const o = this.options;
    if (s.delayUnknown || s.outputDelayMs === undefined) return o.startMarginMs;
    return Math.max(o.startMarginMs, s.outputDelayMs + o.startSlackMs);
  }

  /** Members report the end; should none (all offline), the hub moves on a little after it. */
  private armEndTimer(s: Session): void {
    clearTimeout(s.endTimer);
    if (!s.anchor || s.track.durationMs === null) return;
    const endsIn = s.anchor.hubMs + (s.track.durationMs - s.anchor.positionMs) - this.ctx.now();
    s.endTimer = setTimeout(() => {
      if (this.session === s && this.ctx.onlineMembers().length === 0) this.finished();
    }, Math.max(0, endsIn) + 3000 + (s.adopted ? ADOPT_GRACE_MS : 0));
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

  /**
   * Which queue item a member's report "entry E started at hub time T" means: the current
   * item or one after it (members carry on through the queue on their own while the hub
   * is away). The current one only counts once, right after a restart (adopted); a later
   * one only if it starts after the current one began, so the other members' reports of
   * the same change, and stale ones, change nothing.
   */
  private reportedItem(s: Session, entryId: number, startHubMs: number): { item: QueueItem; track: TrackInfo; steps: number } | undefined {
    if (!s.anchor) return undefined;
    const currentStart = s.anchor.hubMs - s.anchor.positionMs;
    let item: QueueItem | undefined = s.item;
    for (let steps = 0; steps <= REPORT_LOOKAHEAD && item; steps++, item = this.queue.after(item, false)) {
      if (item.entryId !== entryId) continue;
      if (steps === 0 ? !s.adopted : startHubMs < currentStart + 1000) continue;
      const track = this.ctx.track(item.entryId);
      return track ? { item, track, steps } : undefined;
    }
    return undefined;
  }

  /** What follows `item` at the end of each track: the next one, and up to UPCOMING_TRACKS after it. */
  private following(item: QueueItem): { next: TrackRef | null; upcoming: TrackRef[] } {
    const refs: TrackRef[] = [];
    let at: QueueItem | undefined = item;
    while (refs.length < 1 + UPCOMING_TRACKS) {
      at = this.queue.after(at, false);
      const track = at && this.ctx.track(at.entryId);
      if (!track) break;
      refs.push(ref(track));
    }
    return { next: refs[0] ?? null, upcoming: refs.slice(1) };
  }

  /** Publishes the group's state; the session under way is saved first, so a restarted hub can adopt it. */
  private changed(): void {
    const s = this.session;
    if (this.state === 'playing' && s) this.queue.saveSession({ state: 'playing', session: s.id, itemId: s.item.itemId, anchor: s.anchor ?? null });
    else if (this.state === 'paused') this.queue.saveSession({ state: 'paused', session: null, itemId: null, anchor: null });
    else this.queue.saveSession(null);
    this.ctx.changed();
  }

  private recordError(nodeId: number | null, entryId: number | null, message: string): void {
    this.errors = [...this.errors, { nodeId, entryId, message: message.slice(0, 1000), at: Date.now() }].slice(-MAX_ERRORS);
    this.changed();
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
