import type { HubClock } from '../../clock/hub-clock.js';

/**
 * Scheduling by sample position, as pure arithmetic (no I/O, no timers): before each
 * write the player asks where the output device is — the next frame written will play
 * `delayFrames` from now — and the scheduler answers which frame of the session's
 * timeline belongs there, and what to do about the difference.
 *
 * Timeline frames count at the output's rate from the start of the session's first
 * track and run on through the tracks that follow it gaplessly. The session's anchor
 * says timeline frame `frame` plays at hub time `atHubMs`.
 */

export interface Anchor {
  atHubMs: number;
  frame: number;
}

export interface SchedulerOptions {
  sampleRate: number;
  /** Beyond this error, jump: drop or insert the whole difference at once (a hard re-sync). */
  hardResyncMs: number;
  /**
   * Below this error (frames), do nothing. Half a frame: a node can only move by whole
   * frames, so this keeps it within ±half a frame (±10 µs at 48 kHz) of its schedule;
   * the clock estimate is slewed, so its noise does not make corrections back and forth.
   */
  deadbandFrames: number;
  /** Single-frame corrections are at least this many frames apart (1000: at most 0.1 % speed change, inaudible). */
  minFramesBetweenCorrections: number;
}

export const DEFAULT_SCHEDULER: Omit<SchedulerOptions, 'sampleRate'> = { hardResyncMs: 5, deadbandFrames: 0.5, minFramesBetweenCorrections: 1000 };

export interface Position {
  /** The node's clock now (ms), read together with `delayFrames`. */
  localNowMs: number;
  /** The output device's delay: the next frame written plays this many frames from now. */
  delayFrames: number;
  /** Timeline frame the player would write next without correction. */
  nextFrame: number;
  /** How much later than reported the speaker really sounds (per-node latency offset, ms). */
  latencyMs: number;
}

export type Correction =
  /** Write `frames` frames of silence: the timeline has not reached this point yet, or a hard re-sync backwards. */
  | { kind: 'silence'; frames: number }
  /** Skip `frames` frames of the track before writing (hard re-sync, or one frame of drift). */
  | { kind: 'drop'; frames: number }
  /** Write one frame twice (drift: the device runs ahead of the timeline). */
  | { kind: 'repeat'; frames: 1 }
  | { kind: 'none' };

export interface Decision {
  /** The timeline frame that belongs at the device position where the next write lands. */
  targetFrame: number;
  /** targetFrame − nextFrame: positive, the node is late (drop); negative, early (insert). */
  errorFrames: number;
  correction: Correction;
}

export class Scheduler {
  private readonly hardFrames: number;
  /** Frames written since the last single-frame correction. */
  private sinceCorrection = Number.POSITIVE_INFINITY;
  /** Audio (not the lead-in silence) has been written: from now on a jump is a re-sync. */
  private playing = false;
  /** Silence went out where audio belonged (the decoder was behind): the next audio lines up exactly, as the first did. */
  private afterGap = false;
  /** Counters for status and tests. */
  readonly stats = { hardResyncs: 0, dropped: 0, repeated: 0 };

  constructor(
    private readonly options: SchedulerOptions,
    private readonly hubClock: HubClock,
    private anchor: Anchor,
  ) {
    this.hardFrames = (options.hardResyncMs * options.sampleRate) / 1000;
  }

  setAnchor(anchor: Anchor): void {
    this.anchor = anchor;
  }

  /** The timeline frame that plays at local time `localMs` (fractional). */
  frameAt(localMs: number): number {
    const hubMs = this.hubClock.toHub(localMs);
    return this.anchor.frame + ((hubMs - this.anchor.atHubMs) * this.options.sampleRate) / 1000;
  }

  /** The timeline frame (fractional) that plays at hub time `hubMs`. */
  frameAtHub(hubMs: number): number {
    return this.anchor.frame + ((hubMs - this.anchor.atHubMs) * this.options.sampleRate) / 1000;
  }

  /** The hub time at which timeline frame `frame` plays. */
  hubTimeOf(frame: number): number {
    return this.anchor.atHubMs + ((frame - this.anchor.frame) * 1000) / this.options.sampleRate;
  }

  /** The timeline frame that belongs where the next write lands (no correction decided, nothing counted). */
  targetFrame(p: Omit<Position, 'nextFrame'>): number {
    return this.frameAt(p.localNowMs + (p.delayFrames * 1000) / this.options.sampleRate + p.latencyMs);
  }

  /**
   * What to do before the next write. `maxFrames` bounds a silence (one write's worth),
   * so the loop stays responsive.
   */
  decide(p: Position, maxFrames: number): Decision {
    const playsAtLocal = p.localNowMs + (p.delayFrames * 1000) / this.options.sampleRate + p.latencyMs;
    const targetFrame = this.frameAt(playsAtLocal);
    const errorFrames = targetFrame - p.nextFrame;
    let correction: Correction = { kind: 'none' };
    // Until the first frame is out, any error is fixed at once: a session starts exactly.
    // So after a gap: the audio resumes on its schedule, not a few ms late and caught up
    // frame by frame at about 1 ms a second.
    const exact = !this.playing || this.afterGap;
    const jump = exact ? this.options.deadbandFrames : this.hardFrames;
    if (errorFrames <= -jump) {
      correction = { kind: 'silence', frames: Math.min(maxFrames, Math.round(-errorFrames)) };
      if (!exact) this.stats.hardResyncs++;
    } else if (errorFrames >= jump) {
      correction = { kind: 'drop', frames: Math.round(errorFrames) };
      if (!exact) this.stats.hardResyncs++;
    } else if (this.sinceCorrection >= this.options.minFramesBetweenCorrections) {
      if (errorFrames >= this.options.deadbandFrames) correction = { kind: 'drop', frames: 1 };
      else if (errorFrames <= -this.options.deadbandFrames) correction = { kind: 'repeat', frames: 1 };
    }
    // A frame skipped to line up the first frame is the start, not a drift correction.
    if (correction.kind === 'drop' && correction.frames === 1 && !exact) this.stats.dropped++;
    if (correction.kind === 'repeat') this.stats.repeated++;
    if (correction.kind !== 'none') this.sinceCorrection = 0;
    return { targetFrame, errorFrames, correction };
  }

  /** The player wrote `frames` frames of the track (not silence). */
  wrote(frames: number): void {
    this.sinceCorrection += frames;
    if (frames > 0) (this.playing = true), (this.afterGap = false);
  }

  /** The player wrote silence where audio belonged (none was decoded yet). */
  gap(): void {
    if (this.playing) this.afterGap = true;
  }
}
