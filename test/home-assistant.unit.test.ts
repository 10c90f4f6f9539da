/**
 * The pure parts of the Home Assistant bridge: the catalogue search behind `{"album"}` and
 * `{"search"}` (on a real SQLite catalogue), the plain command schemas, and how a device
 * config removes an entity that is gone.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { albumEntries, searchEntries } from '../hub/homeassistant/catalogue-search.js';
import { withRemovals, type DeviceConfig } from '../hub/homeassistant/discovery.js';
import { Catalogue, type TrackMetadata } from '../hub/library/catalogue.js';
import { groupSetSchema, nodeSetSchema } from '../src/protocol/schemas.js';

function catalogue(t: { after: (fn: () => void) => void }): { cat: Catalogue; add: (path: string, meta: TrackMetadata, status?: 'ok' | 'failed') => number; rootId: number } {
  const dir = mkdtempSync(join(tmpdir(), 'ff-ha-'));
  const cat = new Catalogue(join(dir, 'catalogue.sqlite'));
  t.after(() => {
    cat.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const rootId = cat.rootId('/music');
  const add = (path: string, meta: TrackMetadata, status: 'ok' | 'failed' = 'ok') =>
    cat.upsert(rootId, path, { size: 1, mtimeMs: 1, status, format: 'flac', metadata: meta, contentId: createHash('sha256').update(path).digest(), chunks: [] }).entryId;
  return { cat, add, rootId };
}

test('album: every track of the album, ignoring case, in disc and track order; only playable entries', (t) => {
  const { cat, add, rootId } = catalogue(t);
  const third = add('kob/c.flac', { title: 'Blue in Green', album: 'Kind of Blue', artist: 'Miles Davis', trackNo: 3 });
  const first = add('kob/z.flac', { title: 'So What', album: 'Kind of Blue', artist: 'Miles Davis', trackNo: 1 });
  const second = add('kob/a.flac', { title: 'Freddie Freeloader', album: 'Kind of Blue', artist: 'Miles Davis', trackNo: 2 });
  const disc2 = add('kob/b.flac', { title: 'Flamenco Sketches (alt)', album: 'Kind of Blue', artist: 'Miles Davis', discNo: 2, trackNo: 1 });
  add('kob/broken.flac', { title: 'Broken', album: 'Kind of Blue' }, 'failed');
  add('other.flac', { title: 'Kind of Blue', album: 'Something Else' });
  assert.deepEqual(albumEntries(cat, 'kind of BLUE'), [first, second, third, disc2]);
  cat.remove(rootId, 'kob/c.flac');
  assert.deepEqual(albumEntries(cat, 'Kind of Blue'), [first, second, disc2]);
  assert.deepEqual(albumEntries(cat, 'Kind of'), [], 'an album name is matched whole');
});

test('search: every word somewhere in title, artist, album or path; LIKE wildcards are plain characters', (t) => {
  const { cat, add } = catalogue(t);
  const sowhat = add('jazz/so-what.flac', { title: 'So What', album: 'Kind of Blue', artist: 'Miles Davis', trackNo: 1 });
  const blue = add('jazz/blue.flac', { title: 'Blue Train', album: 'Blue Train', artist: 'John Coltrane', trackNo: 1 });
  const percent = add('misc/100.flac', { title: '100% Pure', artist: 'Band_Name' });
  assert.deepEqual(searchEntries(cat, 'miles blue'), [sowhat]);
  assert.deepEqual(new Set(searchEntries(cat, 'BLUE')), new Set([sowhat, blue]));
  assert.deepEqual(searchEntries(cat, 'coltrane'), [blue]);
  assert.deepEqual(searchEntries(cat, '%'), [percent], '% matches only a real percent sign');
  assert.deepEqual(searchEntries(cat, 'band_name'), [percent]);
  assert.deepEqual(searchEntries(cat, 'n_m'), [], '_ matches only a real underscore (unescaped it would match "Nam")');
  assert.deepEqual(searchEntries(cat, 'so-what'), [sowhat], 'the file path counts');
  assert.deepEqual(searchEntries(cat, 'nothing like this'), []);
  assert.deepEqual(searchEntries(cat, '   '), []);
});

test('plain command payloads: words, fields together, and what is refused', () => {
  assert.equal(groupSetSchema.parse('play'), 'play');
  assert.deepEqual(groupSetSchema.parse({ playlist: 'Evening', volume: 30 }), { playlist: 'Evening', volume: 30 });
  assert.deepEqual(groupSetSchema.parse({ playlist: 3 }), { playlist: 3 });
  assert.deepEqual(groupSetSchema.parse({ action: 'pause', volume: 0 }), { action: 'pause', volume: 0 });
  for (const bad of ['dance', {}, { volume: 101 }, { volume: 2.5 }, { playlist: 1, entry: 2 }, { action: 'play', search: 'x' }, { album: '' }, { seek: -1 }, { entries: [] }, { colour: 'red' }, { repeat: 'twice' }]) {
    assert.equal(groupSetSchema.safeParse(bad).success, false, `refused: ${JSON.stringify(bad)}`);
  }
  assert.deepEqual(nodeSetSchema.parse({ group: null }), { group: null });
  assert.deepEqual(nodeSetSchema.parse({ group: 'Kitchen', volume: 20 }), { group: 'Kitchen', volume: 20 });
  for (const bad of ['play', {}, { volume: -1 }, { group: '' }, { nodeId: 1 }]) assert.equal(nodeSetSchema.safeParse(bad).success, false, `refused: ${JSON.stringify(bad)}`);
});

test('a device config sent after an entity is gone names it once with its platform alone', () => {
  const base = { dev: { ids: ['x'], name: 'X', mf: 'Firefly', mdl: 'Group', sw: '0' }, o: { name: 'Firefly', sw: '0' }, qos: 1 };
  const before: DeviceConfig = { ...base, cmps: { play: { p: 'button', unique_id: 'x_play' }, playlist: { p: 'select', unique_id: 'x_playlist', options: ['A'] } } };
  const after: DeviceConfig = { ...base, cmps: { play: { p: 'button', unique_id: 'x_play' } } };
  assert.deepEqual(withRemovals(after, before).cmps, { play: { p: 'button', unique_id: 'x_play' }, playlist: { p: 'select' } });
  assert.deepEqual(withRemovals(after, after).cmps, after.cmps);
  assert.deepEqual(withRemovals(after, undefined), after);
});
