import type { Readable } from 'node:stream';
import type { TrackRef } from '../../protocol/schemas.js';
import type { OpenDecoder, PcmReader } from '../decode/pcm.js';

/** A block of decoded audio and where it sits. */
export interface TimedBlock {
  pcm: Int16Array;
  entryId: number;
  /** Track position of the first frame (frames at the output rate). */
  trackFrame: number;
  /** Timeline position of the first frame: frames since the session's first track's frame 0, across gapless tracks. */
  timelineFrame: number;
}

export interface PcmTimelineOptions {
  sampleRate: number;
  channels: number;
  /** Decode at most this far ahead of what was taken (frames). */
  aheadFrames: number;
  /** Frames asked of the decoder per read. */
  readFrames: number;
  /**
   * The first track's start, decoded already (an IntroCache entry: its frames from 0):
   * played from startFrame while the decoder opens, which then continues right after it.
   */
  seed?: Int16Array;
  /** Every track decoded from its frame 0 hands its first `introFrames` frames here (a copy). */
  onIntro?: (track: TrackRef, pcm: Int16Array) => void;
  introFrames?: number;
  /**
   * Keep this many of the frames last taken or dropped, so the head can step back over
   * them (`rewind`): a stop parks the running decode a little before where it was
   * instead of starting a decoder afresh there. 0: none kept.
   */
  keepFrames?: number;
  /** Decoded off the play path (see DecodeOptions.background). */
  background?: boolean;
  /**
   * With a seed: open the decoder only once release() is called or fewer than this many
   * seeded frames are left to take, whichever comes first. The seed carries the start
   * meanwhile, so reading the track's chunks and starting a decoder stay out of the
   * moment the session starts. Undefined: the decoder opens at once.
   */
  openBelowFrames?: number;
}

/** Bytes of a track, fetched first if the node lacks some of them. */
export type OpenTrack = (track: TrackRef) => Promise<Readable>;

/**
 * The decoded audio of one session, ahead of the output: the first track from its start
 * position, then — gaplessly, sample for sample — each next track the hub names. A pump
 * keeps up to `aheadFrames` decoded so the write loop takes frames synchronously and a
 * slow decoder start (opening the next track) never reaches the output.
 */
export class PcmTimeline {
  private blocks: TimedBlock[] = [];
  private buffered = 0;
  private decoder?: PcmReader;
  private current: { track: TrackRef; nextTrackFrame: number };
  private next: TrackRef | null;
  /** Tracks after `next`, in play order: the timeline plays on through them if the hub says nothing more (it is away). */
  private upcoming: TrackRef[];
  /** Timeline frame the next decoded frame gets. */
  private decodedTo: number;
  /** Timeline frame of the first frame not yet taken or dropped. */
  headFrame: number;
  private closed = false;
  /** The source is exhausted: the last track ended and nothing follows. */
  finished = false;
  error?: { entryId: number; message: string };
  private wake?: () => void;
  private dataWaiters: (() => void)[] = [];
  /** The start of the track being decoded, collected for onIntro (decoded from its frame 0). */
  private intro?: { track: TrackRef; parts: Int16Array[]; frames: number };
  /** Frames taken or dropped lately, oldest first (up to keepFrames of them), for rewind(). */
  private history: TimedBlock[] = [];
  private historyFrames = 0;
  /** The decoder moved on from the first track (timeline frames are no longer its track frames). */
  private crossed = false;
  /** The decoder waits to open (openBelowFrames) until release() or the seed runs low. */
  private held = false;

  constructor(
    first: TrackRef,
    startFrame: number,
    next: TrackRef | null,
    private readonly openTrack: OpenTrack,
    private readonly openDecoder: OpenDecoder,
    private readonly options: PcmTimelineOptions,
    private readonly onError: (entryId: number, message: string) => void,
    upcoming: readonly TrackRef[] = [],
  ) {
    this.current = { track: first, nextTrackFrame: startFrame };
    this.next = next;
    this.upcoming = next ? [...upcoming] : [];
    this.decodedTo = startFrame;
    this.headFrame = startFrame;
    const seedFrames = (options.seed?.length ?? 0) / options.channels;
    if (options.seed && startFrame < seedFrames) {
      this.blocks.push({ pcm: options.seed.slice(startFrame * options.channels), entryId: first.entryId, trackFrame: startFrame, timelineFrame: startFrame });
      this.buffered = seedFrames - startFrame;
      this.decodedTo = seedFrames;
      this.current.nextTrackFrame = seedFrames;
      this.held = options.openBelowFrames !== undefined;
    }
    void this.pump();
  }

  /** Frames decoded and not yet taken. */
  get bufferedFrames(): number {
    return this.buffered;
  }

  /** The track the decoder is in (ahead of the output by up to aheadFrames). */
  get decodingEntryId(): number {
    return this.current.track.entryId;
  }

  /** The track the decoder is in, as the hub named it. */
  get decodingTrack(): TrackRef {
    return this.current.track;
  }

  /**
   * Still in the first track: every timeline frame is that track's own frame number, so a
   * position in the track is a position in the timeline (a parked decode is reported so).
   */
  get inFirstTrack(): boolean {
    return !this.crossed;
  }

  /** The track the head of the timeline belongs to. */
  get headEntryId(): number {
    return this.blocks[0]?.entryId ?? this.current.track.entryId;
  }

  /** The decoder is waiting to open (see openBelowFrames). */
  get holding(): boolean {
    return this.held && !this.decoder && !this.closed;
  }

  /** Lets a held decoder open now (see openBelowFrames). */
  release(): void {
    if (!this.held) return;
    this.held = false;
    this.kick();
  }

  /** Decode at most this far ahead from now on (frames). */
  setAhead(frames: number): void {
    this.options.aheadFrames = frames;
    this.kick();
  }

  /** What follows the track being decoded now (and after it); replaces what was said before. */
  setNext(next: TrackRef | null, upcoming: readonly TrackRef[] = []): void {
    this.next = next;
    this.upcoming = next ? [...upcoming] : [];
    if (next) this.finished = false;
    this.kick();
  }

  /** Up to `frames` frames from the head, never across a track change; undefined when nothing is decoded. */
  take(frames: number): TimedBlock | undefined {
    const head = this.blocks[0];
    if (!head) return undefined;
    const n = Math.min(frames, head.pcm.length / this.options.channels);
    let out: TimedBlock;
    if (n * this.options.channels === head.pcm.length) {
      this.blocks.shift();
      out = head;
    } else {
      out = { ...head, pcm: head.pcm.subarray(0, n * this.options.channels) };
      head.pcm = head.pcm.subarray(n * this.options.channels);
      head.trackFrame += n;
      head.timelineFrame += n;
    }
    this.keep(out, n);
    this.consumed(n);
    return out;
  }

  /** How far rewind() can step back now (frames). */
  get rewindableFrames(): number {
    return this.historyFrames;
  }

  /**
   * Steps the head back by up to `frames` frames over those taken or dropped lately (see
   * keepFrames): they come again, exactly as before. Returns how many frames it went back.
   */
  rewind(frames: number): number {
    const { channels } = this.options;
    let left = Math.max(0, Math.floor(frames));
    while (left > 0 && this.history.length > 0) {
      const last = this.history[this.history.length - 1];
      const have = last.pcm.length / channels;
      let back: TimedBlock;
      if (have <= left) {
        this.history.pop();
        back = last;
      } else {
        const keep = have - left;
        back = { ...last, pcm: last.pcm.subarray(keep * channels), trackFrame: last.trackFrame + keep, timelineFrame: last.timelineFrame + keep };
        last.pcm = last.pcm.subarray(0, keep * channels);
      }
      const n = back.pcm.length / channels;
      this.blocks.unshift(back);
      this.historyFrames -= n;
      this.buffered += n;
      this.headFrame -= n;
      left -= n;
    }
    return Math.max(0, Math.floor(frames)) - left;
  }

  /**
   * Puts frames of the first track just before the head in front of it (a cached start):
   * `pcm` holds that track's frames from `trackFrame` to the head. Only while the timeline
   * is in its first track (timeline frames are its frames); false and nothing changed
   * otherwise, or when they do not end exactly at the head.
   */
  prepend(pcm: Int16Array, trackFrame: number): boolean {
    const n = pcm.length / this.options.channels;
    if (this.crossed || !Number.isInteger(n) || n === 0 || trackFrame < 0 || trackFrame + n !== this.headFrame) return false;
    const head = this.blocks[0];
    if (head && (head.timelineFrame !== this.headFrame || head.trackFrame !== this.headFrame)) return false;
    this.blocks.unshift({ pcm, entryId: head?.entryId ?? this.current.track.entryId, trackFrame, timelineFrame: trackFrame });
    this.buffered += n;
    this.headFrame = trackFrame;
    // What lay before the head belongs before these frames no more.
    this.history = [];
    this.historyFrames = 0;
    return true;
  }

  /** Remembers a block just taken, for rewind(); forgets the oldest beyond keepFrames. */
  private keep(block: TimedBlock, frames: number): void {
    const max = this.options.keepFrames ?? 0;
    if (max <= 0) return;
    this.history.push(block);
    this.historyFrames += frames;
    const { channels } = this.options;
    while (this.history.length > 0 && this.historyFrames - this.history[0].pcm.length / channels >= max) {
      this.historyFrames -= this.history.shift()!.pcm.length / channels;
    }
  }

  /** Discards up to `frames` frames from the head; returns how many went. */
  drop(frames: number): number {
    let left = frames;
    while (left > 0 && this.blocks.length > 0) left -= this.take(left)!.pcm.length / this.options.channels;
    return frames - left;
  }

  /** Resolves when more audio is decoded, the source finished, or it failed. */
  whenMoreData(): Promise<void> {
    if (this.finished || this.error || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.dataWaiters.push(resolve));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.kick();
    this.notifyData();
    await this.decoder?.close().catch(() => undefined);
  }

  private consumed(frames: number): void {
    this.buffered -= frames;
    this.headFrame += frames;
    this.kick();
  }

  private kick(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private notifyData(): void {
    const waiters = this.dataWaiters;
    this.dataWaiters = [];
    for (const w of waiters) w();
  }

  /** Adds decoded frames to the intro being collected; hands it on once it is whole. */
  private collectIntro(pcm: Int16Array): void {
    const intro = this.intro!;
    const want = this.options.introFrames!;
    const { channels } = this.options;
    const n = Math.min(want - intro.frames, pcm.length / channels);
    intro.parts.push(pcm.slice(0, n * channels));
    intro.frames += n;
    if (intro.frames < want) return;
    this.intro = undefined;
    const whole = new Int16Array(want * channels);
    let at = 0;
    for (const part of intro.parts) whole.set(part, at), (at += part.length);
    this.options.onIntro!(intro.track, whole);
  }

  private async pump(): Promise<void> {
    const { channels, sampleRate } = this.options;
    try {
      while (!this.closed) {
        // Opened even with the buffer full: a seeded start plays while the decoder opens
        // (once released, or once the seed runs low: openBelowFrames).
        if (this.held && this.buffered < (this.options.openBelowFrames ?? 0)) this.held = false;
        if (!this.decoder && !this.finished && !this.held) {
          const { track, nextTrackFrame } = this.current;
          const bytes = await this.openTrack(track);
          if (this.closed) {
            bytes.destroy();
            return;
          }
          this.decoder = this.openDecoder(bytes, {
            format: track.format,
            sampleRate,
            channels,
            startFrame: nextTrackFrame,
            durationSeconds: track.durationMs === null ? undefined : track.durationMs / 1000,
            ...(this.options.background && { background: true }),
          });
          this.intro = nextTrackFrame === 0 && this.options.onIntro && (this.options.introFrames ?? 0) > 0 ? { track, parts: [], frames: 0 } : undefined;
        }
        if (!this.decoder || this.buffered >= this.options.aheadFrames || (this.finished && !this.next)) {
          await new Promise<void>((r) => (this.wake = r));
          continue;
        }
        const pcm = await this.decoder.read(this.options.readFrames);
        if (this.closed) return;
        if (pcm === null) {
          // The track ended: continue into the next one at exactly the next frame.
          this.intro = undefined;
          await this.decoder.close();
          this.decoder = undefined;
          if (this.next) {
            this.current = { track: this.next, nextTrackFrame: 0 };
            this.next = this.upcoming.shift() ?? null;
            this.crossed = true;
          } else {
            this.finished = true;
            this.notifyData();
            // Wait: the hub may still name a next track before the audio runs out.
            while (!this.next && !this.closed) await new Promise<void>((r) => (this.wake = r));
            if (this.next) {
              this.current = { track: this.next, nextTrackFrame: 0 };
              this.next = this.upcoming.shift() ?? null;
              this.finished = false;
              this.crossed = true;
            }
          }
          continue;
        }
        const frames = pcm.length / channels;
        if (frames === 0) continue;
        if (this.intro) this.collectIntro(pcm);
        this.blocks.push({ pcm, entryId: this.current.track.entryId, trackFrame: this.current.nextTrackFrame, timelineFrame: this.decodedTo });
        this.current.nextTrackFrame += frames;
        this.decodedTo += frames;
        this.buffered += frames;
        this.notifyData();
      }
    } catch (err) {
      if (this.closed) return;
      const message = (err as Error).message;
      this.error = { entryId: this.current.track.entryId, message };
      this.notifyData();
      this.onError(this.current.track.entryId, message);
      await this.decoder?.close().catch(() => undefined);
    }
  }
}
