/**
 * One interface for every audio output (Snapcast's player interface is the model):
 * the scheduler asks where the device is and writes the frames that belong there.
 * One file per backend beside this one.
 *
 * PCM is interleaved signed 16-bit little-endian at the output's sample rate and
 * channel count (Int16Array, frames = length / channels).
 */
export interface FrameTag {
  /** Playback session the frames belong to (a new session on play, seek, next…). */
  session: string;
  /** Position in the track of the first frame of this write, in frames at the output rate; -1 for silence. */
  trackFrame: number;
  /** The catalogue entry the frames belong to (absent for silence). */
  entryId?: number;
}

export interface AudioOutput {
  readonly kind: 'pulse' | 'alsa' | 'measure' | 'null';
  readonly sampleRate: number;
  readonly channels: number;
  open(): Promise<void>;
  /**
   * Frames written but not yet played: the next frame written will play this many
   * frames from now (device buffer plus the device's reported latency).
   */
  delayFrames(): number;
  /** Writes frames; resolves once the device has accepted them (back-pressure). */
  write(pcm: Int16Array, tag: FrameTag): Promise<void>;
  /** Drops what is queued but not yet played (pause, seek), where the backend can. */
  flush(): Promise<void>;
  /**
   * How often (or how many frames long) the device ran dry so far: any count that grows
   * with each underrun, where the backend can tell. After one, the player lines the
   * audio up on its schedule at once instead of frame by frame.
   */
  underruns?(): number;
  close(): Promise<void>;
}
