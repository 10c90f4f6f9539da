/**
 * The hub's clock across restarts (hub/clock/hub-time.ts), on a real hub.sqlite: the
 * same boot continues exactly; another boot continues on the wall clock.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { HubTime } from '../hub/clock/hub-time.js';
import { openHubDb } from '../hub/hub-db.js';
import { monotonicMs } from '../src/clock/local-clock.js';
import { createLogger } from '../src/log.js';
import { tempDir } from './helpers/processes.js';

const log = createLogger('test', 'silent');

describe('HubTime', () => {
  it('starts on the monotonic clock in a fresh data folder and keeps its offset on the same boot', async () => {
    const dir = await tempDir('firefly-hubtime-');
    const db = openHubDb(dir);
    const first = HubTime.open(db, log);
    assert.equal(first.placed, 'new');
    assert.equal(first.offsetMs, 0);
    assert.ok(Math.abs(first.now() - monotonicMs()) < 1);
    // A hub that ran with some offset on this boot (say it started after a reboot) restarts: same offset, to the bit.
    db.prepare('UPDATE hub_time SET offset_ms = ?').run(123_456.789);
    db.close();
    const again = openHubDb(dir);
    const second = HubTime.open(again, log);
    assert.equal(second.placed, 'same-boot');
    assert.equal(second.offsetMs, 123_456.789);
    assert.ok(Math.abs(second.now() - (monotonicMs() + 123_456.789)) < 1);
    again.close();
  });

  it('after a reboot continues where hub time stood against the wall clock', async () => {
    const dir = await tempDir('firefly-hubtime-');
    const db = openHubDb(dir);
    HubTime.open(db, log);
    // As saved by a hub on a boot that is over: hub time was wall time − 1e9 ms.
    db.prepare("UPDATE hub_time SET boot_id = 'a-boot-long-gone', offset_ms = 42, hub_minus_wall_ms = ?").run(-1e9);
    db.close();
    const again = openHubDb(dir);
    const clock = HubTime.open(again, log);
    assert.equal(clock.placed, 'wall-clock');
    assert.ok(Math.abs(clock.now() - Date.now() + 1e9) < 5, `hub − wall is ${clock.now() - Date.now()}`);
    // And the placement is saved for the next restart on this boot.
    const row = again.prepare('SELECT boot_id, offset_ms FROM hub_time').get() as { boot_id: string; offset_ms: number };
    assert.equal(row.boot_id, readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
    assert.equal(row.offset_ms, clock.offsetMs);
    again.close();
  });
});
