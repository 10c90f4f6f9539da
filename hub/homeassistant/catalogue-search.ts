import { cached } from '../../src/storage/sqlite.js';
import type { Catalogue } from '../library/catalogue.js';

/**
 * Finds playable library entries by their tags for the plain command topics
 * (`{"album": …}`, `{"search": …}`), in album order: album artist, album, disc, track,
 * then path. Read straight from the catalogue's SQLite (tags are its JSON column).
 */

const TAG = (field: string) => `lower(coalesce(json_extract(e.metadata, '$.${field}'), ''))`;
const PLAYABLE = `e.removed = 0 AND e.status = 'ok' AND e.content_id IS NOT NULL`;
const ORDER = `ORDER BY ${TAG('albumArtist')}, ${TAG('album')}, coalesce(json_extract(e.metadata, '$.discNo'), 0), coalesce(json_extract(e.metadata, '$.trackNo'), 0), lower(e.path), e.id`;

/** The most entries one search plays (the `play` command's limit). */
export const MAX_FOUND = 1000;

/** Every track of the album with this name (ignoring case), in track order. */
export function albumEntries(catalogue: Catalogue, album: string): number[] {
  const rows = cached(catalogue.db, `SELECT e.id FROM entries e WHERE ${PLAYABLE} AND ${TAG('album')} = lower(?) ${ORDER} LIMIT ${MAX_FOUND}`).all(album.trim()) as { id: number }[];
  return rows.map((r) => r.id);
}

function likePattern(word: string): string {
  return `%${word.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/**
 * Tracks where every word of `text` appears in the title, artist, album artist, album or
 * file path (ignoring case): "miles blue" finds Miles Davis's Kind of Blue.
 */
export function searchEntries(catalogue: Catalogue, text: string): number[] {
  const words = text.trim().split(/\s+/).filter(Boolean).slice(0, 8);
  if (words.length === 0) return [];
  const fields = [TAG('title'), TAG('artist'), TAG('albumArtist'), TAG('album'), 'lower(e.path)'];
  const clause = words.map(() => `(${fields.map((f) => `${f} LIKE ? ESCAPE '\\'`).join(' OR ')})`).join(' AND ');
  const params = words.flatMap((w) => fields.map(() => likePattern(w)));
  const rows = cached(catalogue.db, `SELECT e.id FROM entries e WHERE ${PLAYABLE} AND ${clause} ${ORDER} LIMIT ${MAX_FOUND}`).all(...params) as { id: number }[];
  return rows.map((r) => r.id);
}
