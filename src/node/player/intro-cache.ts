import type { TrackRef } from '../../protocol/schemas.js';

/** A track's start, decoded. */
export interface Intro {
  entryId: number;
  contentId: string;
  /** The track's first frames at the output's rate and channels, interleaved. */
  pcm: Int16Array;
}

/** An entry of the cache: with a store, its PCM stays on disk until a play asks for it. */
interface Entry {
  entryId: number;
  contentId: string;
  pcm?: Int16Array;
}

/** Where the cache keeps its entries across restarts (the node's SQLite file); every call is best effort. */
export interface IntroStore {
  /** The kept starts of exactly this shape, least recently used first (without their PCM: read() has it). */
  load(frames: number, channels: number): { entryId: number; contentId: string }[];
  /** One start's frames; undefined if it is gone or unreadable. */
  read(contentId: string): Int16Array | undefined;
  /** Keeps it; false if that failed (it then stays in memory). */
  put(intro: Intro, channels: number): boolean;
  /** The start was played (it moves to the end of the eviction order); under this entry id now. */
  used(contentId: string, entryId: number): void;
  remove(contentId: string): void;
  /** Writes whatever it held back (uses are written later, together). */
  flush?(): void;
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
 * `max` tracks (500 ms of 48 kHz stereo is 94 KiB). Given a store, on disk only, read
 * back when a play needs one (0.06 ms p50, 0.4 ms p99, measured with 256 kept): a node
 * that restarts has them again at once, and a large cache costs no memory. Without one,
 * in memory.
 */
export class IntroCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    /** Frames per intro. */
    readonly frames: number,
    private readonly channels: number,
    readonly max: number,
    /** The set of tracks changed (one added, one evicted). */
    private readonly changed: () => void,
    private readonly store?: IntroStore,
  ) {
    if (!store || max <= 0) return;
    for (const { entryId, contentId } of store.load(frames, channels)) this.entries.set(contentId, { entryId, contentId });
    this.evict();
  }

  get size(): number {
    return this.entries.size;
  }

  /** The cached start of this track, or undefined; counts as a use. */
  get(track: TrackRef): Int16Array | undefined {
    const intro = this.entries.get(track.contentId);
    if (!intro) return undefined;
    const pcm = intro.pcm ?? this.store?.read(track.contentId);
    this.entries.delete(track.contentId);
    if (!pcm || pcm.length !== this.frames * this.channels) {
      // Gone from the disk under us (or unreadable): not cached after all.
      this.store?.remove(track.contentId);
      this.changed();
      return undefined;
    }
    this.entries.set(track.contentId, { ...intro, entryId: track.entryId });
    this.store?.used(track.contentId, track.entryId);
    return pcm;
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
    let entry: Entry = intro;
    if (this.store) {
      // The same start decoded again (a replay from 0) is the same frames: no write for it.
      const onDisk = had ? had.pcm === undefined : this.store.put(intro, this.channels);
      if (had) this.store.used(track.contentId, track.entryId);
      // With a store the frames live on disk; in memory only where writing them failed.
      if (onDisk) entry = { entryId: track.entryId, contentId: track.contentId };
    }
    this.entries.set(track.contentId, entry);
    this.evict();
    if (!had || had.entryId !== track.entryId) this.changed();
  }

  /** The node stops: what the store held back is written. */
  close(): void {
    this.store?.flush?.();
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
