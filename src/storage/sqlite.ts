import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export type Db = Database.Database;

/**
 * Opens a SQLite file in WAL mode and brings its schema up to date. Migrations are
 * numbered by their place in the list and recorded in `user_version`; each runs in its
 * own transaction, so a crash mid-migration leaves the previous version intact.
 */
export function openDatabase(file: string, migrations: readonly string[]): Db {
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > migrations.length) {
    db.close();
    throw new Error(`${file} has schema version ${current}, newer than this Firefly understands (${migrations.length}); upgrade Firefly`);
  }
  for (let v = current; v < migrations.length; v++) {
    db.transaction(() => {
      db.exec(migrations[v]);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
  return db;
}

const statementCache = new WeakMap<Db, Map<string, Database.Statement>>();

/**
 * The prepared statement for this SQL on this connection, made once. Preparing on every
 * call leaves native memory that only a garbage collection frees: measured at 1.9 GiB
 * RSS after 50,000 catalogue upserts, against under 100 MiB with statements reused.
 */
export function cached(db: Db, sql: string): Database.Statement {
  let byText = statementCache.get(db);
  if (!byText) {
    byText = new Map();
    statementCache.set(db, byText);
  }
  let stmt = byText.get(sql);
  if (!stmt) {
    stmt = db.prepare(sql);
    byText.set(sql, stmt);
  }
  return stmt;
}
