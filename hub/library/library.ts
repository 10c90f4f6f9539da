import { EventEmitter } from 'node:events';
import { stat } from 'node:fs/promises';
import { basename, join, relative, resolve, sep } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from '../../src/log.js';
import { Catalogue, type UpsertResult } from './catalogue.js';
import { FileChangedWhileReading } from './index-file.js';
import { IndexError, IndexPool } from './index-pool.js';

export interface LibraryOptions {
  roots: string[];
  /** Folders never indexed even when inside a root: the hub's own data folder. */
  exclude?: string[];
  settleMs: number;
  followSymlinks: boolean;
  inMemoryLimitBytes: number;
  workers: number;
}

export interface ScanProgress {
  /** Files waiting or being read right now. */
  pending: number;
  /** Files read since the hub started. */
  indexed: number;
  /** True once the first walk of every folder is done and its files are indexed. */
  ready: boolean;
}

interface LibraryEvents {
  /** The library version moved on (something was added, changed or removed). */
  version: [version: number];
  /** One file was indexed: what happened to it. */
  indexed: [info: { root: string; path: string } & UpsertResult & { status: string; error?: string }];
  progress: [ScanProgress];
  ready: [];
}

type Job = { kind: 'index'; dueAt: number } | { kind: 'remove' };

/** Files the watcher must never see: dotfiles and the upload temporaries of the web page. */
export function ignoredPath(path: string): boolean {
  return basename(path).startsWith('.');
}

/**
 * Keeps the catalogue true to the library folders: walks them at start, then follows
 * every add, change, unlink, rename and folder move that chokidar reports. A file is
 * indexed only once its size and time have stood still for `settleMs`, so a copy in
 * progress is not indexed half-way.
 */
export class Library extends EventEmitter<LibraryEvents> {
  private watcher?: FSWatcher;
  private pool?: IndexPool;
  private readonly rootIds = new Map<string, number>();
  private readonly jobs = new Map<string, Job>();
  private readonly running = new Set<string>();
  private timer?: NodeJS.Timeout;
  private indexedCount = 0;
  private isReady = false;
  private initialSeen?: Set<string>;
  private idleWaiters: (() => void)[] = [];
  private stopped = false;

  constructor(
    private readonly catalogue: Catalogue,
    private readonly options: LibraryOptions,
    private readonly log: Logger,
  ) {
    super();
  }

  private excluded(p: string): boolean {
    return (this.options.exclude ?? []).some((dir) => p === dir || p.startsWith(dir + sep));
  }

  get roots(): string[] {
    return [...this.rootIds.keys()];
  }

  progress(): ScanProgress {
    return { pending: this.jobs.size + this.running.size, indexed: this.indexedCount, ready: this.isReady };
  }

  async start(): Promise<void> {
    const roots = this.options.roots.map((r) => resolve(r));
    for (const root of roots) {
      const s = await stat(root).catch(() => undefined);
      if (!s?.isDirectory()) throw new Error(`library folder ${root} does not exist or is not a folder (setting: library / FIREFLY_LIBRARY)`);
      this.rootIds.set(root, this.catalogue.rootId(root));
    }
    this.pool = new IndexPool({ inMemoryLimitBytes: this.options.inMemoryLimitBytes }, this.options.workers);
    this.initialSeen = new Set();
    this.watcher = watch(roots, {
      ignored: (p: string) => ignoredPath(p) || this.excluded(p),
      ignoreInitial: false,
      followSymlinks: this.options.followSymlinks,
      alwaysStat: true,
      persistent: true,
    });
    this.watcher.on('add', (p, s) => this.onFile(p, s?.mtimeMs));
    this.watcher.on('change', (p, s) => this.onFile(p, s?.mtimeMs));
    this.watcher.on('unlink', (p) => this.schedule(p, { kind: 'remove' }));
    this.watcher.on('unlinkDir', (p) => this.onFolderGone(p));
    this.watcher.on('error', (err) => this.log.warn({ err }, 'library watcher error'));
    await new Promise<void>((done) => this.watcher!.once('ready', () => done()));
    this.reconcileInitialScan();
    void this.whenIdle().then(() => {
      if (this.stopped) return;
      this.isReady = true;
      this.log.info({ version: this.catalogue.version(), ...this.catalogue.counts() }, 'library indexed');
      this.emit('progress', this.progress());
      this.emit('ready');
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.watcher?.close();
    await this.pool?.close();
    for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Resolves when nothing is waiting to be indexed. */
  whenIdle(): Promise<void> {
    if (this.jobs.size === 0 && this.running.size === 0) return Promise.resolve();
    return new Promise((done) => this.idleWaiters.push(done));
  }

  /** Reads every known file again (e.g. after the user asks for a rescan). */
  rescan(): void {
    // A rescan re-reads even unchanged files: forget their cached size and time.
    this.forceRead = true;
    const watched = this.watcher?.getWatched() ?? {};
    for (const [dir, names] of Object.entries(watched)) {
      for (const name of names) {
        const p = resolve(dir, name);
        if (this.locate(p) && !this.isWatchedDir(watched, p)) this.schedule(p, { kind: 'index', dueAt: Date.now() });
      }
    }
  }

  private forceRead = false;

  /** Reads one file again now, whatever its recorded size and time (it served a bad chunk). */
  rescanFile(file: string): void {
    if (!this.locate(file)) return;
    const loc = this.locate(file)!;
    const e = this.catalogue.liveEntry(loc.rootId, loc.rel);
    // Forget the recorded size and time so the next run reads the bytes.
    if (e) this.catalogue.db.prepare('UPDATE entries SET mtime_ms = -1 WHERE id = ?').run(e.id);
    this.schedule(file, { kind: 'index', dueAt: Date.now() });
  }

  private isWatchedDir(watched: Record<string, string[]>, p: string): boolean {
    return Object.prototype.hasOwnProperty.call(watched, p);
  }

  /** The root a path belongs to and its '/'-separated path inside it. */
  private locate(file: string): { root: string; rootId: number; rel: string } | undefined {
    for (const [root, rootId] of this.rootIds) {
      const rel = relative(root, file);
      if (rel === '' || rel.startsWith('..')) continue;
      return { root, rootId, rel: rel.split(sep).join('/') };
    }
    return undefined;
  }

  private onFile(file: string, mtimeMs?: number): void {
    const loc = this.locate(file);
    if (!loc) return;
    this.initialSeen?.add(`${loc.rootId}:${loc.rel}`);
    // Files that have not been touched for a while are settled already.
    const age = mtimeMs === undefined ? 0 : Date.now() - mtimeMs;
    const dueAt = age > this.options.settleMs ? Date.now() : Date.now() + this.options.settleMs;
    this.schedule(file, { kind: 'index', dueAt });
  }

  private onFolderGone(folder: string): void {
    const loc = this.locate(folder);
    if (!loc) return;
    for (const key of [...this.jobs.keys()]) if (key.startsWith(folder + sep)) this.jobs.delete(key);
    const versions = this.catalogue.removeUnder(loc.rootId, loc.rel);
    if (versions.length > 0) {
      this.log.info({ folder, files: versions.length }, 'folder removed from library');
      this.emit('version', this.catalogue.version());
    }
  }

  private reconcileInitialScan(): void {
    const seen = this.initialSeen!;
    this.initialSeen = undefined;
    let removed = 0;
    for (const [, rootId] of this.rootIds) {
      for (const e of this.catalogue.liveEntries(rootId)) {
        if (!seen.has(`${rootId}:${e.path}`)) {
          this.catalogue.remove(rootId, e.path);
          removed++;
        }
      }
    }
    if (removed > 0) {
      this.log.info({ removed }, 'files gone while the hub was stopped');
      this.emit('version', this.catalogue.version());
    }
  }

  private schedule(file: string, job: Job): void {
    if (this.stopped) return;
    this.jobs.set(file, job);
    this.pump();
  }

  private pump(): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    const now = Date.now();
    const limit = Math.max(2, (this.pool?.size ?? 1) * 2);
    let nextDue = Infinity;
    for (const [file, job] of this.jobs) {
      if (this.running.size >= limit) break;
      if (this.running.has(file)) continue;
      if (job.kind === 'index' && job.dueAt > now) {
        nextDue = Math.min(nextDue, job.dueAt);
        continue;
      }
      this.jobs.delete(file);
      this.running.add(file);
      void this.run(file, job).finally(() => {
        this.running.delete(file);
        this.emit('progress', this.progress());
        this.pump();
      });
    }
    if (nextDue !== Infinity) this.timer = setTimeout(() => this.pump(), Math.max(10, nextDue - now));
    if (this.jobs.size === 0 && this.running.size === 0) {
      this.forceRead = false;
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /**
   * chokidar reports a rename as 'add' of the new name first and 'unlink' of the old one
   * about 100 ms later. Before a new path is recorded, retire live entries with the same
   * content whose file is gone, so the upsert sees a rename and the file keeps its id.
   */
  private async dropVanishedCopies(contentId: Buffer): Promise<void> {
    for (const other of this.catalogue.liveWithContent(contentId)) {
      const gone = await stat(join(other.root, other.path)).then(
        () => false,
        (err: NodeJS.ErrnoException) => err.code === 'ENOENT',
      );
      if (gone && this.catalogue.remove(other.rootId, other.path) !== undefined) this.emit('version', this.catalogue.version());
    }
  }

  private async run(file: string, job: Job): Promise<void> {
    const loc = this.locate(file);
    if (!loc) return;
    try {
      if (job.kind === 'remove') {
        if (this.catalogue.remove(loc.rootId, loc.rel) !== undefined) this.emit('version', this.catalogue.version());
        return;
      }
      const existing = this.catalogue.liveEntry(loc.rootId, loc.rel);
      if (existing && !this.forceRead) {
        const s = await stat(file);
        if (s.size === existing.size && s.mtimeMs === existing.mtimeMs) return;
      }
      const result = await this.pool!.index(file);
      if (this.stopped) return;
      if (!existing && result.contentId) await this.dropVanishedCopies(result.contentId);
      const r = this.catalogue.upsert(loc.rootId, loc.rel, result);
      this.indexedCount++;
      this.emit('indexed', { root: loc.root, path: loc.rel, ...r, status: result.status, error: result.error });
      if (result.status !== 'ok') this.log.warn({ file, status: result.status, error: result.error }, 'file not playable');
      if (r.kind !== 'unchanged') this.emit('version', r.version);
    } catch (err) {
      if (this.stopped) return;
      if (err instanceof FileChangedWhileReading) {
        this.schedule(file, { kind: 'index', dueAt: Date.now() + this.options.settleMs });
      } else if (err instanceof IndexError && err.code === 'ENOENT') {
        if (this.catalogue.remove(loc.rootId, loc.rel) !== undefined) this.emit('version', this.catalogue.version());
      } else {
        // Unreadable (permissions, I/O error): record it so the user sees why.
        const message = err instanceof Error ? err.message : String(err);
        this.log.warn({ file, err: message }, 'cannot read file');
        const s = await stat(file).catch(() => undefined);
        const r = this.catalogue.upsert(loc.rootId, loc.rel, { size: s?.size ?? 0, mtimeMs: s?.mtimeMs ?? 0, status: 'failed', error: `cannot read file: ${message}` });
        if (r.kind !== 'unchanged') this.emit('version', r.version);
      }
    }
  }
}
