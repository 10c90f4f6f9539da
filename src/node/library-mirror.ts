import { cached, type Db } from '../storage/sqlite.js';
import type { LibraryEntry__Output } from '../generated/firefly/v1/LibraryEntry.js';

export const LIBRARY_MIRROR_SCHEMA = `
  CREATE TABLE entries (
    id INTEGER PRIMARY KEY,
    version INTEGER NOT NULL,
    root TEXT NOT NULL,
    path TEXT NOT NULL,
    content_id BLOB,
    size INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    format TEXT,
    metadata TEXT
  );
  CREATE INDEX entries_content ON entries(content_id);
  CREATE TABLE manifests (
    content_id BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    hashes BLOB NOT NULL,
    sizes BLOB NOT NULL
  ) WITHOUT ROWID;
  CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
`;

export interface MirrorEntry {
  id: number;
  version: number;
  root: string;
  path: string;
  contentId: Buffer | null;
  size: number;
  status: string;
  error: string | null;
  format: string | null;
  metadata: Record<string, unknown>;
}

export interface ManifestChunk {
  hash: Buffer;
  size: number;
}

/**
 * The node's copy of the hub's catalogue: entries as of the library version it last
 * synced to, and the chunk list of every playable file it knows.
 */
export class LibraryMirror {
  constructor(private readonly db: Db) {}

  version(): number {
    const r = cached(this.db, `SELECT value FROM state WHERE key = 'library_version'`).get() as { value: string } | undefined;
    return r ? Number(r.value) : 0;
  }

  /** Applies one page of changes and moves the version on, atomically. */
  apply(entries: readonly LibraryEntry__Output[], version: number, fullResync = false): { upserted: number; removed: number } {
    return this.db.transaction(() => {
      if (fullResync) cached(this.db, 'DELETE FROM entries').run();
      let upserted = 0;
      let removed = 0;
      const del = cached(this.db, 'DELETE FROM entries WHERE id = ?');
      const put = cached(this.db, 
        `INSERT OR REPLACE INTO entries (id, version, root, path, content_id, size, status, error, format, metadata)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      );
      for (const e of entries) {
        if (e.removed) {
          removed += del.run(Number(e.id)).changes;
          continue;
        }
        put.run(
          Number(e.id),
          Number(e.version),
          e.root,
          e.path,
          e.contentId.length ? e.contentId : null,
          Number(e.size),
          e.status,
          e.error || null,
          e.format || null,
          // Buffers as hex. Buffer#toJSON has already run on `v`, so look at the holder's value.
          e.metadata ? JSON.stringify(e.metadata, function (this: Record<string, unknown>, k: string, v: unknown) {
            return Buffer.isBuffer(this[k]) ? (this[k] as Buffer).toString('hex') : v;
          }) : null,
        );
        upserted++;
      }
      cached(this.db, `INSERT OR REPLACE INTO state (key, value) VALUES ('library_version', ?)`).run(String(version));
      return { upserted, removed };
    })();
  }

  entries(): MirrorEntry[] {
    const rows = cached(this.db, 'SELECT * FROM entries ORDER BY id').all() as (Omit<MirrorEntry, 'contentId' | 'metadata'> & {
      content_id: Buffer | null;
      metadata: string | null;
    })[];
    return rows.map((r) => ({
      id: r.id,
      version: r.version,
      root: r.root,
      path: r.path,
      contentId: r.content_id,
      size: r.size,
      status: r.status,
      error: r.error,
      format: r.format,
      metadata: r.metadata ? (JSON.parse(r.metadata) as Record<string, unknown>) : {},
    }));
  }

  /** Content ids of every playable file in the library, without repeats. */
  playableContent(): Buffer[] {
    return (cached(this.db, `SELECT DISTINCT content_id FROM entries WHERE status = 'OK' AND content_id IS NOT NULL`).all() as { content_id: Buffer }[]).map(
      (r) => r.content_id,
    );
  }

  hasManifest(contentId: Buffer): boolean {
    return cached(this.db, 'SELECT 1 FROM manifests WHERE content_id = ?').get(contentId) !== undefined;
  }

  putManifest(contentId: Buffer, size: number, chunks: readonly ManifestChunk[]): void {
    const sizes = Buffer.alloc(chunks.length * 4);
    chunks.forEach((c, i) => sizes.writeUInt32LE(c.size, i * 4));
    cached(this.db, 'INSERT OR REPLACE INTO manifests (content_id, size, hashes, sizes) VALUES (?, ?, ?, ?)')
      .run(contentId, size, Buffer.concat(chunks.map((c) => c.hash)), sizes);
  }

  manifest(contentId: Buffer): { size: number; chunks: ManifestChunk[] } | undefined {
    const r = cached(this.db, 'SELECT size, hashes, sizes FROM manifests WHERE content_id = ?').get(contentId) as
      | { size: number; hashes: Buffer; sizes: Buffer }
      | undefined;
    if (!r) return undefined;
    const chunks: ManifestChunk[] = [];
    for (let i = 0; i < r.sizes.length / 4; i++) {
      chunks.push({ hash: Buffer.from(r.hashes.subarray(i * 32, i * 32 + 32)), size: r.sizes.readUInt32LE(i * 4) });
    }
    return { size: r.size, chunks };
  }

  /** Drops chunk lists of content no entry points to any more (re-tagged or deleted files). */
  pruneManifests(): number {
    return cached(this.db, 'DELETE FROM manifests WHERE content_id NOT IN (SELECT content_id FROM entries WHERE content_id IS NOT NULL)')
      .run().changes;
  }
}
