import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

export const exec = promisify(execFile);

export const KiB = 1024;
export const MiB = 1024 * 1024;
export const GiB = 1024 * 1024 * 1024;

/** Progress goes to stderr so stdout holds only the tables. */
export function note(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

/** A plain-text table: a title naming the comparison, a header row, aligned columns. */
export class Table {
  private readonly rows: string[][] = [];
  private readonly notes: string[] = [];

  constructor(
    private readonly title: string,
    private readonly header: string[],
    /** 'l' or 'r' per column; numbers read best right-aligned. */
    private readonly align: ('l' | 'r')[] = header.map((_, i) => (i === 0 ? 'l' : 'r')),
  ) {}

  row(...cells: (string | number)[]): this {
    this.rows.push(cells.map(String));
    return this;
  }

  note(text: string): this {
    this.notes.push(text);
    return this;
  }

  render(): string {
    const all = [this.header, ...this.rows];
    const widths = this.header.map((_, c) => Math.max(...all.map((r) => (r[c] ?? '').length)));
    const line = (r: string[]) =>
      r.map((cell, c) => (this.align[c] === 'r' ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  ').trimEnd();
    const rule = widths.map((w) => '-'.repeat(w)).join('  ');
    const out = [this.title, '='.repeat(Math.min(this.title.length, 100)), line(this.header), rule, ...this.rows.map(line)];
    for (const n of this.notes) out.push(`  ${n}`);
    return out.join('\n');
  }

  print(): void {
    process.stdout.write(`${this.render()}\n\n`);
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

/** MB/s with MB = 10^6 bytes (the unit disk and network figures use). */
export function mbps(bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000);
}

export function fmtMBps(bytes: number, ms: number): string {
  return mbps(bytes, ms).toFixed(0);
}

export function fmtBytes(n: number): string {
  if (n >= GiB) return `${(n / GiB).toFixed(2)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  if (n >= KiB) return `${(n / KiB).toFixed(1)} KiB`;
  return `${n} B`;
}

export function fmtMs(ms: number): string {
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 100) return `${ms.toFixed(0)} ms`;
  if (ms >= 1) return `${ms.toFixed(2)} ms`;
  return `${(ms * 1000).toFixed(0)} µs`;
}

export function pct(x: number): string {
  return `${(x * 100).toFixed(0)}%`;
}

/** "1GiB", "512M", "300MB", "1073741824" → bytes (binary units; MB is read as MiB too). */
export function parseSize(s: string): number {
  const m = /^\s*([\d.]+)\s*([kmgt]?)(i?b?)\s*$/i.exec(s);
  if (!m) throw new Error(`cannot read size "${s}" (try 1GiB, 512MiB, 2G)`);
  const mult = { '': 1, k: KiB, m: MiB, g: GiB, t: 1024 * GiB }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.round(Number(m[1]) * mult);
}

export async function withTempDir<T>(prefix: string, keep: boolean, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  try {
    return await fn(dir);
  } finally {
    if (keep) note(`kept ${dir}`);
    else await rm(dir, { recursive: true, force: true });
  }
}

/** Runs async jobs with at most `limit` in flight. */
export async function parallel<T>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  });
  await Promise.all(lanes);
}

export function machine(): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  return `${availableParallelism()} cores (${cpu}), ${(totalmem() / GiB).toFixed(0)} GiB RAM, Node ${process.version}, ${process.platform}/${process.arch}`;
}

export function now(): number {
  return performance.now();
}

/**
 * CPU time used by other processes on the machine between two snapshots (Linux only):
 * busy time from /proc/stat minus this process and its waited-for children.
 */
export interface CpuSnapshot {
  busy: number;
  total: number;
  self: number;
}

export function cpuSnapshot(): CpuSnapshot | undefined {
  try {
    const stat = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = stat[3] + (stat[4] ?? 0);
    const total = stat.reduce((a, b) => a + b, 0);
    const mine = readFileSync('/proc/self/stat', 'utf8');
    const fields = mine.slice(mine.lastIndexOf(')') + 2).split(' ').map(Number);
    const self = fields[11] + fields[12] + fields[13] + fields[14]; // utime stime cutime cstime
    return { busy: total - idle, total, self };
  } catch {
    return undefined;
  }
}

/** "other processes used 12% of the CPU" between two snapshots. */
export function otherLoad(a: CpuSnapshot | undefined, b: CpuSnapshot | undefined): string {
  if (!a || !b) return 'other load unknown';
  const total = b.total - a.total;
  const others = Math.max(0, b.busy - a.busy - (b.self - a.self));
  return `other processes used ${((others / Math.max(1, total)) * 100).toFixed(0)}% of all CPU time meanwhile`;
}
