import { createReadStream, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDecoder } from '../src/node/decode/ffmpeg.js';
import { NullOutput } from '../src/node/output/null.js';
import { exec, fmtBytes, note, Table } from './util.js';

/**
 * Decode cost per format, and what a node spends playing FLAC in real time.
 *
 * CPU is counted in two places, both from the kernel: the node process itself
 * (process.cpuUsage: reading the bytes, piping, copying PCM out) and the ffmpeg
 * subprocess (this process's cutime + cstime in /proc/self/stat, which the kernel adds
 * once a child is reaped; 10 ms ticks, so each decode is of several minutes of audio).
 */

const FORMATS = ['mp3', 'flac', 'wav', 'ogg', 'opus', 'm4a'] as const;
const CODEC: Record<(typeof FORMATS)[number], string[]> = {
  mp3: ['-c:a', 'libmp3lame', '-b:a', '320k', '-f', 'mp3'],
  flac: ['-c:a', 'flac', '-f', 'flac'],
  wav: ['-c:a', 'pcm_s16le', '-f', 'wav'],
  ogg: ['-c:a', 'libvorbis', '-q:a', '6', '-f', 'ogg'],
  opus: ['-c:a', 'libopus', '-b:a', '128k', '-f', 'ogg'],
  m4a: ['-c:a', 'aac', '-b:a', '256k', '-f', 'ipod'],
};

/** CPU seconds of this process's reaped children (user + system). */
function childCpuSeconds(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  // Fields after the command name (which may hold spaces) start at field 3.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = 100; // USER_HZ on Linux
  return (Number(fields[13]) + Number(fields[14])) / ticks;
}

function selfCpuSeconds(since: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
}

async function encode(file: string, format: (typeof FORMATS)[number], seconds: number): Promise<void> {
  const rate = format === 'opus' ? 48000 : 44100;
  await exec('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', `anoisesrc=color=pink:amplitude=0.3:seed=7:sample_rate=${rate}:duration=${seconds}`,
    '-ac', '2', '-ar', String(rate), ...CODEC[format], file,
  ]);
}

async function decodeAll(file: string, format: string): Promise<number> {
  const reader = openDecoder(createReadStream(file), { format, sampleRate: 48000, channels: 2, startFrame: 0 });
  let frames = 0;
  for (;;) {
    const pcm = await reader.read(4800);
    if (!pcm) break;
    frames += pcm.length / 2;
  }
  await reader.close();
  return frames;
}

export async function benchDecode(options: { seconds?: number; realtimeSeconds?: number } = {}): Promise<string> {
  const seconds = options.seconds ?? 180;
  const realtime = options.realtimeSeconds ?? 20;
  const dir = await mkdtemp(join(tmpdir(), 'firefly-bench-decode-'));
  try {
    const speed = new Table(`Decode cost: ${seconds / 60} min of stereo pink noise per format, decoded to 48 kHz s16 (ffmpeg subprocess, soxr)`, [
      'format', 'ffmpeg CPU s/min', 'node CPU s/min', 'total s/min', 'wall ms', 'x real time',
    ]);
    for (const format of FORMATS) {
      const file = join(dir, `noise.${format}`);
      note(`decode bench: encoding ${format}`);
      await encode(file, format, seconds);
      await decodeAll(file, format); // warm the page cache and the binary
      const child0 = childCpuSeconds();
      const self0 = process.cpuUsage();
      const t0 = performance.now();
      const frames = await decodeAll(file, format);
      const wall = performance.now() - t0;
      const ffmpegCpu = childCpuSeconds() - child0;
      const nodeCpu = selfCpuSeconds(self0);
      const minutes = frames / 48000 / 60;
      speed.row(format, (ffmpegCpu / minutes).toFixed(3), (nodeCpu / minutes).toFixed(3), ((ffmpegCpu + nodeCpu) / minutes).toFixed(3), wall.toFixed(0), ((frames / 48000) / (wall / 1000)).toFixed(0));
    }
    speed.note('ffmpeg CPU: the subprocess (kernel-reported, 10 ms ticks); node CPU: this process (stream reads, pipe, copies).');
    speed.note('44.1 kHz sources are resampled to 48 kHz (soxr, 28-bit precision); Opus is 48 kHz already.');

    // Real time: a FLAC decoded as a node plays it, into the null output (paced by the clock).
    note(`decode bench: FLAC in real time for ${realtime} s`);
    const flac = join(dir, 'noise.flac');
    const out = new NullOutput({ sampleRate: 48000, channels: 2, bufferMs: 100, reason: 'benchmark', log: { warn() {} } as never });
    await out.open();
    const reader = openDecoder(createReadStream(flac), { format: 'flac', sampleRate: 48000, channels: 2, startFrame: 0 });
    const child0 = childCpuSeconds();
    const self0 = process.cpuUsage();
    const rss0 = process.memoryUsage().rss;
    let rssMax = rss0;
    const t0 = performance.now();
    let frames = 0;
    while (frames < realtime * 48000) {
      const pcm = await reader.read(960);
      if (!pcm) break;
      await out.write(pcm, { session: 'bench', trackFrame: frames });
      frames += pcm.length / 2;
      rssMax = Math.max(rssMax, process.memoryUsage.rss());
    }
    const wall = (performance.now() - t0) / 1000;
    const nodeCpu = selfCpuSeconds(self0);
    await reader.close(); // ffmpeg is reaped here, so its CPU lands in cutime
    const ffmpegCpu = childCpuSeconds() - child0;
    await out.close();
    const live = new Table(`Playing FLAC in real time (${wall.toFixed(1)} s, 20 ms writes into the null output)`, ['process', 'CPU %', 'CPU s/min of audio', 'RSS']);
    live.row('node (this process)', ((nodeCpu / wall) * 100).toFixed(2), ((nodeCpu / wall) * 60).toFixed(3), `${fmtBytes(rssMax)} (max; +${fmtBytes(Math.max(0, rssMax - rss0))})`);
    live.row('ffmpeg decoder', ((ffmpegCpu / wall) * 100).toFixed(2), ((ffmpegCpu / wall) * 60).toFixed(3), 'not sampled');
    live.note('node RSS is the whole benchmark process (it also ran the table above), so read the increase.');
    live.note('ffmpeg decodes ahead of playback until ~2 s of PCM is buffered, then waits on the pipe.');
    return `${speed.render()}\n\n${live.render()}\n`;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
