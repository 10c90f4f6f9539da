import type { Logger } from '../../src/log.js';
import type { Heartbeat, NodeCommand, PlayerEvent, TrackRef } from '../../src/protocol/schemas.js';
import { hubTimeOf, LagBounds, planStart, positionAt, StartDelayEstimate, type Timeline } from './compensation.js';
import { DeviceGoneError, DeviceRefusedError, type DeviceTransport } from './transport.js';

/** A lag interval at most this wide (ms) is a fine measurement: good enough to learn a start delay from. */
const FINE_MS = 40;

/** Where a device fetches a track, and which track position its position 0 is. */
export interface MediaSource {
  url: string;
  contentType: string;
  /** Track position (ms) at the device's position 0 (a transcoded stream that starts mid-track). */
  offsetMs: number;
  /** The device can seek in it (a transcoded stream cannot: it is fetched again from the new position). */
  seekable: boolean;
}

export interface DevicePlayerOptions {
  /** Start delay assumed before any measurement (remembered from the last run, or the kind's default). */
  initialStartDelayMs: number;
  seekThresholdMs: number;
  pollMs: number;
  /** How far ahead a play or seek is planned (covers the request's trip). */
  leadMs: number;
  /** Hub time now (ms): the timebase of the session anchors (hub/clock/hub-time.ts). */
  hubNow: () => number;
}

/** What the player says to the rest of the hub (the Devices module publishes it on the device's node topics). */
export interface DevicePlayerHost {
  playerEvent(event: PlayerEvent): void;
  /** Reachable or not: the module publishes the device's availability and heartbeats. */
  availability(online: boolean, reason: string): void;
  /** Where the device fetches a track from `positionMs`. */
  media(track: TrackRef, positionMs: number): MediaSource;
  /** A new start delay was learnt (kept in SQLite). */
  learnt(startDelayMs: number): void;
  /** The measured offset changed (group state shows it). */
  measured(): void;
}

interface Session {
  id: string;
  track: TrackRef;
  next: TrackRef | null;
  media?: MediaSource;
  prepared?: Promise<boolean>;
  timeline?: Timeline;
  lag?: LagBounds;
  /** Times the device stopped by itself with an error in this session (it is reloaded; the third time is a player error). */
  failures?: number;
  /** Hub time after which readings describe the corrected playback (a play or seek was issued and settled). */
  settledAt?: number;
  /** The start delay the current play or seek was planned with. */
  assumedDelayMs: number;
  /** A fine measurement of this play or seek was learnt from already. */
  learnt?: boolean;
  timers: NodeJS.Timeout[];
}

/**
 * The player protocol of a native node (prepare, start, next, stop, volume, output in;
 * ready, track, ended, error out), spoken on behalf of a Cast or Sonos speaker. Neither kind
 * can start at an instant, so a start is planned: the device is told to play its start delay
 * early (or, when that moment has passed, further into the track), its position is then
 * read against the group's timeline, the delay estimate learns from every start, and a
 * device off by more than the threshold is corrected by a seek planned the same way.
 */
export class DevicePlayer {
  private session?: Session;
  private readonly delay: StartDelayEstimate;
  /** The member's own volume and its group's, as the registry last sent them. */
  volume = { volume: 100, groupVolume: 100 };
  private output = { muted: false, latencyMs: 0 };
  private online = false;
  private closed = false;
  private reconnectTimer?: NodeJS.Timeout;
  private reconnectDelayMs = 500;
  private pollTimer?: NodeJS.Timeout;
  private chain: Promise<unknown> = Promise.resolve();
  /** Last measured lag of the playing session (ms, + = the device sounds late). */
  measuredOffsetMs: number | null = null;
  lastState: 'idle' | 'buffering' | 'playing' | 'paused' = 'idle';

  constructor(
    readonly transport: DeviceTransport,
    private readonly host: DevicePlayerHost,
    private readonly options: DevicePlayerOptions,
    private readonly log: Logger,
  ) {
    this.delay = new StartDelayEstimate(options.initialStartDelayMs);
    transport.onLost = (reason) => this.lost(reason);
    transport.onFailed = (reason) => this.failed(reason);
  }

  get startDelayMs(): number {
    return this.delay.valueMs;
  }

  get isOnline(): boolean {
    return this.online;
  }

  /** Connects, and keeps reconnecting (with back-off) while the device is away. */
  start(): void {
    void this.connect();
  }

  async stop(): Promise<void> {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.endSession();
    await this.transport.close().catch(() => undefined);
  }

  position(): number | null {
    const s = this.session;
    return s?.timeline ? Math.max(0, positionAt(s.timeline, this.options.hubNow())) : null;
  }

  /** One command from the hub's coordinator or registry (the same payloads a native node gets). */
  command(c: NodeCommand): void {
    switch (c.command) {
      case 'volume':
        this.volume = { volume: c.volume, groupVolume: c.groupVolume };
        if (this.online) this.send('volume', () => this.transport.setVolume(Math.round((c.volume * c.groupVolume) / 100)));
        return;
      case 'output':
        this.output = { muted: c.muted, latencyMs: c.latencyMs };
        if (this.online) this.send('mute', () => this.transport.setMuted(c.muted));
        return;
      case 'sync':
      case 'cue': // a speaker keeps nothing decoded: its plays wait for the barrier
        return;
      case 'prepare':
        return this.prepare(c.session, c.track, c.positionMs, c.next);
      case 'start':
        return this.begin(c.session, { atHubMs: c.atHubMs, positionMs: c.positionMs });
      case 'next':
        if (this.session?.id === c.session) this.session.next = c.next;
        return;
      case 'stop':
        if (this.session?.id !== c.session) return;
        this.endSession();
        if (this.online) this.send('pause', () => this.transport.pause());
        this.lastState = 'paused';
        return;
    }
  }

  // --- sessions ------------------------------------------------------------------------

  private prepare(id: string, track: TrackRef, positionMs: number, next: TrackRef | null): void {
    this.endSession();
    const s: Session = { id, track, next, assumedDelayMs: this.effectiveDelay(), timers: [] };
    this.session = s;
    if (!this.online) return; // it prepares when it comes back (the coordinator sends prepare again)
    s.prepared = this.enqueue('load', async () => {
      if (this.session !== s) return false;
      s.media = this.host.media(track, positionMs);
      await this.transport.load(s.media.url, s.media.contentType, positionMs - s.media.offsetMs, null);
      this.lastState = 'paused';
      return true;
    }).then(
      (ok) => {
        // The speaker's start delay (plus the lead its play request is planned with) is
        // its output delay: the coordinator starts the group that much later, so the
        // speaker can be told early enough to sound together with the native nodes.
        if (ok && this.session === s) this.host.playerEvent({ event: 'ready', session: id, outputDelayMs: Math.min(10_000, Math.round(s.assumedDelayMs + this.options.leadMs)) });
        return ok === true;
      },
      (err: Error) => {
        if (this.session === s && err instanceof DeviceRefusedError) this.host.playerEvent({ event: 'error', session: id, entryId: track.entryId, message: `${this.transport.kind} device refused the track: ${err.message}` });
        return false;
      },
    );
  }

  private begin(id: string, timeline: Timeline): void {
    const s = this.session;
    if (!s || s.id !== id || !this.online) return;
    s.timeline = timeline;
    void (s.prepared ?? Promise.resolve(false)).then((ok) => {
      if (ok && this.session === s) this.schedule(s, 'play');
    });
    this.armTrackEnd(s);
  }

  /** Plans a play (device paused) or a corrective seek (device playing) and issues it on time. */
  private schedule(s: Session, how: 'play' | 'seek'): void {
    const t = s.timeline!;
    const assumed = this.effectiveDelay();
    // A transcoded stream cannot seek: a correction loads it again from the new position (which takes a while) and plays.
    const seekable = s.media?.seekable ?? true;
    if (how === 'seek' && !seekable) {
      this.send('pause', () => this.transport.pause());
      how = 'play';
    }
    const leadMs = seekable ? this.options.leadMs : Math.max(this.options.leadMs, 2000);
    const plan = planStart(t, this.options.hubNow(), assumed, { leadMs, granularityMs: seekable ? this.transport.seekGranularityMs : 1000 });
    s.assumedDelayMs = assumed;
    s.lag = undefined;
    s.settledAt = undefined;
    s.learnt = false;
    const media = s.media!;
    const devicePos = plan.positionMs - media.offsetMs;
    // Paused: move to the planned position now, and play on time.
    if (how === 'play') {
      this.send('seek', async () => {
        if (this.session !== s) return;
        if (media.seekable) await this.transport.seek(devicePos);
        else if (plan.positionMs !== media.offsetMs) await this.reload(s, plan.positionMs);
      });
    }
    const fire = () => {
      if (this.session !== s) return;
      const issuedAt = this.options.hubNow();
      this.enqueue(how, () => (how === 'play' ? this.transport.play() : this.transport.seek(devicePos))).then(() => {
        if (this.session !== s) return;
        this.lastState = 'playing';
        // Readings count once the device had its delay (and a little) to sound again.
        s.settledAt = Math.max(issuedAt, plan.issueAtMs) + assumed + 100;
        this.poll(s);
      }, () => undefined);
      this.log.debug({ how, issueAtMs: plan.issueAtMs, lateByMs: issuedAt - plan.issueAtMs, positionMs: plan.positionMs, assumedDelayMs: assumed }, 'device start issued');
    };
    s.timers.push(setTimeout(fire, Math.max(0, plan.issueAtMs - this.options.hubNow())));
  }

  private async reload(s: Session, trackPositionMs: number): Promise<void> {
    s.media = this.host.media(s.track, trackPositionMs);
    await this.transport.load(s.media.url, s.media.contentType, trackPositionMs - s.media.offsetMs, null);
  }

  /** Reads the position every pollMs while the session plays; learns and corrects. */
  private poll(s: Session): void {
    clearTimeout(this.pollTimer);
    const tick = async () => {
      if (this.session !== s || !s.timeline || !this.online) return;
      const sentMs = this.options.hubNow();
      try {
        const st = await this.enqueue('status', () => this.transport.status());
        const receivedMs = this.options.hubNow();
        if (this.session !== s) return;
        if (st.state === 'playing' && s.settledAt !== undefined && sentMs >= s.settledAt) {
          const offset = s.media?.offsetMs ?? 0;
          s.lag ??= new LagBounds(s.timeline);
          s.lag.add({ sentMs, receivedMs, loMs: st.loMs + offset, hiMs: st.hiMs + offset });
          this.judge(s);
        }
        this.pollTimer = setTimeout(() => void tick(), this.nextPollMs(s, this.options.hubNow() - sentMs));
      } catch {
        return; // lost() handles a device that went away
      }
    };
    this.pollTimer = setTimeout(() => void tick(), this.options.pollMs);
  }

  /**
   * When to read next. Point readings (Cast): every pollMs, jittered. Whole-second readings
   * (Sonos): timed so that the device is read just when it would cross a whole second if its
   * lag were the middle of the current interval — each such reading halves the interval
   * (bisection), where readings at random phases narrow it only slowly.
   */
  private nextPollMs(s: Session, requestMs: number): number {
    const jittered = this.options.pollMs * (0.7 + 0.6 * Math.random());
    const lag = s.lag;
    const mid = lag?.estimateMs ?? null;
    if (this.transport.seekGranularityMs < 1000 || !lag || !s.timeline || mid === null || lag.widthMs <= FINE_MS / 2) return jittered;
    const now = this.options.hubNow();
    // The position is read about three quarters into the status exchange (the second of its two requests).
    const readDelay = 0.75 * requestMs;
    const k = Math.ceil((positionAt(s.timeline, now + readDelay + 30) - mid) / 1000);
    const sendAt = hubTimeOf(s.timeline, k * 1000) + mid - readDelay;
    return Math.min(1500, Math.max(0, sendAt - now));
  }

  /** Enough readings to know where the device is: learn its delay, publish the offset, correct if off. */
  private judge(s: Session): void {
    const lag = s.lag!;
    const estimate = lag.estimateMs;
    if (estimate === null) return;
    // A whole-second reading (Sonos) needs a few readings at different phases first.
    const precise = lag.widthMs <= Math.max(2 * this.options.seekThresholdMs, 40);
    if (!precise && lag.readings < 12) return;
    const previous = this.measuredOffsetMs;
    this.measuredOffsetMs = Math.round(estimate);
    if (previous === null || Math.abs(previous - this.measuredOffsetMs) >= 5) this.host.measured();
    if (lag.readings < 3) return;
    const learnt = s.assumedDelayMs - this.output.latencyMs;
    const fine = lag.widthMs <= FINE_MS;
    // Correct only when the whole interval lies beyond the threshold: a coarse (Sonos) estimate must not cause needless seeks.
    if (Math.abs(estimate) - lag.widthMs / 2 > this.options.seekThresholdMs) {
      this.delay.observe(learnt, estimate, fine);
      this.host.learnt(this.delay.valueMs);
      this.log.info({ lagMs: Math.round(estimate), widthMs: Math.round(lag.widthMs), startDelayMs: Math.round(this.delay.valueMs) }, 'device off the group timeline; correcting by a seek');
      this.schedule(s, 'seek');
    } else if (fine && !s.learnt) {
      // Within the threshold, but now known finely: the next start uses it.
      s.learnt = true;
      this.delay.observe(learnt, estimate, true);
      this.host.learnt(this.delay.valueMs);
    }
  }

  /** The device cannot continue into the next track without a gap; the hub moves it at the timeline's end. */
  private armTrackEnd(s: Session): void {
    const t = s.timeline;
    if (!t || s.track.durationMs === null) return;
    const endAt = t.atHubMs + (s.track.durationMs - t.positionMs);
    s.timers.push(
      setTimeout(() => {
        if (this.session !== s) return;
        const next = s.next;
        if (!next) {
          this.host.playerEvent({ event: 'ended', session: s.id, entryId: s.track.entryId });
          this.lastState = 'idle';
          return;
        }
        this.host.playerEvent({ event: 'track', session: s.id, entryId: next.entryId, startHubMs: endAt });
        // Same session, next track: prepare it and join its timeline late (at once).
        for (const timer of s.timers) clearTimeout(timer);
        const follow: Session = { id: s.id, track: next, next: null, assumedDelayMs: this.effectiveDelay(), timers: [] };
        this.session = follow;
        follow.prepared = this.enqueue('load', async () => {
          follow.media = this.host.media(next, 0);
          await this.transport.load(follow.media.url, follow.media.contentType, -follow.media.offsetMs, null);
          return true;
        }).then(
          (ok) => ok,
          () => false,
        );
        this.begin(follow.id, { atHubMs: endAt, positionMs: 0 });
      }, Math.max(0, endAt - this.options.hubNow())),
    );
  }

  private endSession(): void {
    const s = this.session;
    this.session = undefined;
    clearTimeout(this.pollTimer);
    if (s) for (const timer of s.timers) clearTimeout(timer);
    this.measuredOffsetMs = null;
  }

  private effectiveDelay(): number {
    return this.delay.valueMs + this.output.latencyMs;
  }

  /** The device stopped playing by itself (its stream broke): load the track again and rejoin the timeline. */
  private failed(reason: string): void {
    const s = this.session;
    if (!s?.timeline || !this.online) return;
    s.failures = (s.failures ?? 0) + 1;
    if (s.failures > 2) {
      this.log.warn({ reason }, 'device keeps failing to play the track');
      this.host.playerEvent({ event: 'error', session: s.id, entryId: s.track.entryId, message: `${this.transport.kind} device: ${reason}` });
      return;
    }
    this.log.warn({ reason }, 'device stopped playing; loading the track again at the group position');
    clearTimeout(this.pollTimer);
    s.lag = undefined;
    s.settledAt = undefined;
    s.prepared = this.enqueue('reload', async () => {
      if (this.session !== s) return false;
      await this.reload(s, Math.max(0, this.position() ?? 0));
      return true;
    }).then(
      (ok) => ok,
      () => false,
    );
    void s.prepared.then((ok) => {
      if (ok && this.session === s) this.schedule(s, 'play');
    });
  }

  // --- connection ----------------------------------------------------------------------

  private async connect(): Promise<void> {
    if (this.closed) return;
    try {
      await this.transport.connect();
      this.online = true;
      this.reconnectDelayMs = 500;
      this.log.info({ kind: this.transport.kind }, 'device connected');
      this.host.availability(true, 'connected');
      this.send('volume', () => this.transport.setVolume(Math.round((this.volume.volume * this.volume.groupVolume) / 100)));
    } catch (err) {
      this.log.warn({ err: (err as Error).message, retryInMs: this.reconnectDelayMs }, 'device unreachable');
      this.retry();
    }
  }

  private retry(): void {
    if (this.closed) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => void this.connect(), this.reconnectDelayMs);
    this.reconnectDelayMs = Math.min(10_000, this.reconnectDelayMs * 2);
  }

  /** The device dropped the connection or stopped answering: unavailable until it answers again. */
  private lost(reason: string): void {
    if (!this.online || this.closed) return;
    this.online = false;
    this.endSession();
    this.lastState = 'idle';
    this.log.warn({ reason }, 'device lost; marked unavailable');
    this.host.availability(false, reason);
    void this.transport.close().catch(() => undefined);
    this.retry();
  }

  /** A request nobody waits for: its failure is logged (or marks the device lost), never thrown. */
  private send(what: string, work: () => Promise<unknown>): void {
    this.enqueue(what, work).catch(() => undefined);
  }

  /** Device requests one at a time, in order; a request that finds the device gone marks it lost. */
  private enqueue<T>(what: string, work: () => Promise<T>): Promise<T> {
    const run = this.chain.then(work, work);
    this.chain = run.catch(() => undefined);
    return run.catch((err: Error) => {
      if (err instanceof DeviceGoneError) this.lost(`${what}: ${err.message}`);
      else if (!(err instanceof DeviceRefusedError)) this.log.warn({ err: err.message, what }, 'device request failed');
      throw err;
    });
  }

  heartbeatPlayback(): Heartbeat['playback'] {
    const s = this.session;
    return { state: this.lastState, trackId: s ? String(s.track.entryId) : null, positionMs: this.position() };
  }
}
