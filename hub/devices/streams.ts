import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type { Catalogue } from '../library/catalogue.js';
import type { StreamSigner } from '../security/stream-urls.js';

/** Content types of the formats the library indexes. */
export const CONTENT_TYPES: Record<string, string> = {
  mp3: 'audio/mpeg',
  flac: 'audio/flac',
  wav: 'audio/wav',
  ogg: 'audio/ogg',
  opus: 'audio/ogg; codecs=opus',
  m4a: 'audio/mp4',
  aac: 'audio/aac',
};

export interface ByteRange {
  start: number;
  /** Inclusive. */
  end: number;
}

/**
 * A Range header against a file of `size` bytes: the one range asked for, 'whole' without
 * a header, or 'unsatisfiable' (416). Several ranges are served as the whole file, which
 * RFC 9110 allows; devices ask for one.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | 'whole' | 'unsatisfiable' {
  if (!header) return 'whole';
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return header.includes(',') ? 'whole' : 'unsatisfiable';
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

/**
 * The audio streams devices fetch: `GET|HEAD /stream/<entryId>.<ext>` serves the library
 * file itself with Range support and its content type; `?transcode` (optionally
 * `&start=<seconds>`) streams it re-encoded to MP3 by ffmpeg, for formats a device cannot
 * play (no Range there: the stream does not exist before it is made).
 *
 * With credentials on (`signer` given) every URL must carry the hub's signature
 * (hub/security/stream-urls.ts): devices cannot log in, so the route is public to the
 * login gate and checks the URL itself: unsigned 401, forged or changed 403, expired 403.
 * Errors have the REST API's body, `{error: {code, message}}`.
 */
export function streamRoutes(catalogue: Catalogue, signer?: StreamSigner): FastifyPluginAsync {
  return async (app) => {
    const fail = (reply: FastifyReply, status: number, code: string, message: string) => reply.code(status).send({ error: { code, message } });
    app.get<{ Params: { file: string }; Querystring: { transcode?: string; start?: string; exp?: string; sig?: string } }, { public: boolean }>('/stream/:file', { config: { public: true } }, async (req, reply) => {
      if (signer) {
        const q = req.query;
        const one = (v: unknown) => (typeof v === 'string' ? v : undefined);
        const check = signer.check({ file: req.params.file, transcode: q.transcode !== undefined, start: one(q.start) }, one(q.exp), one(q.sig));
        if (!check.ok) {
          req.log.debug({ url: req.url.replace(/sig=[^&]*/, 'sig=…'), ip: req.ip, code: check.code }, 'stream refused');
          return fail(reply, check.status, check.code, check.message);
        }
      }
      const m = /^(\d{1,10})\.([a-z0-9]{1,8})$/.exec(req.params.file);
      if (!m) return fail(reply, 400, 'invalid', `not a stream name: ${JSON.stringify(req.params.file).slice(0, 80)} (expected /stream/<entryId>.<ext>)`);
      const entryId = Number(m[1]);
      const e = catalogue.entry(entryId);
      if (!e || e.removed || e.status !== 'ok' || !e.format) return fail(reply, 404, 'not-found', `no playable library entry ${entryId}`);
      const file = join(e.root, e.path);
      const transcode = req.query.transcode !== undefined;
      if (!transcode && m[2] !== e.format) return fail(reply, 404, 'not-found', `entry ${entryId} is ${e.format}, not ${m[2]}; ask for /stream/${entryId}.${e.format} or /stream/${entryId}.mp3?transcode`);
      if (transcode) {
        const start = req.query.start === undefined ? 0 : Number(req.query.start);
        if (!Number.isFinite(start) || start < 0 || start > 86_400) return fail(reply, 400, 'invalid', `start must be seconds between 0 and 86400, not ${JSON.stringify(req.query.start).slice(0, 40)}`);
        reply.header('content-type', CONTENT_TYPES.mp3).header('accept-ranges', 'none').header('cache-control', 'no-store');
        if (req.method === 'HEAD') return reply.send();
        const ff = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-ss', String(start), '-i', file, '-vn', '-map_metadata', '-1', '-c:a', 'libmp3lame', '-b:a', '256k', '-f', 'mp3', 'pipe:1'], { stdio: ['ignore', 'pipe', 'pipe'] });
        let stderr = '';
        ff.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
        ff.on('error', (err) => req.log.warn({ err: err.message, entryId }, 'ffmpeg could not start for a transcoded stream'));
        ff.on('close', (code) => {
          if (code) req.log.warn({ code, entryId, stderr }, 'transcode ended with an error');
        });
        // The device hung up (pause, seek, stop): stop encoding.
        reply.raw.on('close', () => ff.kill('SIGKILL'));
        return reply.send(ff.stdout);
      }
      let size: number;
      try {
        size = (await stat(file)).size;
      } catch {
        return fail(reply, 404, 'not-found', `entry ${entryId}'s file is gone: ${e.path}`);
      }
      const range = parseRange(req.headers.range, size);
      reply.header('content-type', CONTENT_TYPES[e.format] ?? 'application/octet-stream').header('accept-ranges', 'bytes');
      if (range === 'unsatisfiable') return reply.code(416).header('content-range', `bytes */${size}`).send();
      const r = range === 'whole' ? { start: 0, end: size - 1 } : range;
      if (range !== 'whole') reply.code(206).header('content-range', `bytes ${r.start}-${r.end}/${size}`);
      const length = size === 0 ? 0 : r.end - r.start + 1;
      if (req.method === 'HEAD') {
        // Fastify would set the length of the (empty) body; a device wants the file's.
        reply.hijack();
        reply.raw.writeHead(range === 'whole' ? 200 : 206, { ...(reply.getHeaders() as Record<string, string>), 'content-length': String(length) });
        return reply.raw.end();
      }
      reply.header('content-length', String(length));
      if (size === 0) return reply.send();
      return reply.send(createReadStream(file, { start: r.start, end: r.end }));
    });
  };
}
