import type { Credentials } from './credentials.js';
import { sameSecret } from './credentials.js';

/**
 * Signed URLs for the audio streams Cast and Sonos devices fetch (hub/devices/streams.ts).
 * Devices cannot send a header or a cookie, so with credentials on the URL carries its own
 * permission: `exp` (expiry, Unix seconds) and `sig`, an HMAC under the hub's secret of the
 * stream name, the transcode flag, the start second and the expiry. Anyone holding a URL
 * can fetch that one stream until it expires; no one can make a URL for another entry,
 * another start or a later expiry.
 */

/** How long a device may keep fetching a URL it was handed (paused for hours, then resumed with a Range request). */
export const STREAM_URL_SECONDS = 12 * 3600;

/** What a stream URL asks for; everything in it is covered by the signature. */
export interface StreamRequest {
  /** `<entryId>.<ext>` */
  file: string;
  transcode: boolean;
  /** The transcode's start second as the URL gives it (undefined: none). */
  start?: string;
}

export type StreamCheck = { ok: true } | { ok: false; status: 401 | 403; code: 'unauthorized' | 'forbidden' | 'expired'; message: string };

function signedText(r: StreamRequest, exp: number): string {
  return `firefly-stream\u0000${r.file}\u0000${r.transcode ? 1 : 0}\u0000${r.start ?? ''}\u0000${exp}`;
}

export class StreamSigner {
  constructor(
    private readonly credentials: Credentials,
    private readonly now: () => number = Date.now,
  ) {}

  /** The query parameters to append: `exp=…&sig=…`. */
  sign(r: StreamRequest, ttlSeconds = STREAM_URL_SECONDS): string {
    const exp = Math.floor(this.now() / 1000) + ttlSeconds;
    return `exp=${exp}&sig=${this.credentials.mac(signedText(r, exp))}`;
  }

  check(r: StreamRequest, exp: string | undefined, sig: string | undefined): StreamCheck {
    if (exp === undefined || sig === undefined) {
      return { ok: false, status: 401, code: 'unauthorized', message: 'this hub requires signed stream URLs (exp and sig); speakers get them from the hub when it plays to them' };
    }
    if (!/^\d{1,12}$/.test(exp) || sig.length > 128 || !sameSecret(sig, this.credentials.mac(signedText(r, Number(exp))))) {
      return { ok: false, status: 403, code: 'forbidden', message: 'stream URL signature does not match (changed or made by someone else)' };
    }
    if (Number(exp) * 1000 <= this.now()) {
      return { ok: false, status: 403, code: 'expired', message: `stream URL expired at ${new Date(Number(exp) * 1000).toISOString()}; the hub hands out a new one when it plays again` };
    }
    return { ok: true };
  }
}
