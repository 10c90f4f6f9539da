import type { TrackRef } from '../../protocol/schemas.js';

/** A track's start, decoded. */
export interface Intro {
  entryId: number;
  contentId: string;
  /** The track's first frames at the output's rate and channels, interleaved. */
  pcm: Int16Array;
}

/**
 * The first moments of recently played tracks, decoded (at the output's rate): a play of
 * one of them from its start is ready the moment its prepare arrives — the timeline plays
 * the cached frames while the decoder opens and continues exactly after them (a decoder
 * skips to a frame by decoding from the start, so the frames after the cached ones are
 * the same either way). The node reports the list ('intros'), so the hub can send the
 * start with the prepare instead of waiting for the barrier.
 *
 * Keyed by content (the same bytes decode to the same frames); in memory, the most
 * recently used `max` tracks (500 ms of 48 kHz stereo is 96 KiB).
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
  ) {}

  /** The cached start of this track, or undefined; counts as a use. */
  get(track: TrackRef): Int16Array | undefined {
    const intro = this.entries.get(track.contentId);
    if (!intro) return undefined;
    this.entries.delete(track.contentId);
    this.entries.set(track.contentId, { ...intro, entryId: track.entryId });
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
    this.entries.set(track.contentId, { entryId: track.entryId, contentId: track.contentId, pcm });
    while (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!);
    if (!had || had.entryId !== track.entryId) this.changed();
  }

  /** The cached tracks, most recently used last. */
  list(): { entryId: number; contentId: string }[] {
    return [...this.entries.values()].map(({ entryId, contentId }) => ({ entryId, contentId }));
  }
}
