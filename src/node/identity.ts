import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface NodeIdentity {
  /** Made once on first start and kept; the hub knows the node by it. */
  uuid: string;
  createdAt: string;
}

/**
 * Reads the node's identity from its data folder, creating it on first start. A node
 * credential names the uuid it is for (`node:<uuid>:…`): given one, that uuid is the
 * node's identity from then on.
 */
export function loadIdentity(dataDir: string, uuid?: string): NodeIdentity {
  const file = join(dataDir, 'identity.json');
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as NodeIdentity;
    if (typeof parsed.uuid === 'string' && parsed.uuid.length > 0 && (uuid === undefined || parsed.uuid === uuid)) return parsed;
  } catch {
    // Absent or unreadable: make a new one below.
  }
  mkdirSync(dataDir, { recursive: true });
  const identity: NodeIdentity = { uuid: uuid ?? randomUUID(), createdAt: new Date().toISOString() };
  writeFileSync(`${file}.tmp`, JSON.stringify(identity, null, 2));
  renameSync(`${file}.tmp`, file);
  return identity;
}
