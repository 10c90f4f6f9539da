import { join } from 'node:path';
import { openDatabase, type Db } from '../src/storage/sqlite.js';
import { GROUPS_SCHEMA } from './groups/groups.js';
import { REGISTRY_SCHEMA } from './registry/registry.js';
import { PLAYBACK_SCHEMA } from './playback/play-queue.js';
import { DEVICES_SCHEMA } from './devices/device-store.js';
import { PLAYLISTS_SCHEMA } from './playlists/playlists.js';

/**
 * The hub's control state (nodes it has met, groups, queues and playback settings), in its own SQLite file beside the
 * catalogue so each file migrates on its own.
 */
const MIGRATIONS = [REGISTRY_SCHEMA + GROUPS_SCHEMA, PLAYBACK_SCHEMA, DEVICES_SCHEMA, PLAYLISTS_SCHEMA];

export function openHubDb(dataDir: string): Db {
  return openDatabase(join(dataDir, 'hub.sqlite'), MIGRATIONS);
}
