import { join } from 'node:path';
import { openDatabase, type Db } from '../storage/sqlite.js';
import { CHUNK_STORE_PACKS, CHUNK_STORE_SCHEMA } from './chunk-store.js';
import { INTRO_STORE_SCHEMA } from './intro-store.js';
import { LIBRARY_MIRROR_SCHEMA } from './library-mirror.js';

/** The node's one SQLite file: chunk index, library mirror and cached track starts, migrated together. */
const MIGRATIONS = [CHUNK_STORE_SCHEMA + LIBRARY_MIRROR_SCHEMA, CHUNK_STORE_PACKS, INTRO_STORE_SCHEMA];

export function openNodeDb(dataDir: string): Db {
  return openDatabase(join(dataDir, 'node.sqlite'), MIGRATIONS);
}
