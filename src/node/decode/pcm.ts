import type { Readable } from 'node:stream';

/**
 * Decoded audio, pulled a block at a time: interleaved signed 16-bit PCM at the rate
 * and channel count asked for (resampled as needed). Never holds a whole track.
 */
export interface PcmReader {
  readonly sampleRate: number;
  readonly channels: number;
  /** Up to `frames` frames; fewer only at the end; null once the track is over. */
  read(frames: number): Promise<Int16Array | null>;
  /** Stops decoding and frees what it holds (kills a decoder subprocess, say). */
  close(): Promise<void>;
}

export interface DecodeOptions {
  /** What the bytes are: mp3, flac, wav, ogg, opus, m4a (from the catalogue). */
  format: string;
  sampleRate: number;
  channels: number;
  /** First frame to return, in frames at `sampleRate` from the start of the track. */
  startFrame: number;
  /**
   * The track's duration from the catalogue, if known. A decode that ends well short of
   * it (a truncated file often decodes "cleanly" up to the cut) is reported as an error.
   */
  durationSeconds?: number;
  /**
   * Decoded off the play path (a track's start cached ahead of need): a decoder made for
   * the purpose, leaving the ones kept ready for plays alone (no spare ffmpeg taken or
   * started again for it).
   */
  background?: boolean;
}

/** Opens a decoder over a track's bytes (a stream from the chunk store). */
export type OpenDecoder = (bytes: Readable, options: DecodeOptions) => PcmReader;
