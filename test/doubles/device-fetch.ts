/**
 * How the doubles fetch audio, the way a speaker does: HEAD for type and length, then
 * ranged GETs (the first bytes, then the rest), so the hub's Range and HEAD handling is
 * exercised by every play. A transcoded stream (no Range) is read whole.
 */
import { createHash } from 'node:crypto';

export interface Fetched {
  url: string;
  /** HEAD's answer. */
  status: number;
  contentType: string | null;
  contentLength: number | null;
  acceptRanges: string | null;
  /** The ranged GETs: the status and Content-Range of each. */
  ranges: { range: string; status: number; contentRange: string | null; bytes: number }[];
  /** Everything received, in order. */
  bytes: number;
  sha256: string;
  head: Buffer;
}

export class FetchError extends Error {}

export async function fetchLikeADevice(url: string, timeoutMs = 10_000): Promise<Fetched> {
  const signal = AbortSignal.timeout(timeoutMs);
  const head = await fetch(url, { method: 'HEAD', signal });
  if (head.status !== 200) throw new FetchError(`HEAD ${url}: ${head.status}`);
  const contentType = head.headers.get('content-type');
  const lengthText = head.headers.get('content-length');
  const contentLength = lengthText === null ? null : Number(lengthText);
  const acceptRanges = head.headers.get('accept-ranges');
  const hash = createHash('sha256');
  const parts: Buffer[] = [];
  const ranges: Fetched['ranges'] = [];
  if (acceptRanges === 'bytes' && contentLength !== null && contentLength > 0) {
    const first = Math.min(contentLength, 16 * 1024);
    for (const range of [`bytes=0-${first - 1}`, ...(first < contentLength ? [`bytes=${first}-`] : [])]) {
      const r = await fetch(url, { headers: { range }, signal });
      const body = Buffer.from(await r.arrayBuffer());
      ranges.push({ range, status: r.status, contentRange: r.headers.get('content-range'), bytes: body.length });
      if (r.status !== 206) throw new FetchError(`GET ${url} with ${range}: ${r.status}, expected 206`);
      parts.push(body);
    }
  } else {
    const r = await fetch(url, { signal });
    if (r.status !== 200) throw new FetchError(`GET ${url}: ${r.status}`);
    parts.push(Buffer.from(await r.arrayBuffer()));
  }
  const all = Buffer.concat(parts);
  hash.update(all);
  return { url, status: head.status, contentType, contentLength, acceptRanges, ranges, bytes: all.length, sha256: hash.digest('hex'), head: all.subarray(0, 16) };
}
