import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { FileChangedWhileReading, type IndexOptions } from './index-file.js';
import type { IndexedFile } from './catalogue.js';

interface Pending {
  resolve: (r: IndexedFile) => void;
  reject: (e: Error) => void;
  worker: Worker;
}

/** An I/O error from indexing, with the errno code when there is one (ENOENT: gone already). */
export class IndexError extends Error {
  constructor(message: string, readonly code?: string) {
    super(message);
  }
}

/** Structured clone turns Buffers into Uint8Arrays; the catalogue wants Buffers. */
function revive(r: IndexedFile): IndexedFile {
  const buf = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);
  return {
    ...r,
    contentId: r.contentId ? buf(r.contentId) : undefined,
    chunks: r.chunks?.map((c) => ({ ...c, hash: buf(c.hash) })),
    cover: r.cover ? { ...r.cover, hash: buf(r.cover.hash), data: buf(r.cover.data) } : undefined,
  };
}

/**
 * Worker threads that chunk, hash and parse files, so indexing uses every core and the
 * hub's event loop (MQTT, gRPC, HTTP) never waits on it.
 */
export class IndexPool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: { file: string; resolve: Pending['resolve']; reject: Pending['reject'] }[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;

  constructor(private readonly options: IndexOptions, size = 0) {
    const n = size > 0 ? size : Math.max(1, availableParallelism());
    for (let i = 0; i < n; i++) this.spawn();
  }

  get size(): number {
    return this.workers.length;
  }

  private spawn(): void {
    const worker = new Worker(new URL('./index-worker.js', import.meta.url));
    worker.unref();
    worker.on('message', (msg: { id: number; result?: IndexedFile; error?: { changed: boolean; message: string; code?: string } }) => {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      this.idle.push(worker);
      this.pump();
      if (!p) return;
      if (msg.result) p.resolve(revive(msg.result));
      else if (msg.error?.changed) p.reject(new FileChangedWhileReading(msg.error.message));
      else p.reject(new IndexError(msg.error?.message ?? 'unknown indexing error', msg.error?.code));
    });
    worker.on('error', (err: Error) => {
      // A worker died (out of memory on a hostile file, say): fail its job, replace it.
      for (const [id, p] of this.pending) {
        if (p.worker === worker) {
          this.pending.delete(id);
          p.reject(new IndexError(`indexing worker failed: ${err.message}`));
        }
      }
      this.workers.splice(this.workers.indexOf(worker), 1);
      if (!this.closed) {
        this.spawn();
        this.pump();
      }
    });
    this.workers.push(worker);
    this.idle.push(worker);
  }

  index(file: string): Promise<IndexedFile> {
    if (this.closed) return Promise.reject(new Error('index pool is closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ file, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const worker = this.idle.pop()!;
      const job = this.queue.shift()!;
      const id = this.nextId++;
      this.pending.set(id, { resolve: job.resolve, reject: job.reject, worker });
      worker.postMessage({ id, file: job.file, options: this.options });
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const q of this.queue.splice(0)) q.reject(new Error('index pool is closed'));
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
