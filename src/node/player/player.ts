import type { HubClock } from '../../clock/hub-clock.js';
import type { LocalClock } from '../../clock/local-clock.js';
import type { Logger } from '../../log.js';
import type { NodeCommand, NodePlayback, PlayerEvent, TrackRef } from '../../protocol/schemas.js';
import type { OpenDecoder } from '../decode/pcm.js';
import type { AudioOutput } from '../output/output.js';
import { IntroCache, type IntroStore } from './intro-cache.js';
import { PcmTimeline, type OpenTrack } from './pcm-timeline.js';
import { DEFAULT_SCHEDULER, Scheduler } from './scheduler.js';

export type PlayerCommand = Extract<NodeCommand, { command: 'prepare' | 'start' | 'next' | 'stop' | 'cue' }>;

export interface PlayerOptions {
  /** Audio decoded before the node says ready (ms). */
  prerollMs: number;
  /**
   * ...when the whole track is already in the chunk store (ms; at most prerollMs): the
   * decoder then runs far faster than real time, and the hub's start margin (>= 110 ms)
   * is more than it needs to stay ahead, so the node says ready after its first block.
   */
  heldPrerollMs: number;
  /** Audio decoded ahead of the output at most (ms)... */
  aheadMs: number;
  /**
   * ...and before the session's start: a prepared session decodes only this far (at least
   * the pre-roll) until the start comes. Every member of a group prepares at the same
   * moment; decoding 3 s each before the start (about 18 ms of CPU a node for FLAC) took
   * CPU from the members still preparing, and the barrier waited for the slowest.
   */
  prestartAheadMs: number;
  /** Frames per write: small, so corrections and stops act quickly. */
  writeMs: number;
  /** Starved of decoded audio this long while playing (its download fell behind), the node drops out (ms)... */
  dropOutMs: number;
  /** ...and rejoins once this much is decoded ahead of the play position again (ms; at most aheadMs). */
  rejoinMarginMs: number;
  /**
   * A node whose clock is not synced yet (its first seconds) says ready only once it is,
   * or after this long (ms): until then its samples would land up to milliseconds off the
   * group's. The hub starts without it and it joins in progress, in sync.
   */
  clockWaitMs: number;
  /**
   * The start of each track decoded from its beginning is kept (IntroCache: this long, ms,
   * for the introTracks most recently used tracks; 0 turns it off). A play of one of them
   * from its start is ready at once: the cached frames play while the decoder opens (the
   * decoder has that long, less the start margin, to deliver the frames after them).
   */
  introMs: number;
  introTracks: number;
  /**
   * While idle, decode the starts of the tracks the node holds (deps.libraryTracks) into the
   * cache, up to introTracks, so even a track's first play starts at once.
   */
  prepareStarts: boolean;
}

export const DEFAULT_PLAYER: PlayerOptions = { prerollMs: 200, heldPrerollMs: 40, aheadMs: 3000, prestartAheadMs: 500, writeMs: 10, dropOutMs: 250, rejoinMarginMs: 2000, clockWaitMs: 5000, introMs: 500, introTracks: 256, prepareStarts: true };

/** The cached starts are reported this long after the last change (ms): a play's gapless run adds several in a row… */
const INTROS_REPORT_DELAY_MS = 300;
/** …but no later than this after the first change not reported (ms): the idle pass over held tracks adds one every few hundred ms. */
const INTROS_REPORT_MAX_WAIT_MS = 2000;
/** At most this many are reported (the protocol's limit). */
const INTROS_MAX = 1024;
/** The idle pass over held tracks begins this long after the node became idle or its holdings changed (ms)… */
const PREPARE_DELAY_MS = 3000;
/** …and rests this long between two tracks (ms), so it never takes a core for long. */
const PREPARE_PAUSE_MS = 150;
/** The start of this many tracks coming up is decoded ahead while a session plays (the protocol's next + upcoming). */
const WARM_TRACKS = 5;
/** …beginning this long after the session's start (ms, plus up to 1 s at random): off the start's path. */
const WARM_DELAY_MS = 2000;
/** A track whose start is not decoded in this long is given up (ms). */
const WARM_WAIT_MS = 5000;

export interface PlayerDeps {
  /** Open already (the node's output selection opens it). */
  output: AudioOutput;
  clock: LocalClock;
  hubClock: HubClock;
  openDecoder: OpenDecoder;
  openTrack: OpenTrack;
  send: (event: PlayerEvent) => void;
  log: Logger;
  /** Whether every byte of the track is in the node's chunk store already (no download to wait for). */
  holds?: (track: TrackRef) => boolean;
  /** Readies a decoder for tracks of this format ahead of need (a spare ffmpeg). */
  warmDecoder?: (format: string) => void;
  /** Keeps the cached track starts across restarts (the node's SQLite file); without it they live in memory only. */
  introStore?: IntroStore;
  /**
   * The output's delay as configured (its buffer, ms): what the node reports before it
   * has played anything (an idle device reads short), so the hub's start at once leaves
   * it room from the first play on.
   */
  nominalDelayMs?: number;
  /** The library's playable tracks, the most wanted first: the idle pass (prepareStarts) decodes the starts of those the node holds. */
  libraryTracks?: () => TrackRef[];
}

/**
 * A decode kept ready after a session ended (stop or pause): the track from `fromFrame`,
 * decoding ahead, so a prepare of the same track at a position it covers (play again
 * from the start, resume where it paused) is ready at once instead of opening a decoder.
 */
interface Parked {
  track: TrackRef;
  timeline: PcmTimeline;
}

/** Parked decodes start this far before the position a paused session had written (the hub resumes at the audible position, a little behind). */
const PARK_BEFORE_MS = 1000;
/**
 * A timeline keeps PARK_BEFORE_MS of the frames it handed out, and this much more (the
 * block being written, a frame dropped or repeated), so a stop can step the session's own
 * decode back to the parking spot.
 */
const KEEP_SLACK_MS = 100;
/**
 * The hub hears of the parked decodes ('kept') as each has this much decoded (ms, or all
 * it will decode): early, so a replay soon after a stop finds the report there (8 nodes
 * on 2 cores took over 300 ms to decode 2 s after a stop), and again once the spot of a
 * resume (PARK_BEFORE_MS in) is covered too. They cover the positions decoded less
 * KEPT_END_MS at the end (a prepare there needs its pre-roll decoded beyond it).
 */
const KEPT_REPORT_MS = [300, 2000];
const KEPT_END_MS = 100;
/** A cued decode starts this far before the position cued (ms; see cue()). */
const CUE_BEFORE_MS = 10;
/** A parked decode still short of that after this long is not reported (ms). */
const KEPT_REPORT_WAIT_MS = 5000;
/**
 * A session started from a cached start opens its decoder for what follows once its
 * first frame is written, or once less than this much of the cached start is left to
 * write (ms; the start is introMs long), whichever comes first. Opening it with the
 * prepare (reading the track's chunks, checking their hashes, starting ffmpeg) made
 * 8 nodes on 2 cores do ~12 ms of CPU each in the 120 ms before the start instant,
 * while the hub was still handing out the start messages: starts then reached nodes up
 * to 90 ms after the hub sent them and some skipped their first audio.
 */
const SEED_OPEN_BELOW_MS = 300;

interface Session {
  id: string;
  timeline: PcmTimeline;
  first: TrackRef;
  ready: boolean;
  scheduler?: Scheduler;
  /** Track playing at the output's write position (entry id), for gapless change reports. */
  writingEntry?: number;
  /** Timeline frame of that track's frame 0. */
  writingStart?: number;
  positionFrames: number;
  ended: boolean;
  /** Local time the write loop first lacked decoded audio, while playing (cleared by audio). */
  starvedSince?: number;
  /** Dropped out (fell behind): silent until a safe margin is decoded ahead of the play position; local time it went out. */
  outSince?: number;
  /** The output's underrun count at the last write. */
  underruns?: number;
  /** The largest device delay while it played (frames). */
  maxDelayFrames?: number;
}

/**
 * The node's player: turns the hub's prepare / start / next / stop into sound. A write
 * loop paced by the output's back-pressure asks the Scheduler, before every write, which
 * frame belongs at the device's position and corrects (silence, drop, repeat) — never a
 * timer deciding when audio plays.
 */
export class Player {
  private session?: Session;
  private loop?: Promise<void>;
  /** The gain in effect for the frames written now. */
  private gain = 1;
  /** A volume change timed by the hub: the gain from the frame that plays at hub time atHubMs. */
  private pendingGain?: { gain: number; atHubMs: number };
  private muted = false;
  private latencyMs = 0;
  private volume = { node: 100, group: 100 };
  private readonly rate: number;
  private readonly channels: number;
  private readonly writeFrames: number;
  private closed = false;
  /** Decodes kept ready after the last session ended (at most two: the track's start, and where it stopped). */
  private parked: Parked[] = [];
  /** Parked decodes being closed. */
  private closing: Promise<unknown>[] = [];
  /** Which session a timeline's errors belong to (a parked timeline changes hands). */
  private readonly owners = new WeakMap<PcmTimeline, string>();
  /**
   * The largest delay the device had while the last session played (ms, without the
   * latency offset; before any, the configured buffer): the delay the node reports.
   * Read at a moment the device idles (between sessions, or at a ready that comes at once
   * from a kept decode) it is short, and the hub's start at once then left too little
   * room: 8 nodes on 2 cores skipped up to 42 ms of a start.
   */
  private deviceDelayMs = 0;
  /** Serialises commands: a stop must not overtake the prepare it cancels. */
  private chain: Promise<void> = Promise.resolve();
  /** The starts of recently played tracks, decoded. */
  private readonly intros: IntroCache;
  private introsTimer?: NodeJS.Timeout;
  /** Tracks coming up in the queue whose start to decode in the background (while a session plays). */
  private warmList: TrackRef[] = [];
  private warmTimer?: NodeJS.Timeout;
  private warming?: Promise<void>;
  private prepareTimer?: NodeJS.Timeout;
  /** When the first change to the cached starts not yet reported happened (performance.now()). */
  private introsChangedAt?: number;

  constructor(
    private readonly deps: PlayerDeps,
    private readonly options: PlayerOptions = DEFAULT_PLAYER,
  ) {
    this.rate = deps.output.sampleRate;
    this.channels = deps.output.channels;
    this.writeFrames = Math.max(1, Math.round((options.writeMs * this.rate) / 1000));
    // The configured buffer, and the block being written on top of it.
    this.deviceDelayMs = deps.nominalDelayMs === undefined ? 0 : deps.nominalDelayMs + options.writeMs;
    this.intros = new IntroCache(this.frames(options.introMs), this.channels, options.introMs > 0 ? options.introTracks : 0, () => this.reportIntrosSoon(), deps.introStore);
  }

  handle(command: PlayerCommand): void {
    this.chain = this.chain.then(() => this.apply(command)).catch((err: Error) => this.deps.log.error({ err }, 'player command failed'));
  }

  /** Volumes (0–100); with `atHubMs`, from the frame that plays at that hub time (the same instant on every member). */
  setVolume(node: number, group: number, atHubMs?: number): void {
    this.volume = { node, group };
    this.updateGain(atHubMs);
  }

  setOutput(muted: boolean, latencyMs: number): void {
    this.muted = muted;
    this.latencyMs = latencyMs;
    this.updateGain();
  }

  status(): NodePlayback {
    const s = this.session;
    if (!s) return { state: 'idle', trackId: null, positionMs: null };
    return {
      state: s.scheduler && s.ready && s.outSince === undefined ? 'playing' : 'buffering',
      trackId: String(s.writingEntry ?? s.first.entryId),
      positionMs: Math.max(0, (s.positionFrames * 1000) / this.rate),
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.introsTimer);
    clearTimeout(this.warmTimer);
    clearTimeout(this.prepareTimer);
    await this.chain;
    await this.warming;
    await this.end();
    await this.unpark();
    this.intros.close();
    await this.deps.output.close();
  }

  private updateGain(atHubMs?: number): void {
    const gain = this.muted ? 0 : (this.volume.node * this.volume.group) / 10000;
    // Timed only while a session plays; otherwise (and for mute) from the next frame written.
    if (atHubMs !== undefined && this.session?.scheduler) this.pendingGain = { gain, atHubMs };
    else {
      this.gain = gain;
      this.pendingGain = undefined;
    }
  }

  /**
   * The block with the gain applied; a timed change takes effect from the block's frame
   * that plays at its hub time (or from the whole block, if that instant has passed:
   * the output runs further ahead than the hub's lead).
   */
  private withGain(pcm: Int16Array, timelineFrame: number, s: Session, scheduler: Scheduler): Int16Array {
    const pending = this.pendingGain;
    if (pending) {
      const frames = pcm.length / this.channels;
      const at = Math.round(scheduler.frameAtHub(pending.atHubMs) - timelineFrame);
      if (at < frames) {
        const before = this.gain;
        this.gain = pending.gain;
        this.pendingGain = undefined;
        this.deps.log.info({ session: s.id, atHubMs: pending.atHubMs, timelineFrame: timelineFrame + Math.max(0, at), late: at < 0, gain: this.gain }, 'volume changed');
        if (at > 0) {
          const out = applyGain(pcm, before);
          out.set(applyGain(pcm.subarray(at * this.channels), this.gain), at * this.channels);
          return out;
        }
      }
    }
    return this.gain === 1 ? pcm : applyGain(pcm, this.gain);
  }

  private async apply(c: PlayerCommand): Promise<void> {
    if (this.closed) return;
    const s = this.session;
    if (c.command === 'prepare') {
      // The same session again: the hub restarted (or this node came back) and adopts the
      // playback under way; it hears where this node has got to, and nothing restarts.
      if (s?.id === c.session) return this.report(s);
      await this.end();
      await this.prepare(c);
    } else if (c.command === 'start') {
      if (s?.id !== c.session) return this.deps.log.debug({ session: c.session }, 'start for a session this node was not prepared for');
      // Already started: the timeline is fixed for the whole session (the hub repeats the
      // start to members that come back, in terms of the track it thinks is current).
      if (s.scheduler) return this.deps.log.debug({ session: c.session }, 'start for a session already under way; keeping its timeline');
      const anchor = { atHubMs: c.atHubMs, frame: (c.positionMs * this.rate) / 1000 };
      s.scheduler = new Scheduler({ sampleRate: this.rate, ...DEFAULT_SCHEDULER }, this.deps.hubClock, anchor);
      s.timeline.setAhead(this.frames(this.options.aheadMs));
      this.warmIntrosSoon();
      this.deps.log.info({ session: c.session, inMs: Math.round(c.atHubMs - this.deps.hubClock.toHub(this.deps.clock.now())), ready: s.ready }, 'start');
    } else if (c.command === 'next') {
      if (s?.id !== c.session) return;
      // The hub names what follows the track that *plays*; the decoder may already be in
      // that next track (the last seconds of a track, e.g. when a restarted hub adopts
      // the session): then what follows the decoder is the rest of the list.
      const t = s.timeline;
      const ahead = s.writingEntry !== undefined && t.decodingEntryId !== s.writingEntry && c.next?.entryId === t.decodingEntryId;
      if (ahead) t.setNext(c.upcoming?.[0] ?? null, c.upcoming?.slice(1));
      else t.setNext(c.next, c.upcoming);
      this.warmIntrosSoon([c.next, ...(c.upcoming ?? [])]);
    } else if (c.command === 'cue') {
      // Only between sessions: a session under way owns the decoder and the CPU.
      if (!s) {
        this.cue(c.track, this.frames(c.positionMs));
        // …and the starts of what follows it, as while playing.
        if (c.upcoming?.length) this.warmIntrosSoon(c.upcoming);
      }
      // The hub sends cues when the node comes (back) online: it forgot the cached starts then.
      this.reportIntrosSoon();
    } else if (s?.id === c.session) {
      // Stopped or paused: keep the track decoding from where a replay or resume would start.
      await this.end(true);
    }
  }

  /**
   * The hub says what a play would start: keep a decode of it going from there (if the
   * track is all here) and report it, unless a parked decode covers it already (one
   * parked at the stop that just happened, say: its report is on the way).
   */
  private cue(track: TrackRef, frame: number): void {
    if (this.closed || !this.deps.holds?.(track)) return;
    // A play from the very start needs nothing kept when the start is cached (the hub
    // knows: 'intros'); any other position does, even inside the cached start.
    if (frame === 0 && this.intros.has(track)) return;
    // A little before the position: the report rounds its start up to a whole ms, and must
    // still cover the position it was cued for.
    frame = Math.max(0, frame - this.frames(CUE_BEFORE_MS));
    const reach = this.frames(this.options.aheadMs - KEPT_END_MS);
    const covered = this.parked.some((p) => p.track.entryId === track.entryId && p.track.contentId === track.contentId && !p.timeline.error && p.timeline.headFrame <= frame && frame <= p.timeline.headFrame + reach);
    if (covered) return;
    // Room for it: the oldest parked decode gives way (at most two are kept).
    const keep = this.parked.slice(-1);
    for (const p of this.parked.slice(0, -1)) this.closing.push(p.timeline.close().catch(() => undefined));
    this.parked = [...keep, { track, timeline: this.timeline(track, frame, null, []) }];
    this.deps.log.debug({ entryId: track.entryId, positionMs: Math.round((frame * 1000) / this.rate) }, 'cued: decoding what a play would start');
    void this.reportKept(this.parked).catch((err: Error) => this.deps.log.debug({ err: err.message }, 'kept decodes not reported'));
  }

  /** A timeline over `track` from `startFrame`; its errors go to whichever session owns it then. */
  private frames(ms: number): number {
    return Math.round((ms * this.rate) / 1000);
  }

  private timeline(track: TrackRef, startFrame: number, next: TrackRef | null, upcoming: readonly TrackRef[] | undefined, aheadMs = this.options.aheadMs, background = false, holdDecoder = false): PcmTimeline {
    const seed = startFrame < this.intros.frames ? this.intros.get(track) : undefined;
    const timeline: PcmTimeline = new PcmTimeline(
      track,
      startFrame,
      next,
      this.deps.openTrack,
      this.deps.openDecoder,
      {
        sampleRate: this.rate,
        channels: this.channels,
        aheadFrames: this.frames(aheadMs),
        readFrames: 4096,
        seed,
        introFrames: this.intros.frames,
        onIntro: (t, pcm) => this.intros.add(t, pcm),
        keepFrames: this.frames(PARK_BEFORE_MS + KEEP_SLACK_MS),
        background,
        ...(holdDecoder && { openBelowFrames: this.frames(SEED_OPEN_BELOW_MS) }),
      },
      (entryId, message) => {
        const session = this.owners.get(timeline);
        if (session === undefined) return this.deps.log.debug({ entryId, err: message }, 'a parked decode failed; dropped');
        this.deps.log.warn({ session, entryId, err: message }, 'cannot play the track');
        this.deps.send({ event: 'error', session, entryId, message });
      },
      upcoming,
    );
    return timeline;
  }

  private upcomingToWarm(tracks: readonly (TrackRef | null | undefined)[]): TrackRef[] {
    return tracks.filter((t): t is TrackRef => !!t).slice(0, WARM_TRACKS);
  }

  /**
   * While a session plays, or between sessions after a cue: decodes the start of the
   * tracks coming up (next and upcoming) into the intro cache, one at a time,
   * WARM_DELAY_MS after the start (or the hub's `next`, or its cue), so a skip to one of
   * them — next, or a pick from the queue — starts at once like a replay. `tracks`
   * replaces the list.
   */
  private warmIntrosSoon(tracks?: readonly (TrackRef | null | undefined)[]): void {
    if (tracks) this.warmList = this.upcomingToWarm(tracks);
    if (this.closed || this.intros.frames === 0 || this.options.introTracks === 0 || this.warmTimer || this.warming) return;
    // Spread over a second: the members of a group started on the same instant, and their
    // decoders need not all start together on a small shared machine.
    this.warmTimer = setTimeout(() => {
      this.warmTimer = undefined;
      this.warming = this.warmIntros()
        .catch((err: Error) => this.deps.log.debug({ err: err.message }, 'warming track starts failed'))
        .finally(() => {
          this.warming = undefined;
          // A new session began meanwhile (or ended): its list, after its own delay.
          if ((!this.session || (this.session.scheduler && !this.session.ended)) && this.warmList.length > 0) this.warmIntrosSoon();
        });
    }, WARM_DELAY_MS + Math.random() * 1000);
  }

  private async warmIntros(): Promise<void> {
    const s = this.session;
    while (this.warmList.length > 0) {
      // While this session plays steadily, or while none does (after a cue); never while a
      // session prepares or starts: its start must not share the CPU.
      if (this.closed || this.session !== s || (s && (!s.scheduler || s.ended))) return;
      const track = this.warmList.shift()!;
      if (this.intros.has(track) || !this.deps.holds?.(track)) continue;
      const started = performance.now();
      await this.decodeStart(track, s);
      this.deps.log.info({ entryId: track.entryId, cached: this.intros.has(track), ms: Math.round(performance.now() - started) }, 'decoded the start of a track coming up');
    }
  }

  /** Decodes the start of a track into the cache; gives up when `s` is no longer the session (a play began, say), or after WARM_WAIT_MS. */
  private async decodeStart(track: TrackRef, s: Session | undefined): Promise<void> {
    const started = performance.now();
    // Its own ffmpeg: the spares stay for plays, and no refill forks one later, when a play may be starting.
    const timeline = this.timeline(track, 0, null, [], this.options.introMs + KEPT_END_MS, true);
    try {
      while (!this.closed && this.session === s && !timeline.error && !timeline.finished && !this.intros.has(track) && performance.now() - started < WARM_WAIT_MS) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([timeline.whenMoreData(), new Promise<void>((r) => (timer = setTimeout(r, 250)))]);
        clearTimeout(timer);
      }
    } finally {
      await timeline.close().catch(() => undefined);
    }
  }

  /**
   * The tracks the node holds changed (a sync finished), or it became idle: soon, if it is
   * still idle then, decode the starts of held tracks not cached yet (prepareStarts).
   */
  prepareStartsSoon(delayMs = PREPARE_DELAY_MS): void {
    if (!this.options.prepareStarts || !this.deps.libraryTracks || this.closed || this.intros.frames === 0 || this.intros.max === 0) return;
    clearTimeout(this.prepareTimer);
    this.prepareTimer = setTimeout(() => {
      this.prepareTimer = undefined;
      // Busy (a session, or the starts of what comes up being decoded): again later.
      if (this.session || this.warming || this.warmTimer) return this.prepareStartsSoon();
      this.warming = this.prepareStarts()
        .catch((err: Error) => this.deps.log.debug({ err: err.message }, 'preparing the starts of held tracks failed'))
        .finally(() => {
          this.warming = undefined;
          if (this.warmList.length > 0) this.warmIntrosSoon();
        });
    }, delayMs);
    this.prepareTimer.unref();
  }

  /**
   * The idle pass: the starts of held tracks not cached yet, one at a time with a rest
   * between, while the cache has room (a start that was played is never evicted for one
   * decoded on spec). Stops the moment a session begins, or the hub names tracks coming
   * up (those come first), and goes on when the node is idle again.
   */
  private async prepareStarts(): Promise<void> {
    const started = performance.now();
    let done = 0;
    let stopped = false;
    for (const track of this.deps.libraryTracks!()) {
      if (this.intros.size >= this.intros.max) break;
      if (this.closed || this.session || this.warmList.length > 0) {
        stopped = true;
        break;
      }
      if (this.intros.has(track) || !this.deps.holds?.(track)) continue;
      await this.decodeStart(track, undefined);
      if (this.intros.has(track)) done++;
      await new Promise((r) => setTimeout(r, PREPARE_PAUSE_MS));
    }
    if (done > 0) this.deps.log.info({ tracks: done, cached: this.intros.size, max: this.intros.max, ms: Math.round(performance.now() - started), stopped }, 'prepared the starts of held tracks');
    if (stopped && !this.closed) this.prepareStartsSoon();
  }

  /** The hub welcomed this node (it joined, or the hub restarted): it hears the cached starts again, whatever its group's queue holds. */
  reportIntros(): void {
    this.reportIntrosSoon();
  }

  /** Tells the hub, a moment after the last change, which tracks' starts this node has decoded. */
  private reportIntrosSoon(): void {
    clearTimeout(this.introsTimer);
    if (this.closed) return;
    const now = performance.now();
    this.introsChangedAt ??= now;
    const delay = Math.max(0, Math.min(INTROS_REPORT_DELAY_MS, this.introsChangedAt + INTROS_REPORT_MAX_WAIT_MS - now));
    this.introsTimer = setTimeout(() => {
      this.introsChangedAt = undefined;
      const intros = this.intros.list().slice(-INTROS_MAX);
      if (intros.length === 0 || this.closed) return;
      this.deps.send({ event: 'intros', intros, outputDelayMs: this.reportedDelayMs() });
      this.deps.log.info({ tracks: intros.length }, 'cached track starts reported to the hub');
    }, delay);
  }

  /** A parked decode of this track that covers startFrame, moved to it; undefined if none. All others are closed. */
  private async unpark(track?: TrackRef, startFrame = 0): Promise<{ timeline?: PcmTimeline; joined: boolean }> {
    let found: PcmTimeline | undefined;
    let joined = false;
    for (const p of this.parked) {
      const t = p.timeline;
      const same = !found && track && p.track.entryId === track.entryId && p.track.contentId === track.contentId && !t.error && t.decodingEntryId === track.entryId;
      if (same && t.headFrame <= startFrame && startFrame <= t.headFrame + t.bufferedFrames) {
        t.drop(startFrame - t.headFrame);
        found = t;
      } else if (same && startFrame < t.headFrame && this.joinsStart(t, track, startFrame)) {
        // The cached start reaches the parked decode: together they play from startFrame.
        found = t;
        joined = true;
      } else this.closing.push(t.close().catch(() => undefined));
    }
    this.parked = [];
    // Not awaited here: a decoder's exit is off the start's path (close() waits for them all).
    if (!track) await Promise.all(this.closing.splice(0));
    return { timeline: found, joined };
  }

  /**
   * A parked decode of this track starting inside its cached start (parked a little
   * before where a session stopped early in the track): the cached frames from startFrame
   * up to it go in front, so a replay from the start needs no decoder of its own.
   */
  private joinsStart(t: PcmTimeline, track: TrackRef, startFrame: number): boolean {
    if (!t.inFirstTrack || t.headFrame > this.intros.frames || !this.intros.has(track)) return false;
    const intro = this.intros.get(track)!;
    return t.prepend(intro.slice(startFrame * this.channels, t.headFrame * this.channels), startFrame);
  }

  /**
   * After a session ends: decodes of its track kept ready, from its start and from a
   * little before where it was, if the node holds the whole track (a parked decode never
   * fetches anything).
   */
  private park(s: Session, running?: PcmTimeline): void {
    if (this.closed || !this.deps.holds) {
      if (running) this.closing.push(running.close().catch(() => undefined));
      return;
    }
    const t = s.timeline;
    // In order of need, at most two: where a resume would start, the start of the track
    // that played, the start of the session's first track. A start whose frames are
    // cached needs no decode kept: a play from there is ready at once anyway.
    const spots: { track: TrackRef; frame: number }[] = [];
    if (s.writingEntry !== undefined && s.writingEntry === t.decodingEntryId) {
      const track = t.decodingTrack;
      const frame = Math.max(0, s.positionFrames - this.frames(PARK_BEFORE_MS));
      const fromStart = !this.intros.has(track);
      // A spot within the first seconds is covered by a decode from the start (it runs
      // aheadMs ahead), if one is kept; a cached start covers only the start itself.
      if (!fromStart || frame > this.frames(this.options.aheadMs) / 2) spots.push({ track, frame });
      if (fromStart) spots.push({ track, frame: 0 });
    }
    if (!this.intros.has(s.first) && !spots.some((x) => x.frame === 0 && x.track.entryId === s.first.entryId)) spots.push({ track: s.first, frame: 0 });
    for (const spot of spots.slice(0, 2)) {
      if (!this.deps.holds(spot.track)) continue;
      // The session's own decode serves the spot when it took the frames from there
      // lately: stepped back to it, those frames come again, and no decoder starts (on a
      // small machine, starting ffmpeg is most of what a stop and a replay cost).
      const back = running && running.decodingEntryId === spot.track.entryId && running.decodingTrack.contentId === spot.track.contentId ? running.headFrame - spot.frame : -1;
      // A session shorter than PARK_BEFORE_MS goes back to its first frame at most: enough
      // if that is before the audible position (what the hub resumes at).
      const audible = s.positionFrames - this.frames(this.reportedDelayMs() + KEEP_SLACK_MS);
      if (running && back >= 0 && (back <= running.rewindableFrames || (spot.frame > 0 && running.headFrame - running.rewindableFrames <= audible))) {
        running.rewind(back);
        this.parked.push({ track: spot.track, timeline: running });
        running = undefined;
        continue;
      }
      this.parked.push({ track: spot.track, timeline: this.timeline(spot.track, spot.frame, null, []) });
    }
    if (running) this.closing.push(running.close().catch(() => undefined));
    if (this.parked.length > 0) void this.reportKept(this.parked).catch((err: Error) => this.deps.log.debug({ err: err.message }, 'kept decodes not reported'));
  }

  /**
   * Tells the hub which positions the parked decodes cover, once they are decoded ahead:
   * a play of one of them there is ready the moment its prepare arrives, so the hub can
   * send the start with the prepare. Nothing is said if they were replaced meanwhile.
   */
  private async reportKept(list: Parked[]): Promise<void> {
    const started = performance.now();
    for (const reportMs of KEPT_REPORT_MS) {
      const want = this.frames(Math.min(reportMs, this.options.aheadMs - KEPT_END_MS));
      const short = () => list.filter((p) => !p.timeline.error && !p.timeline.finished && p.timeline.bufferedFrames < want);
      while (this.parked === list && !this.closed && short().length > 0 && performance.now() - started < KEPT_REPORT_WAIT_MS) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([...short().map((p) => p.timeline.whenMoreData()), new Promise<void>((r) => (timer = setTimeout(r, 250)))]);
        clearTimeout(timer);
      }
      if (this.parked !== list || this.closed) return;
      const spots = list
        .filter((p) => !p.timeline.error && p.timeline.decodingEntryId === p.track.entryId && (p.timeline.finished || p.timeline.bufferedFrames >= want))
        .map((p) => {
          const t = p.timeline;
          // Whole ms inward (the schema's positions are ms): the hub then never believes a
          // position covered that lies a fraction of a ms outside.
          const fromMs = Math.ceil((t.headFrame * 1000) / this.rate);
          return { entryId: p.track.entryId, contentId: p.track.contentId, fromMs, toMs: Math.max(fromMs, Math.floor(((t.headFrame + t.bufferedFrames) * 1000) / this.rate) - KEPT_END_MS) };
        });
      if (spots.length === 0) return;
      this.deps.send({ event: 'kept', spots, outputDelayMs: this.reportedDelayMs() });
      this.deps.log.info({ spots }, 'kept decodes reported to the hub');
      // Everything decoded there is to decode (short tracks): nothing more to say.
      if (list.every((p) => p.timeline.finished || p.timeline.error)) return;
    }
  }

  private async prepare(c: Extract<PlayerCommand, { command: 'prepare' }>): Promise<void> {
    const started = performance.now();
    const cpu = process.cpuUsage();
    const startFrame = Math.round((c.positionMs * this.rate) / 1000);
    const { timeline: reused, joined } = await this.unpark(c.track, startFrame);
    if (reused) reused.setNext(c.next, c.upcoming);
    // Parked decodes run aheadMs ahead already (they were decoding while nothing else was).
    const prestartMs = Math.max(this.options.prestartAheadMs, this.options.prerollMs);
    // From the cached start: seeded into a new decode, or put in front of a parked one (joined).
    const intro = joined || (!reused && startFrame < this.intros.frames && this.intros.has(c.track));
    const held = this.deps.holds?.(c.track) ?? false;
    // A new decode after the cached start opens once the session's first frame is written
    // (SEED_OPEN_BELOW_MS); at once if the track is still to fetch, which must not wait.
    const timeline = reused ?? this.timeline(c.track, startFrame, c.next, c.upcoming, prestartMs, false, intro && held);
    this.owners.set(timeline, c.session);
    const s: Session = { id: c.session, timeline, first: c.track, ready: false, positionFrames: startFrame, ended: false };
    this.session = s;
    this.warmList = this.upcomingToWarm([c.next, ...(c.upcoming ?? [])]);
    this.loop = this.run(s);
    // Ready once the pre-roll is decoded (or the track is shorter than that); a short one when the track is all here.
    const prerollMs = held ? Math.min(this.options.heldPrerollMs, this.options.prerollMs) : this.options.prerollMs;
    const preroll = Math.round((prerollMs * this.rate) / 1000);
    while (this.session === s && !s.timeline.error && !s.timeline.finished && s.timeline.bufferedFrames < preroll) await s.timeline.whenMoreData();
    if (this.session !== s || s.timeline.error) return;
    const clockWaitMs = await this.clockSynced(s);
    if (this.session !== s) return;
    s.ready = true;
    this.deps.send({ event: 'ready', session: s.id, outputDelayMs: this.reportedDelayMs() });
    this.deps.log.info({ session: s.id, entryId: c.track.entryId, positionMs: c.positionMs, held, parked: reused !== undefined, intro, ...(joined && { joined }), prepareMs: Math.round(performance.now() - started), cpuMs: cpuMs(process.cpuUsage(cpu)), ...(clockWaitMs > 0 && { clockWaitMs }) }, 'ready');
    // Tracks of another format coming up get a decoder readied now, off the start's critical path.
    for (const f of new Set([c.next, ...(c.upcoming ?? [])].filter((t) => t && t.format !== c.track.format).map((t) => t!.format))) this.deps.warmDecoder?.(f);
  }

  /** Waits (ms, returned) until the clock is synced, the session ends, or clockWaitMs passed (then says so). */
  private async clockSynced(s: Session): Promise<number> {
    const clock = this.deps.hubClock;
    if (clock.synced) return 0;
    const started = performance.now();
    while (!clock.synced && this.session === s && performance.now() - started < this.options.clockWaitMs) await new Promise((r) => setTimeout(r, 20));
    const waited = Math.round(performance.now() - started);
    if (!clock.synced && this.session === s) this.deps.log.warn({ session: s.id, waitedMs: waited }, 'the clock is not synced with the hub yet; playing anyway, possibly out of sync');
    return waited;
  }

  /** What the node tells the hub its output delay is: the largest the device had while playing (or has now), plus the latency offset. */
  private reportedDelayMs(): number {
    const frames = Math.max(this.deps.output.delayFrames(), this.session?.maxDelayFrames ?? 0);
    return Math.min(10_000, Math.max(0, Math.max(this.deviceDelayMs, (frames * 1000) / this.rate) + this.latencyMs));
  }

  /** Tells the hub where this node's session has got to: the track playing (and when it began), and whether it ran out. */
  private report(s: Session): void {
    if (s.ready && !s.scheduler) this.deps.send({ event: 'ready', session: s.id, outputDelayMs: this.reportedDelayMs() });
    if (s.scheduler && s.writingEntry !== undefined && s.writingStart !== undefined) {
      this.deps.send({ event: 'track', session: s.id, entryId: s.writingEntry, startHubMs: s.scheduler.hubTimeOf(s.writingStart) });
    }
    if (s.ended) this.deps.send({ event: 'ended', session: s.id, entryId: s.writingEntry ?? s.first.entryId });
    this.deps.log.info({ session: s.id, entryId: s.writingEntry, ended: s.ended }, 'the hub asked again for the session under way; reported where it stands');
  }

  /** Ends the current session: the loop stops, queued audio is dropped, the decoder closed; `park` keeps its track ready to go again. */
  private async end(park = false): Promise<void> {
    const s = this.session;
    if (!s) return;
    this.session = undefined;
    // A timed volume change not yet reached: nothing plays now, so it holds from here.
    if (this.pendingGain) this.gain = this.pendingGain.gain;
    this.pendingGain = undefined;
    await this.loop;
    this.loop = undefined;
    this.owners.delete(s.timeline);
    if (s.maxDelayFrames) this.deviceDelayMs = (s.maxDelayFrames * 1000) / this.rate;
    // A stop or pause keeps the session's own decode, stepped back, when it can (park()).
    const running = park && this.canKeepRunning(s) ? s.timeline : undefined;
    if (running) running.setNext(null);
    else await s.timeline.close();
    await this.deps.output.flush();
    await this.unpark();
    if (park) this.park(s, running);
    // Idle now: the pass over held tracks' starts may go on (it waits a few seconds first).
    this.prepareStartsSoon();
  }

  /** The session's decode can be parked as it is: sound, still in the track it played, and the node holds that track. */
  private canKeepRunning(s: Session): boolean {
    const t = s.timeline;
    return !this.closed && !t.error && t.inFirstTrack && s.writingEntry === t.decodingEntryId && (this.deps.holds?.(t.decodingTrack) ?? false);
  }

  /** The write loop of one session, paced by the output's back-pressure. */
  private async run(s: Session): Promise<void> {
    const { output, clock } = this.deps;
    const silence = new Int16Array(this.writeFrames * this.channels);
    const silent = { session: s.id, trackFrame: -1 };
    try {
      while (this.session === s) {
        const scheduler = s.scheduler;
        if (!scheduler || !s.ready) {
          // Not started yet: keep the device running on silence, so the first frame lands exactly.
          await output.write(silence, silent);
          continue;
        }
        if (s.outSince !== undefined) {
          if (!(await this.catchUp(s, scheduler))) return;
          continue;
        }
        // The device ran dry since the last write (this process was not scheduled in time):
        // what follows plays late by that much; line it up at once.
        const underruns = output.underruns?.();
        if (underruns !== undefined) {
          if (s.underruns !== undefined && underruns > s.underruns) scheduler.gap();
          s.underruns = underruns;
        }
        const delayFrames = output.delayFrames();
        if (delayFrames > (s.maxDelayFrames ?? 0)) s.maxDelayFrames = delayFrames;
        const d = scheduler.decide({ localNowMs: clock.now(), delayFrames, nextFrame: s.timeline.headFrame, latencyMs: this.latencyMs }, this.writeFrames);
        const c = d.correction;
        if (c.kind === 'drop' && c.frames > 1) this.deps.log.debug({ session: s.id, errorFrames: Math.round(d.errorFrames), correction: c }, 'hard re-sync');
        if (c.kind === 'silence') {
          await output.write(c.frames === this.writeFrames ? silence : new Int16Array(c.frames * this.channels), silent);
          continue;
        }
        if (c.kind === 'drop' && c.frames > 1) {
          const dropped = s.timeline.drop(c.frames);
          if (dropped < c.frames) {
            if (!(await this.waitForAudio(s))) return;
          } else s.starvedSince = undefined;
          continue;
        }
        if (c.kind === 'drop') s.timeline.drop(1);
        let block = s.timeline.take(this.writeFrames);
        if (!block) {
          if (!(await this.waitForAudio(s))) return;
          continue;
        }
        if (block.entryId !== s.writingEntry) {
          if (s.writingEntry !== undefined && block.trackFrame === 0) {
            // Gapless change: every node computes the same instant from the shared timeline.
            this.deps.send({ event: 'track', session: s.id, entryId: block.entryId, startHubMs: scheduler.hubTimeOf(block.timelineFrame) });
          }
          s.writingEntry = block.entryId;
          s.writingStart = block.timelineFrame - block.trackFrame;
        }
        s.starvedSince = undefined;
        let pcm = block.pcm;
        const trackFrame = block.trackFrame;
        if (c.kind === 'repeat') {
          // One frame twice: the device is ahead of the timeline by a frame. The block's
          // last frame is the one repeated, so its first keeps its position (a repeat of
          // the first frame of a track was tagged frame −1, i.e. silence, and the track's
          // start went unrecorded).
          const longer = new Int16Array(pcm.length + this.channels);
          longer.set(pcm, 0);
          longer.set(pcm.subarray(pcm.length - this.channels), pcm.length);
          pcm = longer;
        }
        pcm = this.withGain(pcm, block.timelineFrame, s, scheduler);
        s.positionFrames = block.trackFrame;
        scheduler.wrote(block.pcm.length / this.channels);
        await output.write(pcm, { session: s.id, trackFrame, entryId: block.entryId });
        // The start is written: the decoder for what follows the cached start may open now.
        if (s.timeline.holding) s.timeline.release();
      }
    } catch (err) {
      this.deps.log.error({ err, session: s.id }, 'output failed');
      this.deps.send({ event: 'error', session: s.id, entryId: s.writingEntry ?? s.first.entryId, message: `output failed: ${(err as Error).message}` });
    }
  }

  /**
   * Dropped out: plays silence while the group's play position runs on, discarding the
   * audio behind it as it arrives, until `rejoinMarginMs` is decoded ahead of it; then the
   * normal loop takes over at exactly the right frame. False when the session is over.
   */
  private async catchUp(s: Session, scheduler: Scheduler): Promise<boolean> {
    const t = s.timeline;
    const target = scheduler.targetFrame({ localNowMs: this.deps.clock.now(), delayFrames: this.deps.output.delayFrames(), latencyMs: this.latencyMs });
    const behind = Math.floor(target - t.headFrame);
    if (behind > 0) t.drop(Math.min(behind, t.bufferedFrames));
    const ahead = t.headFrame + t.bufferedFrames - target;
    const margin = Math.min(this.options.rejoinMarginMs, this.options.aheadMs * 0.8);
    if (t.headFrame >= target - 1 && (ahead >= (margin * this.rate) / 1000 || t.finished || t.error)) {
      const silentMs = this.deps.clock.now() - s.outSince!;
      s.outSince = undefined;
      s.starvedSince = undefined;
      const entryId = t.headEntryId;
      this.deps.log.info({ session: s.id, entryId, silentMs: Math.round(silentMs) }, 'rejoined the group in sync');
      this.deps.send({ event: 'rejoined', session: s.id, entryId, silentMs: Math.round(silentMs) });
      return true;
    }
    if (t.error && t.bufferedFrames === 0) return false;
    await this.deps.output.write(new Int16Array(this.writeFrames * this.channels), { session: s.id, trackFrame: -1 });
    return this.session === s;
  }

  /** Waits for decoded audio; false when the session is over (ended, failed or replaced). */
  private async waitForAudio(s: Session): Promise<boolean> {
    const t = s.timeline;
    if (t.finished && t.bufferedFrames === 0) {
      if (!s.ended) {
        s.ended = true;
        this.deps.send({ event: 'ended', session: s.id, entryId: s.writingEntry ?? s.first.entryId });
        this.deps.log.info({ session: s.id }, 'session ended');
      }
      // The hub may still name a next track; meanwhile the device plays silence.
      s.scheduler?.gap();
      await this.deps.output.write(new Int16Array(this.writeFrames * this.channels), { session: s.id, trackFrame: -1 });
      return this.session === s;
    }
    if (t.error && t.bufferedFrames === 0) return false;
    // The decoder is behind (or catching up after a jump): keep the device fed; the scheduler
    // re-syncs exactly after. Starved for long while playing, the download fell behind: drop out.
    s.scheduler?.gap();
    const now = this.deps.clock.now();
    s.starvedSince ??= now;
    if (s.scheduler && s.outSince === undefined && now - s.starvedSince >= this.options.dropOutMs) {
      s.outSince = now;
      const entryId = t.headEntryId;
      this.deps.log.warn({ session: s.id, entryId }, 'fell behind the play position (the track is not here fast enough): silent until it has a safe margin, then rejoining in sync');
      this.deps.send({ event: 'behind', session: s.id, entryId });
    }
    await this.deps.output.write(new Int16Array(this.writeFrames * this.channels), { session: s.id, trackFrame: -1 });
    return this.session === s;
  }
}

function applyGain(pcm: Int16Array, gain: number): Int16Array {
  const out = new Int16Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) out[i] = Math.round(pcm[i] * gain);
  return out;
}

/** CPU time (user + system, ms) of a process.cpuUsage() difference: the ready log says what a prepare cost this process. */
function cpuMs(usage: NodeJS.CpuUsage): number {
  return Math.round((usage.user + usage.system) / 100) / 10;
}
