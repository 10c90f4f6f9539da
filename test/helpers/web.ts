/**
 * Helpers for the web page and REST API tests: the hub's HTTP address from its log, JSON
 * requests, a server-sent-events reader, audio files with cover art, and headless
 * Chromium (Debian's /usr/bin/chromium driven by playwright-core).
 */
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import type { FireflyProcess } from './processes.js';

const run = promisify(execFile);

/** http://127.0.0.1:PORT of a hub started with --http-port 0 (read from its "HTTP listening" log line). */
export async function hubHttpUrl(proc: FireflyProcess): Promise<string> {
  const line = await proc.waitForLog('HTTP listening', 30_000);
  const port = Number(line.port);
  if (!(port > 0)) throw new Error(`hub did not say which HTTP port it bound: ${JSON.stringify(line)}`);
  return `http://127.0.0.1:${port}`;
}

export interface JsonResponse<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

/** One JSON request; `raw` sends the body as given (hostile input), otherwise it is JSON-encoded. */
export async function request<T = any>(base: string, method: string, path: string, body?: unknown, options: { raw?: string | Buffer; contentType?: string } = {}): Promise<JsonResponse<T>> {
  const init: RequestInit = { method, headers: {} };
  if (options.raw !== undefined) {
    init.body = options.raw as string;
    (init.headers as Record<string, string>)['content-type'] = options.contentType ?? 'application/json';
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  const res = await fetch(base + path, init);
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // Not JSON: the test looks at the text.
  }
  return { status: res.status, body: parsed as T, headers: res.headers };
}

/** Uploads files as multipart/form-data (field "file"), the way the page does. */
export async function upload(base: string, files: { name: string; data: Buffer | string; type?: string }[]): Promise<JsonResponse> {
  const form = new FormData();
  for (const f of files) form.append('file', new Blob([typeof f.data === "string" ? f.data : new Uint8Array(f.data)], { type: f.type ?? 'application/octet-stream' }), f.name);
  const res = await fetch(`${base}/api/library/uploads`, { method: 'POST', body: form });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // keep the text
  }
  return { status: res.status, body, headers: res.headers };
}

export interface SseEvent {
  event: string;
  data: any;
}

/** Reads /api/events: every event as it arrives, kept in order. */
export class EventStream {
  readonly events: SseEvent[] = [];
  private readonly controller = new AbortController();
  private done?: Promise<void>;

  constructor(private readonly url: string) {}

  async open(): Promise<this> {
    const res = await fetch(this.url, { signal: this.controller.signal, headers: { accept: 'text/event-stream' } });
    if (res.status !== 200 || !res.body) throw new Error(`event stream answered ${res.status}`);
    if (!res.headers.get('content-type')?.startsWith('text/event-stream')) throw new Error(`event stream has content type ${res.headers.get('content-type')}`);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    this.done = (async () => {
      let buf = '';
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          buf += value;
          for (let end = buf.indexOf('\n\n'); end >= 0; end = buf.indexOf('\n\n')) {
            const block = buf.slice(0, end);
            buf = buf.slice(end + 2);
            let event = 'message';
            const data: string[] = [];
            for (const line of block.split('\n')) {
              if (line.startsWith('event: ')) event = line.slice(7);
              else if (line.startsWith('data: ')) data.push(line.slice(6));
            }
            if (data.length > 0) this.events.push({ event, data: JSON.parse(data.join('\n')) });
          }
        }
      } catch {
        // Aborted by close().
      }
    })();
    return this;
  }

  close(): void {
    this.controller.abort();
  }
}

/** An MP3 with a front cover picture (a red 64×64 PNG), tagged as asked. */
export async function makeTrackWithCover(file: string, spec: { title: string; artist: string; album: string; seconds?: number }): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await run('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', `sine=frequency=523:sample_rate=44100:duration=${spec.seconds ?? 3}`,
    '-f', 'lavfi', '-i', 'color=c=red:s=64x64:d=1',
    '-map', '0:a', '-map', '1:v', '-frames:v', '1',
    '-c:a', 'libmp3lame', '-b:a', '128k', '-c:v', 'png', '-disposition:v', 'attached_pic',
    '-id3v2_version', '3', '-metadata', `title=${spec.title}`, '-metadata', `artist=${spec.artist}`, '-metadata', `album=${spec.album}`,
    '-metadata:s:v', 'title=Album cover', '-metadata:s:v', 'comment=Cover (front)',
    file,
  ]);
}

/** The flags ENVIRONMENT.md gives for Debian's Chromium in a headless test. */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Headless Debian Chromium through playwright-core (no browser download). */
export async function launchChromium() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: process.env.FIREFLY_CHROMIUM ?? '/usr/bin/chromium', args: CHROMIUM_ARGS, headless: true });
}

/**
 * POSTs a body the server may refuse before reading it (too large): the answer can come
 * while the body is still being sent, after which the server closes the connection and
 * the rest of the upload fails with EPIPE/ECONNRESET. fetch() then loses the answer; this
 * sends the headers first and keeps the answer.
 */
export async function postOversized(base: string, path: string, body: Buffer, contentType = 'application/json'): Promise<JsonResponse> {
  const { request: httpRequest } = await import('node:http');
  return new Promise((resolve, reject) => {
    const req = httpRequest(base + path, { method: 'POST', headers: { 'content-type': contentType, 'content-length': body.length } });
    let answered = false;
    req.on('response', (res) => {
      answered = true;
      const parts: Buffer[] = [];
      const finish = () => {
        const text = Buffer.concat(parts).toString();
        let parsed: unknown = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          // keep the text
        }
        resolve({ status: res.statusCode ?? 0, body: parsed, headers: new Headers(res.headers as Record<string, string>) });
      };
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', finish);
      res.on('error', finish);
    });
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    // The headers (with the length) first: a server that refuses on the length answers
    // before any of the body is sent; the body follows only if it has not answered.
    req.flushHeaders();
    setTimeout(() => (answered ? req.destroy() : req.end(body)), 1000);
  });
}
