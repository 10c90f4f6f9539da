/**
 * The shapes the REST API and the live updates send, shared by the hub (hub/http/) and
 * the page (web/src/), which imports them as types only. No imports here: the page's
 * build must not pull in the hub.
 */

/** A library entry as the API shows it. */
export interface ApiEntry {
  entryId: number;
  path: string;
  status: 'ok' | 'failed' | 'unsupported';
  error: string | null;
  format: string | null;
  size: number;
  title: string | null;
  artist: string | null;
  album: string | null;
  albumArtist: string | null;
  trackNo: number | null;
  discNo: number | null;
  year: number | null;
  durationMs: number | null;
  cover: boolean;
}


/** One upload as the page follows it: stored, then indexed (or failed with the indexer's reason). */
export interface UploadStatus {
  uploadId: number;
  name: string;
  /** Path inside the library folder. */
  path: string;
  size: number;
  state: 'indexing' | 'indexed' | 'failed';
  entryId: number | null;
  error: string | null;
  at: number;
}
