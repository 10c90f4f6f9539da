import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** True where a real PulseAudio daemon and parec can run (Debian: pulseaudio, pulseaudio-utils). */
export function pulseInstalled(): boolean {
  return spawnSync('pulseaudio', ['--version']).status === 0 && spawnSync('parec', ['--version']).status === 0;
}

/** A private PulseAudio daemon with one null sink, ff1, authenticating by a cookie of our own. */
export interface Pulse {
  daemon: ChildProcess;
  env: NodeJS.ProcessEnv;
  socket: string;
  log: () => string;
  /** Stops the daemon and waits (up to 5 s) until it is gone, so its folder can be removed. */
  stop: () => Promise<void>;
}

export async function startPulse(dir: string): Promise<Pulse> {
  const run = join(dir, 'run');
  const state = join(dir, 'state');
  await mkdir(run, { recursive: true });
  await mkdir(state, { recursive: true });
  const cookie = join(dir, 'cookie');
  await writeFile(cookie, randomBytes(256));
  const env = { ...process.env, PULSE_RUNTIME_PATH: run, PULSE_STATE_PATH: state, PULSE_COOKIE: cookie };
  const daemon = spawn(
    'pulseaudio',
    ['--daemonize=no', '--exit-idle-time=-1', '-n', '--load=module-null-sink sink_name=ff1 rate=48000', `--load=module-native-protocol-unix auth-cookie=${cookie}`],
    { env, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  daemon.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const socket = join(run, 'native');
  for (let i = 0; i < 100 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(existsSync(socket), `pulseaudio did not start:\n${log}`);
  const stop = async () => {
    if (daemon.exitCode !== null || daemon.signalCode !== null) return;
    const gone = new Promise<void>((r) => daemon.once('exit', () => r()));
    daemon.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([gone, new Promise<void>((r) => (timer = setTimeout(r, 5000)))]);
    clearTimeout(timer);
    if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL');
  };
  return { daemon, env, socket, log: () => log, stop };
}

