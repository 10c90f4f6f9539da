import { join } from 'node:path';
import { cached, openDatabase, type Db } from '../../src/storage/sqlite.js';
import type { Chunk } from '../../src/chunking/manifest.js';

/**
 * The hub's catalogue: one row per file ever seen (removed files stay as tombstones so
 * "what changed since v" can report them), the chunk list of each live file, and a change
 * log whose autoincrement key is the library version. No audio is stored: a chunk is a
 * (file, offset, size) triple.
 */

const MIGRATIONS = [
  `
  CREATE TABLE roots (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);
  CREATE TABLE entries (
    id INTEGER PRIMARY KEY,
    root_id INTEGER NOT NULL REFERENCES roots(id),
    path TEXT NOT NULL,
    version INTEGER NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0,
    content_id BLOB,
    size INTEGER NOT NULL DEFAULT 0,
    mtime_ms REAL NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    error TEXT,
    format TEXT,
    metadata TEXT
  );
  CREATE UNIQUE INDEX entries_live_path ON entries(root_id, path) WHERE removed = 0;
  CREATE INDEX entries_version ON entries(version);
  CREATE INDEX entries_content ON entries(content_id);
  CREATE TABLE chunks (
    entry_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    offset INTEGER NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (entry_id, idx)
  ) WITHOUT ROWID;
  CREATE INDEX chunks_hash ON chunks(hash);
  CREATE TABLE covers (hash BLOB PRIMARY KEY, mime TEXT NOT NULL, data BLOB NOT NULL) WITHOUT ROWID;
  CREATE TABLE changes (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    at INTEGER NOT NULL
  );
  `,
];

export type EntryStatus = 'ok' | 'unsupported' | 'failed';
export type ChangeKind = 'added' | 'changed' | 'renamed' | 'removed';

export interface TrackMetadata {
  title?: string;
  artist?: string;
  album?: string;
  albumArtist?: string;
  trackNo?: number;
  discNo?: number;
  year?: number;
  genre?: string;
  durationSeconds?: number;
  sampleRate?: number;
  channels?: number;
  bitsPerSample?: number;
  codec?: string;
  container?: string;
  bitrate?: number;
  coverHash?: string; // hex
  coverMime?: string;
}

/** What indexing one file produced; the catalogue's input. */
export interface IndexedFile {
  size: number;
  mtimeMs: number;
  status: EntryStatus;
  error?: string;
  format?: string;
  metadata?: TrackMetadata;
  contentId?: Buffer;
  chunks?: Chunk[];
  cover?: { hash: Buffer; mime: string; data: Buffer };
}

export interface EntryRow {
  id: number;
  rootId: number;
  root: string;
  path: string;
  version: number;
  removed: boolean;
  contentId: Buffer | null;
  size: number;
  mtimeMs: number;
  status: EntryStatus;
  error: string | null;
  format: string | null;
  metadata: TrackMetadata;
}

export interface BrowseQuery {
  /** Words to find in title, artist, album or path (a substring, case-insensitive for ASCII). */
  q?: string;
  /** Exactly this artist (album artist where the tags have one). */
  artist?: string;
  album?: string;
  status?: EntryStatus;
  offset: number;
  limit: number;
}

export interface ChunkLocation {
  file: string;
  offset: number;
  size: number;
  entryId: number;
}

interface RawEntry {
  id: number;
  root_id: number;
  root: string;
  path: string;
  version: number;
  removed: number;
  content_id: Buffer | null;
  size: number;
  mtime_ms: number;
  status: EntryStatus;
  error: string | null;
  format: string | null;
  metadata: string | null;
}

function toEntry(r: RawEntry): EntryRow {
  return {
    id: r.id,
    rootId: r.root_id,
    root: r.root,
    path: r.path,
    version: r.version,
    removed: r.removed === 1,
    contentId: r.content_id,
    size: r.size,
    mtimeMs: r.mtime_ms,
    status: r.status,
    error: r.error,
    format: r.format,
    metadata: r.metadata ? (JSON.parse(r.metadata) as TrackMetadata) : {},
  };
}

const ENTRY_COLUMNS = `e.id, e.root_id, r.path AS root, e.path, e.version, e.removed, e.content_id, e.size,
  e.mtime_ms, e.status, e.error, e.format, e.metadata`;

export interface UpsertResult {
  entryId: number;
  kind: ChangeKind | 'unchanged';
  version: number;
}

export class Catalogue {
  readonly db: Db;

  constructor(file: string) {
    this.db = openDatabase(file, MIGRATIONS);
  }

  static inDataDir(dataDir: string): Catalogue {
    return new Catalogue(join(dataDir, 'catalogue.sqlite'));
  }

  close(): void {
    this.db.close();
  }

  version(): number {
    const row = cached(this.db, 'SELECT MAX(version) AS v FROM changes').get() as { v: number | null };
    return row.v ?? 0;
  }

  rootId(path: string): number {
    const found = cached(this.db, 'SELECT id FROM roots WHERE path = ?').get(path) as { id: number } | undefined;
    if (found) return found.id;
    return Number(cached(this.db, 'INSERT INTO roots (path) VALUES (?)').run(path).lastInsertRowid);
  }

  roots(): { id: number; path: string }[] {
    return cached(this.db, 'SELECT id, path FROM roots ORDER BY id').all() as { id: number; path: string }[];
  }

  liveEntry(rootId: number, path: string): EntryRow | undefined {
    const r = cached(this.db, `SELECT ${ENTRY_COLUMNS} FROM entries e JOIN roots r ON r.id = e.root_id WHERE e.root_id = ? AND e.path = ? AND e.removed = 0`)
      .get(rootId, path) as RawEntry | undefined;
    return r ? toEntry(r) : undefined;
  }

  entry(id: number): EntryRow | undefined {
    const r = cached(this.db, `SELECT ${ENTRY_COLUMNS} FROM entries e JOIN roots r ON r.id = e.root_id WHERE e.id = ?`)
      .get(id) as RawEntry | undefined;
    return r ? toEntry(r) : undefined;
  }

  /** Live entries under a root, for reconciling the catalogue with the folder at start. */
  liveEntries(rootId: number): EntryRow[] {
    return (
      cached(this.db, `SELECT ${ENTRY_COLUMNS} FROM entries e JOIN roots r ON r.id = e.root_id WHERE e.root_id = ? AND e.removed = 0`)
        .all(rootId) as RawEntry[]
    ).map(toEntry);
  }

  /** Live entries holding this content (copies of one file, or a file and its old name). */
  liveWithContent(contentId: Buffer): EntryRow[] {
    return (
      cached(this.db, `SELECT ${ENTRY_COLUMNS} FROM entries e JOIN roots r ON r.id = e.root_id WHERE e.content_id = ? AND e.removed = 0`)
        .all(contentId) as RawEntry[]
    ).map(toEntry);
  }

  private logChange(entryId: number, kind: ChangeKind): number {
    return Number(
      cached(this.db, 'INSERT INTO changes (entry_id, kind, at) VALUES (?, ?, ?)').run(entryId, kind, Date.now()).lastInsertRowid,
    );
  }

  private writeChunks(entryId: number, chunks: readonly Chunk[] | undefined): void {
    cached(this.db, 'DELETE FROM chunks WHERE entry_id = ?').run(entryId);
    if (!chunks) return;
    const insert = cached(this.db, 'INSERT INTO chunks (entry_id, idx, hash, offset, size) VALUES (?, ?, ?, ?, ?)');
    chunks.forEach((c, i) => insert.run(entryId, i, c.hash, c.offset, c.size));
  }

  /**
   * Records what indexing a file found. A file whose content and metadata are what the
   * catalogue already holds only refreshes its size and time (no new version); a file
   * that reappears under a new path with the content of a file that just vanished keeps
   * that file's id (a rename).
   */
  upsert(rootId: number, path: string, f: IndexedFile): UpsertResult {
    return this.db.transaction((): UpsertResult => {
      if (f.cover) {
        cached(this.db, 'INSERT OR IGNORE INTO covers (hash, mime, data) VALUES (?, ?, ?)').run(f.cover.hash, f.cover.mime, f.cover.data);
      }
      const metadata = f.metadata ? JSON.stringify(f.metadata) : null;
      const existing = this.liveEntry(rootId, path);
      if (existing) {
        const same =
          existing.status === f.status &&
          (existing.error ?? null) === (f.error ?? null) &&
          sameBytes(existing.contentId, f.contentId ?? null) &&
          JSON.stringify(existing.metadata) === (metadata ?? '{}') &&
          (existing.format ?? null) === (f.format ?? null);
        if (same) {
          cached(this.db, 'UPDATE entries SET size = ?, mtime_ms = ? WHERE id = ?').run(f.size, f.mtimeMs, existing.id);
          return { entryId: existing.id, kind: 'unchanged', version: existing.version };
        }
        const version = this.logChange(existing.id, 'changed');
        cached(this.db, 
            `UPDATE entries SET version = ?, content_id = ?, size = ?, mtime_ms = ?, status = ?, error = ?, format = ?, metadata = ? WHERE id = ?`,
          )
          .run(version, f.contentId ?? null, f.size, f.mtimeMs, f.status, f.error ?? null, f.format ?? null, metadata, existing.id);
        this.writeChunks(existing.id, f.chunks);
        return { entryId: existing.id, kind: 'changed', version };
      }
      const renamedFrom = f.contentId
        ? (cached(this.db, 
              `SELECT id FROM entries WHERE content_id = ? AND removed = 1 AND NOT EXISTS
                 (SELECT 1 FROM entries l WHERE l.content_id = entries.content_id AND l.removed = 0)
               ORDER BY version DESC LIMIT 1`,
            )
            .get(f.contentId) as { id: number } | undefined)
        : undefined;
      if (renamedFrom) {
        const version = this.logChange(renamedFrom.id, 'renamed');
        cached(this.db, 
            `UPDATE entries SET root_id = ?, path = ?, removed = 0, version = ?, size = ?, mtime_ms = ?, status = ?, error = ?, format = ?, metadata = ? WHERE id = ?`,
          )
          .run(rootId, path, version, f.size, f.mtimeMs, f.status, f.error ?? null, f.format ?? null, metadata, renamedFrom.id);
        this.writeChunks(renamedFrom.id, f.chunks);
        return { entryId: renamedFrom.id, kind: 'renamed', version };
      }
      const id = Number(
        cached(this.db, 
            `INSERT INTO entries (root_id, path, version, content_id, size, mtime_ms, status, error, format, metadata)
             VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?, ?)`,
          )
          .run(rootId, path, f.contentId ?? null, f.size, f.mtimeMs, f.status, f.error ?? null, f.format ?? null, metadata).lastInsertRowid,
      );
      const version = this.logChange(id, 'added');
      cached(this.db, 'UPDATE entries SET version = ? WHERE id = ?').run(version, id);
      this.writeChunks(id, f.chunks);
      return { entryId: id, kind: 'added', version };
    })();
  }

  /** Marks a file gone. Returns the new version, or undefined if nothing was there. */
  remove(rootId: number, path: string): number | undefined {
    return this.db.transaction(() => {
      const e = this.liveEntry(rootId, path);
      return e ? this.tombstone(e.id) : undefined;
    })();
  }

  /** Marks every file below a folder gone (the folder was deleted or moved away). */
  removeUnder(rootId: number, folder: string): number[] {
    return this.db.transaction(() => {
      const prefix = folder === '' ? '' : folder.endsWith('/') ? folder : `${folder}/`;
      const rows = this.db
        // length() in SQL, not prefix.length: SQLite counts characters, JavaScript UTF-16 units.
        .prepare(`SELECT id FROM entries WHERE root_id = ? AND removed = 0 AND substr(path, 1, length(?)) = ?`)
        .all(rootId, prefix, prefix) as { id: number }[];
      return rows.map((r) => this.tombstone(r.id));
    })();
  }

  private tombstone(id: number): number {
    const version = this.logChange(id, 'removed');
    cached(this.db, 'UPDATE entries SET removed = 1, version = ? WHERE id = ?').run(version, id);
    cached(this.db, 'DELETE FROM chunks WHERE entry_id = ?').run(id);
    return version;
  }

  /** Entries changed after `since`, oldest change first: each entry once, in its current state. */
  changesSince(since: number, limit: number): EntryRow[] {
    return (
      cached(this.db, `SELECT ${ENTRY_COLUMNS} FROM entries e JOIN roots r ON r.id = e.root_id WHERE e.version > ? ORDER BY e.version LIMIT ?`)
        .all(since, limit) as RawEntry[]
    ).map(toEntry);
  }

  /** The chunk list of the live file with this content, if any. */
  manifest(contentId: Buffer): { size: number; chunks: Chunk[] } | undefined {
    const entry = cached(this.db, `SELECT id, size FROM entries WHERE content_id = ? AND removed = 0 AND status = 'ok' LIMIT 1`)
      .get(contentId) as { id: number; size: number } | undefined;
    if (!entry) return undefined;
    return { size: entry.size, chunks: this.chunksOf(entry.id) };
  }

  chunksOf(entryId: number): Chunk[] {
    return cached(this.db, 'SELECT hash, offset, size FROM chunks WHERE entry_id = ? ORDER BY idx')
      .all(entryId) as Chunk[];
  }

  /** Where a chunk can be read from: every live file that holds it. */
  locate(hash: Buffer): ChunkLocation[] {
    const rows = cached(this.db, 
        `SELECT r.path AS root, e.path AS path, c.offset AS offset, c.size AS size, e.id AS entryId
           FROM chunks c JOIN entries e ON e.id = c.entry_id JOIN roots r ON r.id = e.root_id
          WHERE c.hash = ? AND e.removed = 0`,
      )
      .all(hash) as { root: string; path: string; offset: number; size: number; entryId: number }[];
    return rows.map((r) => ({ file: join(r.root, r.path), offset: r.offset, size: r.size, entryId: r.entryId }));
  }

  cover(hash: Buffer): { mime: string; data: Buffer } | undefined {
    return cached(this.db, 'SELECT mime, data FROM covers WHERE hash = ?').get(hash) as { mime: string; data: Buffer } | undefined;
  }

  /**
   * Live entries for browsing (web page, REST): filtered by a search over title, artist,
   * album and path, by exact artist or album, or by status; ordered by artist, album,
   * disc, track number and path; one page at a time.
   */
  browse(query: BrowseQuery): { entries: EntryRow[]; total: number } {
    const where = ['e.removed = 0'];
    const args: (string | number)[] = [];
    const artist = `coalesce(json_extract(e.metadata, '$.albumArtist'), json_extract(e.metadata, '$.artist'), '')`;
    if (query.q) {
      const like = `%${query.q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      where.push(
        `(json_extract(e.metadata, '$.title') LIKE ? ESCAPE '\\' OR json_extract(e.metadata, '$.artist') LIKE ? ESCAPE '\\'` +
          ` OR json_extract(e.metadata, '$.album') LIKE ? ESCAPE '\\' OR e.path LIKE ? ESCAPE '\\')`,
      );
      args.push(like, like, like, like);
    }
    if (query.artist !== undefined) {
      where.push(`${artist} = ?`);
      args.push(query.artist);
    }
    if (query.album !== undefined) {
      where.push(`coalesce(json_extract(e.metadata, '$.album'), '') = ?`);
      args.push(query.album);
    }
    if (query.status) {
      where.push('e.status = ?');
      args.push(query.status);
    }
    const filter = where.join(' AND ');
    const total = (this.db.prepare(`SELECT COUNT(*) AS n FROM entries e WHERE ${filter}`).get(...args) as { n: number }).n;
    const rows = this.db
      .prepare(
        `SELECT ${ENTRY_COLUMNS} FROM entries e JOIN roots r ON r.id = e.root_id WHERE ${filter}
          ORDER BY ${artist} COLLATE NOCASE, coalesce(json_extract(e.metadata, '$.album'), '') COLLATE NOCASE,
                   coalesce(json_extract(e.metadata, '$.discNo'), 0), coalesce(json_extract(e.metadata, '$.trackNo'), 0), e.path
          LIMIT ? OFFSET ?`,
      )
      .all(...args, query.limit, query.offset) as RawEntry[];
    return { entries: rows.map(toEntry), total };
  }

  /** Albums of playable live entries (album artist, else artist), with track count and a cover. */
  albums(): { artist: string; album: string; tracks: number; coverEntryId: number | null }[] {
    return cached(
      this.db,
      `SELECT coalesce(json_extract(metadata, '$.albumArtist'), json_extract(metadata, '$.artist'), '') AS artist,
              coalesce(json_extract(metadata, '$.album'), '') AS album, COUNT(*) AS tracks,
              MIN(CASE WHEN json_extract(metadata, '$.coverHash') IS NOT NULL THEN id END) AS coverEntryId
         FROM entries WHERE removed = 0 AND status = 'ok'
        GROUP BY 1, 2 ORDER BY 1 COLLATE NOCASE, 2 COLLATE NOCASE`,
    ).all() as { artist: string; album: string; tracks: number; coverEntryId: number | null }[];
  }

  counts(): { live: number; ok: number; failed: number; unsupported: number; removed: number } {
    const r = cached(this.db, 
        `SELECT SUM(removed = 0) AS live, SUM(removed = 0 AND status = 'ok') AS ok, SUM(removed = 0 AND status = 'failed') AS failed,
                SUM(removed = 0 AND status = 'unsupported') AS unsupported, SUM(removed = 1) AS removed FROM entries`,
      )
      .get() as Record<string, number | null>;
    return { live: r.live ?? 0, ok: r.ok ?? 0, failed: r.failed ?? 0, unsupported: r.unsupported ?? 0, removed: r.removed ?? 0 };
  }
}

function sameBytes(a: Buffer | null, b: Buffer | null): boolean {
  if (a === null || b === null) return a === b;
  return a.equals(b);
}
