import { parentPort } from 'node:worker_threads';
import { FileChangedWhileReading, indexFile, type IndexOptions } from './index-file.js';

/** Runs indexFile off the main thread; one file at a time per worker. */
interface Job {
  id: number;
  file: string;
  options: IndexOptions;
}

parentPort!.on('message', (job: Job) => {
  indexFile(job.file, job.options).then(
    (result) => parentPort!.postMessage({ id: job.id, result }),
    (err: unknown) =>
      parentPort!.postMessage({
        id: job.id,
        error: { changed: err instanceof FileChangedWhileReading, message: err instanceof Error ? err.message : String(err), code: (err as NodeJS.ErrnoException).code },
      }),
  );
});
