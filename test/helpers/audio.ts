import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type TestFormat = 'mp3' | 'flac' | 'wav' | 'ogg' | 'opus' | 'm4a';

const CODEC: Record<TestFormat, string[]> = {
  mp3: ['-c:a', 'libmp3lame', '-b:a', '128k', '-id3v2_version', '3'],
  flac: ['-c:a', 'flac'],
  wav: ['-c:a', 'pcm_s16le'],
  ogg: ['-c:a', 'libvorbis', '-q:a', '3'],
  opus: ['-c:a', 'libopus', '-b:a', '96k'],
  m4a: ['-c:a', 'aac', '-b:a', '128k'],
};

export interface TrackSpec {
  format: TestFormat;
  seconds?: number;
  title?: string;
  artist?: string;
  album?: string;
  /** Seeds the noise so two tracks with different seeds share no audio. */
  seed?: number;
  sampleRate?: number;
  /** Extra tag bytes (a long comment) to make the tag block a given size. */
  comment?: string;
}

/** Encodes a real audio file with Debian's ffmpeg: pink noise, tagged as asked. */
export async function makeTrack(file: string, spec: TrackSpec): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const seconds = spec.seconds ?? 5;
  const rate = spec.sampleRate ?? (spec.format === 'opus' ? 48000 : 44100);
  const meta: string[] = [];
  const tag = (k: string, v: string | undefined) => {
    if (v !== undefined) meta.push('-metadata', `${k}=${v}`);
  };
  tag('title', spec.title);
  tag('artist', spec.artist);
  tag('album', spec.album);
  tag('comment', spec.comment);
  await run(
    'ffmpeg',
    [
      '-hide_banner', '-loglevel', 'error', '-y',
      '-f', 'lavfi', '-i', `anoisesrc=color=pink:amplitude=0.3:seed=${spec.seed ?? 1}:sample_rate=${rate}:duration=${seconds}`,
      '-ac', '2', '-ar', String(rate),
      ...meta, ...CODEC[spec.format],
      '-f', spec.format === 'm4a' ? 'ipod' : spec.format === 'opus' ? 'ogg' : spec.format,
      file,
    ],
    { maxBuffer: 16 * 1024 * 1024 },
  );
}

const CONTAINER: Record<TestFormat, string> = { mp3: 'mp3', flac: 'flac', wav: 'wav', ogg: 'ogg', opus: 'ogg', m4a: 'ipod' };

export interface ToneSpec {
  format: TestFormat;
  frequency?: number;
  seconds?: number;
  sampleRate?: number;
}

/** Encodes a stereo sine tone (default 1 kHz, 3 s at 44.1 kHz; Opus is always 48 kHz). */
export async function makeTone(file: string, spec: ToneSpec): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const rate = spec.format === 'opus' ? 48000 : (spec.sampleRate ?? 44100);
  await run('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', `sine=frequency=${spec.frequency ?? 1000}:sample_rate=${rate}:duration=${spec.seconds ?? 3}`,
    '-ac', '2', '-ar', String(rate), ...CODEC[spec.format], '-f', CONTAINER[spec.format], file,
  ]);
}

/**
 * The frequency of a steady tone in interleaved PCM (first channel), from the mean
 * spacing of its upward zero crossings; also its RMS level (0..1).
 */
export function toneOf(pcm: Int16Array, channels: number, sampleRate: number): { frequency: number; rms: number } {
  const frames = Math.floor(pcm.length / channels);
  let first = -1;
  let last = -1;
  let crossings = 0;
  let sum = 0;
  for (let i = 0; i < frames; i++) {
    const v = pcm[i * channels];
    sum += v * v;
    if (i > 0 && pcm[(i - 1) * channels] < 0 && v >= 0) {
      // Sub-sample position of the crossing, by linear interpolation.
      const a = pcm[(i - 1) * channels];
      const at = i - 1 + -a / (v - a);
      if (first < 0) first = at;
      last = at;
      crossings++;
    }
  }
  const rms = Math.sqrt(sum / Math.max(1, frames)) / 32768;
  if (crossings < 2) return { frequency: 0, rms };
  return { frequency: ((crossings - 1) * sampleRate) / (last - first), rms };
}
