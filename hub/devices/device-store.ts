import { cached, type Db } from '../../src/storage/sqlite.js';

/** Cast and Sonos speakers the hub has met; each also has a row in `nodes` (same uuid) so groups treat it as a member. */
export const DEVICES_SCHEMA = `
  ALTER TABLE nodes ADD COLUMN kind TEXT NOT NULL DEFAULT 'native';
  CREATE TABLE devices (
    uuid TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('cast', 'sonos')),
    name TEXT NOT NULL,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('discovered', 'manual')),
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    start_delay_ms REAL
  );
`;

export type DeviceKind = 'cast' | 'sonos';

export interface DeviceRecord {
  uuid: string;
  kind: DeviceKind;
  name: string;
  host: string;
  port: number;
  source: 'discovered' | 'manual';
  lastSeen: number;
  /** The learnt start delay, kept across restarts so the first play after one is already compensated. */
  startDelayMs: number | null;
}

interface Row {
  uuid: string;
  kind: DeviceKind;
  name: string;
  host: string;
  port: number;
  source: 'discovered' | 'manual';
  last_seen: number;
  start_delay_ms: number | null;
}

const toRecord = (r: Row): DeviceRecord => ({ uuid: r.uuid, kind: r.kind, name: r.name, host: r.host, port: r.port, source: r.source, lastSeen: r.last_seen, startDelayMs: r.start_delay_ms });

/** The devices table: what discovery found and what the configuration named, remembered across restarts. */
export class DeviceStore {
  constructor(private readonly db: Db) {}

  list(): DeviceRecord[] {
    return (cached(this.db, 'SELECT * FROM devices ORDER BY first_seen, uuid').all() as Row[]).map(toRecord);
  }

  get(uuid: string): DeviceRecord | undefined {
    const r = cached(this.db, 'SELECT * FROM devices WHERE uuid = ?').get(uuid) as Row | undefined;
    return r ? toRecord(r) : undefined;
  }

  /**
   * Records a device (new, or seen again at a possibly new address) and gives it a node row
   * of its kind, so it can join groups like any node. A manual entry stays manual.
   */
  remember(d: { uuid: string; kind: DeviceKind; name: string; host: string; port: number; source: 'discovered' | 'manual' }): DeviceRecord {
    const now = Date.now();
    this.db.transaction(() => {
      cached(
        this.db,
        `INSERT INTO devices (uuid, kind, name, host, port, source, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(uuid) DO UPDATE SET name = excluded.name, host = excluded.host, port = excluded.port, last_seen = excluded.last_seen,
           source = CASE WHEN devices.source = 'manual' THEN 'manual' ELSE excluded.source END`,
      ).run(d.uuid, d.kind, d.name, d.host, d.port, d.source, now, now);
      cached(this.db, `INSERT INTO nodes (uuid, name, kind, first_seen, last_seen) VALUES (?, ?, ?, ?, ?) ON CONFLICT(uuid) DO UPDATE SET kind = excluded.kind`).run(d.uuid, d.name, d.kind, now, now);
    })();
    return this.get(d.uuid)!;
  }

  /** The device's own name for itself (a Sonos room), once it said it; the node row follows on its next join. */
  rename(uuid: string, name: string): DeviceRecord {
    cached(this.db, 'UPDATE devices SET name = ? WHERE uuid = ?').run(name, uuid);
    return this.get(uuid)!;
  }

  saveStartDelay(uuid: string, ms: number): void {
    cached(this.db, 'UPDATE devices SET start_delay_ms = ? WHERE uuid = ?').run(ms, uuid);
  }

  nodeId(uuid: string): number | undefined {
    return (cached(this.db, 'SELECT id FROM nodes WHERE uuid = ?').get(uuid) as { id: number } | undefined)?.id;
  }
}
