import { readFileSync } from 'node:fs';
import { monotonicMs } from '../../src/clock/local-clock.js';
import type { Logger } from '../../src/log.js';
import { cached, type Db } from '../../src/storage/sqlite.js';

/**
 * The hub's clock: the timebase of every schedule (session anchors) and of the clock
 * exchange. It must run on across a hub restart, or a restarted hub could not adopt
 * the playback its nodes carried on with, and every node's clock estimate would start
 * over.
 *
 * Hub time = the machine's monotonic clock + an offset kept in hub.sqlite:
 *  - The monotonic clock (CLOCK_MONOTONIC) is machine-wide and counts from boot, so a
 *    hub *process* that restarts on the same boot keeps the offset it had: hub time
 *    continues exactly, to the nanosecond, whatever the wall clock does meanwhile.
 *  - After a reboot (or on another machine with the same data folder) the monotonic
 *    clock starts again near zero. The hub then places its clock so that hub time −
 *    wall time is what it was when last saved: hub time continues as far as the wall
 *    clock (NTP) can tell, typically within milliseconds. Nodes see a small step, which
 *    their estimator slews or steps (src/clock/estimator.ts).
 * The boot is recognised by /proc/sys/kernel/random/boot_id (Linux). A fresh data folder
 * starts with offset 0: hub time is the machine's monotonic clock, as tests assume.
 */
export class HubTime {
  private timer?: NodeJS.Timeout;
  /** How the clock was placed at start: 'new', 'same-boot' or 'wall-clock'. */
  readonly placed: 'new' | 'same-boot' | 'wall-clock';

  private constructor(
    private readonly db: Db,
    readonly offsetMs: number,
    placed: HubTime['placed'],
  ) {
    this.placed = placed;
  }

  /** Hub time now (ms). */
  readonly now = (): number => monotonicMs() + this.offsetMs;

  /** Reads (or creates) the persisted placement and decides the offset for this run. */
  static open(db: Db, log: Logger): HubTime {
    db.exec(HUB_TIME_SCHEMA);
    const row = cached(db, 'SELECT boot_id, offset_ms, hub_minus_wall_ms FROM hub_time WHERE id = 1').get() as
      | { boot_id: string | null; offset_ms: number; hub_minus_wall_ms: number }
      | undefined;
    const boot = bootId();
    let clock: HubTime;
    if (!row) clock = new HubTime(db, 0, 'new');
    else if (boot !== null && row.boot_id === boot) clock = new HubTime(db, row.offset_ms, 'same-boot');
    else clock = new HubTime(db, row.hub_minus_wall_ms + Date.now() - monotonicMs(), 'wall-clock');
    clock.save();
    clock.timer = setInterval(() => clock.save(), 60_000);
    clock.timer.unref();
    log.info({ placed: clock.placed, offsetMs: clock.offsetMs }, 'hub clock');
    return clock;
  }

  /** Keeps hub − wall fresh (the wall clock is slewed by NTP), for the day the machine reboots; saved every minute. */
  private save(): void {
    if (!this.db.open) return clearInterval(this.timer);
    cached(this.db, 'INSERT INTO hub_time (id, boot_id, offset_ms, hub_minus_wall_ms) VALUES (1, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET boot_id = excluded.boot_id, offset_ms = excluded.offset_ms, hub_minus_wall_ms = excluded.hub_minus_wall_ms').run(
      bootId(),
      this.offsetMs,
      this.now() - Date.now(),
    );
  }
}

/**
 * Created on open rather than as a numbered migration of hub.sqlite: a single-row table
 * that needs no migration of its own, and keeps the migration list to the data modules.
 */
const HUB_TIME_SCHEMA = `CREATE TABLE IF NOT EXISTS hub_time (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  boot_id TEXT,
  offset_ms REAL NOT NULL,
  hub_minus_wall_ms REAL NOT NULL
)`;

let boot: string | null | undefined;
function bootId(): string | null {
  if (boot === undefined) {
    try {
      boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
    } catch {
      boot = null;
    }
  }
  return boot;
}
