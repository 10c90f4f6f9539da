import type { Logger } from '../../log.js';
import type { AudioOutput, FrameTag } from './output.js';
import { PlayCursor } from './play-cursor.js';

export interface NullOutputOptions {
  sampleRate: number;
  channels: number;
  /** How far ahead the writer may fill, in ms (a real card's buffer). */
  bufferMs?: number;
  /** Why there is no real output: said once, as a warning, when the output opens. */
  reason?: string;
  log?: Logger;
}

/**
 * No sound device: frames are consumed in real time by the local clock and dropped, so
 * the node keeps its place in the group (and can come back audible on the next play)
 * while nothing is heard. Says so once, loudly.
 */
export class NullOutput implements AudioOutput {
  readonly kind = 'null' as const;
  readonly sampleRate: number;
  readonly channels: number;
  private readonly capacity: number;
  private readonly cursor: PlayCursor;
  private warned = false;

  constructor(private readonly options: NullOutputOptions) {
    this.sampleRate = options.sampleRate;
    this.channels = options.channels;
    this.capacity = Math.max(1, Math.round(((options.bufferMs ?? 100) * options.sampleRate) / 1000));
    this.cursor = new PlayCursor(options.sampleRate, 1);
  }

  async open(): Promise<void> {
    if (this.warned) return;
    this.warned = true;
    const msg = `no audio output: playing to nothing, nothing will be heard (${this.options.reason ?? 'output.kind is null'})`;
    if (this.options.log) this.options.log.warn({ output: 'null' }, msg);
    else process.emitWarning(msg, { code: 'FIREFLY_NULL_OUTPUT' });
  }

  underruns(): number {
    return this.cursor.underruns;
  }

  delayFrames(): number {
    return Math.round(this.cursor.delay(performance.now()));
  }

  async write(pcm: Int16Array, _tag: FrameTag): Promise<void> {
    const frames = Math.floor(pcm.length / this.channels);
    for (;;) {
      const wait = this.cursor.waitMs(Math.min(frames, this.capacity), this.capacity, performance.now());
      if (wait <= 0) break;
      await new Promise((r) => setTimeout(r, Math.max(1, wait)));
    }
    this.cursor.wrote(frames, performance.now());
  }

  async flush(): Promise<void> {
    this.cursor.reset(performance.now());
  }

  async close(): Promise<void> {
    this.cursor.reset(performance.now());
  }
}
