import type { TrackRef } from '../../protocol/schemas.js';

/** A track's start, decoded. */
export interface Intro {
  entryId: number;
  contentId: string;
  /** The track's first frames at the output's rate and channels, interleaved. */
  pcm: Int16Array;
}

/** Where the cache keeps its entries across restarts (the node's SQLite file); every call is best effort. */
export interface IntroStore {
  /** The kept starts of exactly this shape, least recently used first. */
  load(frames: number, channels: number): Intro[];
  put(intro: Intro, channels: number): void;
  /** The start was played (it moves to the end of the eviction order); under this entry id now. */
  used(contentId: string, entryId: number): void;
  remove(contentId: string): void;
}

/**
 * The first moments of recently played tracks, decoded (at the output's rate): a play of
 * one of them from its start is ready the moment its prepare arrives — the timeline plays
 * the cached frames while the decoder opens and continues exactly after them (a decoder
 * skips to a frame by decoding from the start, so the frames after the cached ones are
 * the same either way). The node reports the list ('intros'), so the hub can send the
 * start with the prepare instead of waiting for the barrier.
 *
 * Keyed by content (the same bytes decode to the same frames); the most recently used
 * `max` tracks (500 ms of 48 kHz stereo is 96 KiB), in memory and, given a store, on disk
 * too: a node that restarts has them again at once.
 */
export class IntroCache {
  private readonly entries = new Map<string, Intro>();

  constructor(
    /** Frames per intro. */
    readonly frames: number,
    private readonly channels: number,
    private readonly max: number,
    /** The set of tracks changed (one added, one evicted). */
    private readonly changed: () => void,
    private readonly store?: IntroStore,
  ) {
    if (!store || max <= 0) return;
    for (const intro of store.load(frames, channels)) this.entries.set(intro.contentId, intro);
    this.evict();
  }

  /** The cached start of this track, or undefined; counts as a use. */
  get(track: TrackRef): Int16Array | undefined {
    const intro = this.entries.get(track.contentId);
    if (!intro) return undefined;
    this.entries.delete(track.contentId);
    this.entries.set(track.contentId, { ...intro, entryId: track.entryId });
    this.store?.used(track.contentId, track.entryId);
    return intro.pcm;
  }

  has(track: TrackRef): boolean {
    return this.entries.has(track.contentId);
  }

  /** Keeps a decoded start (exactly `frames` frames from the track's frame 0). */
  add(track: TrackRef, pcm: Int16Array): void {
    if (this.max <= 0 || pcm.length !== this.frames * this.channels) return;
    const had = this.entries.get(track.contentId);
    this.entries.delete(track.contentId);
    const intro = { entryId: track.entryId, contentId: track.contentId, pcm };
    this.entries.set(track.contentId, intro);
    // The same start decoded again (a replay from 0) is the same frames: no write for it.
    if (!had) this.store?.put(intro, this.channels);
    else this.store?.used(track.contentId, track.entryId);
    this.evict();
    if (!had || had.entryId !== track.entryId) this.changed();
  }

  /** Entries beyond `max`, least recently used first, go. */
  private evict(): void {
    while (this.entries.size > this.max) {
      const oldest = this.entries.keys().next().value!;
      this.entries.delete(oldest);
      this.store?.remove(oldest);
    }
  }

  /** The cached tracks, most recently used last. */
  list(): { entryId: number; contentId: string }[] {
    return [...this.entries.values()].map(({ entryId, contentId }) => ({ entryId, contentId }));
  }
}
