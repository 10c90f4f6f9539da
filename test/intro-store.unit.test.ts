/**
 * The node's cached track starts in its SQLite file (a real one): a node that restarts
 * has them again, in the same eviction order, sample for sample; a start of another shape
 * is dropped; a database that fails leaves the cache working in memory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { Logger } from '../src/log.js';
import { IntroCache } from '../src/node/player/intro-cache.js';
import { SqliteIntroStore } from '../src/node/intro-store.js';
import { openNodeDb } from '../src/node/node-db.js';
import type { TrackRef } from '../src/protocol/schemas.js';

const FRAMES = 2400;
const CHANNELS = 2;
const RATE = 48000;

const track = (n: number): TrackRef => ({ entryId: n, contentId: n.toString(16).padStart(64, '0'), format: 'flac', durationMs: 5000 });
const pcmOf = (n: number) => Int16Array.from({ length: FRAMES * CHANNELS }, (_, i) => ((i * 31 + n * 977) % 65536) - 32768);

function tempData(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'ff-intros-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A logger that keeps what it was told. */
function recorder(): { log: Logger; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = [];
  const log: Logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as { level: number; msg: string }) });
  return { log, lines };
}

test('cached track starts survive a restart: the same tracks, the same samples, the least recently used evicted first', (t) => {
  const dir = tempData(t);
  const { log } = recorder();
  let db = openNodeDb(dir);
  let cache = new IntroCache(FRAMES, CHANNELS, 3, () => undefined, new SqliteIntroStore(db, RATE, log));
  for (const n of [1, 2, 3]) cache.add(track(n), pcmOf(n));
  // 1 played again (now the most recent), then 4 arrives: 2 is the one to go.
  assert.ok(cache.get(track(1)));
  cache.add(track(4), pcmOf(4));
  assert.deepEqual(cache.list().map((i) => i.entryId), [3, 1, 4]);
  // Uses are written later, together; a node's player writes them as it stops.
  cache.close();
  db.close();

  db = openNodeDb(dir);
  t.after(() => db.open && db.close());
  cache = new IntroCache(FRAMES, CHANNELS, 3, () => undefined, new SqliteIntroStore(db, RATE, log));
  assert.deepEqual(cache.list().map((i) => i.entryId), [3, 1, 4], 'the same starts, in the same order, after a restart');
  for (const n of [1, 3, 4]) assert.deepEqual(cache.get(track(n)), pcmOf(n), `track ${n}: the same samples`);
  // Those were uses too: 1, 3, 4 is the order now (written as the cache closes).
  assert.equal(cache.has(track(2)), false);
  cache.close();

  // A smaller cache keeps the most recent; another shape (introMs changed) keeps nothing.
  const fewer = new IntroCache(FRAMES, CHANNELS, 2, () => undefined, new SqliteIntroStore(db, RATE, log));
  assert.deepEqual(fewer.list().map((i) => i.entryId), [3, 4]);
  const other = new IntroCache(FRAMES / 2, CHANNELS, 3, () => undefined, new SqliteIntroStore(db, RATE, log));
  assert.deepEqual(other.list(), []);
  assert.equal((db.prepare('SELECT count(*) AS n FROM intros').get() as { n: number }).n, 0, 'starts of the old shape are gone from the file');
});

test('a database that fails (here closed under it, as a full disk would fail a write) leaves the cache working in memory, with one warning', (t) => {
  const dir = tempData(t);
  const { log, lines } = recorder();
  const db = openNodeDb(dir);
  const cache = new IntroCache(FRAMES, CHANNELS, 2, () => undefined, new SqliteIntroStore(db, RATE, log));
  db.close();
  for (const n of [1, 2, 3]) cache.add(track(n), pcmOf(n));
  assert.deepEqual(cache.list().map((i) => i.entryId), [2, 3]);
  assert.deepEqual(cache.get(track(3)), pcmOf(3));
  const warnings = lines.filter((l) => l.level === 40);
  assert.equal(warnings.length, 1, JSON.stringify(lines));
  assert.match(warnings[0].msg, /could not be saved/);
});
