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
