/**
 * Device audio streams with credentials on, end to end: a real hub process with auth
 * forced on, a Cast double (castv2, TLS) and a Sonos double (SOAP over HTTP) driven by
 * the hub through the real client libraries. The doubles fetch the URLs the hub hands
 * them like speakers do (HEAD, ranged GETs, a transcode read whole), so a signed URL that
 * did not verify would show as a fetch error. Then the refusals: unsigned, changed in any
 * covered part, signed by another secret, expired. And a sweep of the other GET routes a
 * visitor could try without a login (state, live updates, cover art, OpenAPI, encoded
 * paths): none hands out library content or state.
 */
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { Credentials } from '../hub/security/credentials.js';
import { StreamSigner } from '../hub/security/stream-urls.js';
import type { NodeList } from '../src/protocol/schemas.js';
import { makeTrack } from './helpers/audio.js';
import { embeddedBroker, Observer, startControlHub, type BrokerAccess, type HubProcess } from './helpers/control-plane.js';
import { cleanup, tempDir, waitFor } from './helpers/processes.js';
import { CastDouble } from './doubles/cast-double.js';
import { SonosDouble } from './doubles/sonos-double.js';

describe('device streams with credentials on (hub with --auth on, Cast and Sonos doubles)', () => {
  let broker: BrokerAccess;
  let hub: HubProcess;
  let observer: Observer;
  let httpPort = 0;
  let adminToken = '';
  let groupId = 0;
  const cast = new CastDouble(300);
  const sonos = new SonosDouble(300, 'Den');
  const entries = new Map<string, number>();
  const base = () => `http://127.0.0.1:${httpPort}`;

  async function errorOf(r: Response): Promise<{ code: string; message: string }> {
    assert.match(r.headers.get('content-type') ?? '', /application\/json/);
    return ((await r.json()) as { error: { code: string; message: string } }).error;
  }

  before(async () => {
    broker = await embeddedBroker();
    const library = await tempDir('firefly-music-');
    await makeTrack(join(library, 'a.flac'), { format: 'flac', seconds: 8, seed: 21, title: 'Secret Flac' });
    await makeTrack(join(library, 'c.opus'), { format: 'opus', seconds: 8, seed: 23, title: 'Secret Opus' });
    await cast.start();
    await sonos.start();
    hub = await startControlHub(broker, {
      library,
      extraArgs: ['--auth', 'on', '--no-device-discovery', '--cast', `127.0.0.1:${cast.port}`, '--sonos', `127.0.0.1:${sonos.port}`, '--device-advertise-host', '127.0.0.1'],
    });
    await hub.proc.waitForLog('library indexed', 60_000);
    httpPort = Number((await hub.proc.waitForLog('HTTP listening', 20_000)).port);
    adminToken = String(hub.proc.logs.find((l) => typeof l.token === 'string')?.token);
    const r = await fetch(`${base()}/api/library`, { headers: { authorization: `Bearer ${adminToken}` } });
    assert.equal(r.status, 200);
    for (const e of ((await r.json()) as { entries: { entryId: number; path: string }[] }).entries) entries.set(e.path, e.entryId);
    assert.equal(entries.size, 2);
    const [user, secret] = [adminToken.slice(0, adminToken.lastIndexOf(':')), adminToken.slice(adminToken.lastIndexOf(':') + 1)];
    observer = await new Observer({ ...broker, username: user, password: secret }).connect();
    await observer.subscribe(observer.topics.nodes);
    const list = await observer.waitFor<NodeList>('both devices online', observer.topics.nodes, (l) => l.nodes.filter((n) => n.online && n.kind !== 'native').length === 2, 30_000);
    groupId = (await observer.command<{ groupId: number }>('group/create', { name: 'Speakers', members: list.nodes.map((n) => n.nodeId) })).groupId;
  });

  after(async () => {
    await observer?.close();
    await cast.stop();
    await sonos.stop();
    await cleanup();
  });

  it('hands the speakers signed URLs they fetch like any stream (file with Range, and a transcode)', async () => {
    await observer.command('play', { groupId, entryId: entries.get('c.opus') });
    // Cast plays Opus from the file; Sonos gets an MP3 transcode of it.
    await waitFor('both doubles fetched their stream', () => cast.fetches.length > 0 && sonos.fetches.length > 0, 30_000, 50).catch((err: Error) => {
      throw new Error(`${err.message}; fetch errors: cast ${JSON.stringify(cast.fetchErrors)}, sonos ${JSON.stringify(sonos.fetchErrors)}`);
    });
    assert.deepEqual([cast.fetchErrors, sonos.fetchErrors], [[], []]);
    const c = cast.fetches[0];
    assert.match(c.url, new RegExp(`/stream/${entries.get('c.opus')}\\.opus\\?exp=\\d+&sig=[A-Za-z0-9_-]{43}$`));
    assert.equal(c.status, 200);
    assert.ok(c.ranges.length > 0 && c.ranges.every((r) => r.status === 206), JSON.stringify(c.ranges));
    assert.ok(c.bytes > 1000);
    const s = sonos.fetches[0];
    assert.match(s.url, new RegExp(`/stream/${entries.get('c.opus')}\\.mp3\\?transcode&start=\\d+&exp=\\d+&sig=[A-Za-z0-9_-]{43}$`));
    assert.ok(s.bytes > 1000, `the transcode came through: ${s.bytes} bytes`);
    const exp = Number(new URL(c.url).searchParams.get('exp'));
    const hours = (exp * 1000 - Date.now()) / 3_600_000;
    assert.ok(hours > 11 && hours <= 12, `URLs last 12 hours (${hours.toFixed(2)} h left)`);
    await observer.command('stop', { groupId }).catch(() => undefined);
  });

  it('refuses unsigned (401), changed or forged (403) and expired (403) stream URLs with the JSON error body', async () => {
    const native = new URL(cast.fetches[0].url);
    const transcoded = new URL(sonos.fetches[0].url);
    const flac = entries.get('a.flac')!;
    const opus = entries.get('c.opus')!;
    const q = (u: URL) => u.search;
    const cases: [string, string, number, string, 'GET' | 'HEAD'][] = [
      ['unsigned', `/stream/${opus}.opus`, 401, 'unauthorized', 'GET'],
      ['unsigned HEAD', `/stream/${opus}.opus`, 401, 'unauthorized', 'HEAD'],
      ['unsigned transcode', `/stream/${opus}.mp3?transcode&start=0`, 401, 'unauthorized', 'GET'],
      ['only exp', `/stream/${opus}.opus?exp=${native.searchParams.get('exp')}`, 401, 'unauthorized', 'GET'],
      ["another entry with this entry's signature", `/stream/${flac}.flac${q(native)}`, 403, 'forbidden', 'GET'],
      ['a later expiry', `/stream/${opus}.opus?exp=${Number(native.searchParams.get('exp')) + 3600}&sig=${native.searchParams.get('sig')}`, 403, 'forbidden', 'GET'],
      ['a changed signature', `/stream/${opus}.opus?exp=${native.searchParams.get('exp')}&sig=${native.searchParams.get('sig')!.replace(/^./, (ch) => (ch === 'A' ? 'B' : 'A'))}`, 403, 'forbidden', 'GET'],
      ['a transcode asked of a file URL', `/stream/${opus}.opus?transcode&${native.search.slice(1)}`, 403, 'forbidden', 'GET'],
      ['another start', `${transcoded.pathname}${transcoded.search.replace(/start=\d+/, 'start=5')}`, 403, 'forbidden', 'GET'],
      ['the transcode flag dropped', `${transcoded.pathname}${transcoded.search.replace('transcode&', '')}`, 403, 'forbidden', 'GET'],
      ['garbage exp', `/stream/${opus}.opus?exp=soon&sig=${native.searchParams.get('sig')}`, 403, 'forbidden', 'GET'],
    ];
    for (const [what, path, status, code, method] of cases) {
      const r = await fetch(`${base()}${path}`, { method });
      assert.equal(r.status, status, `${what}: ${path}`);
      if (method === 'GET') assert.equal((await errorOf(r)).code, code, what);
      else await r.arrayBuffer();
    }
    // Signed with this hub's secret by the test: accepted while fresh, refused once expired.
    const credentials = Credentials.inDataDir(hub.dataDir, { create: false });
    const fresh = new StreamSigner(credentials).sign({ file: `${flac}.flac`, transcode: false });
    let r = await fetch(`${base()}/stream/${flac}.flac?${fresh}`);
    assert.equal(r.status, 200, 'a URL signed with the hub secret works');
    assert.ok((await r.arrayBuffer()).byteLength > 1000);
    const old = new StreamSigner(credentials, () => Date.now() - 13 * 3_600_000).sign({ file: `${flac}.flac`, transcode: false });
    r = await fetch(`${base()}/stream/${flac}.flac?${old}`);
    assert.equal(r.status, 403);
    const expired = await errorOf(r);
    assert.equal(expired.code, 'expired');
    assert.match(expired.message, /expired at \d{4}-/);
    // Another hub's secret, same name and expiry form: refused.
    const other = new StreamSigner(Credentials.inDataDir(await tempDir('firefly-cred-'))).sign({ file: `${flac}.flac`, transcode: false });
    r = await fetch(`${base()}/stream/${flac}.flac?${other}`);
    assert.equal(r.status, 403);
    assert.equal((await errorOf(r)).code, 'forbidden');
    // The hub is still fine after all that.
    r = await fetch(`${base()}/api/state`, { headers: { authorization: `Bearer ${adminToken}` } });
    assert.equal(r.status, 200);
  });

  it('leaks no library content or state on any GET without a login (state, live updates, cover art, OpenAPI, encoded paths)', async () => {
    const flac = entries.get('a.flac')!;
    const refused = [
      '/api/state',
      '/api/events',
      '/api/groups',
      '/api/nodes',
      '/api/library',
      '/api/library/albums',
      `/api/library/entries/${flac}`,
      `/api/library/entries/${flac}/cover`,
      '/api/library/uploads',
      '/api/playlists',
      '/api/openapi.json',
      // The router decodes escapes: %61 is "a", so these reach /api/state unless the gate looks at the route.
      '/%61pi/state',
      '/%61%70%69/library',
      '/./api/state',
      '/x/../api/library',
    ];
    for (const path of refused) {
      const r = await fetch(`${base()}${path}`, { signal: AbortSignal.timeout(10_000) });
      const text = await r.text();
      assert.ok(r.status === 401 || r.status === 404 || r.status === 400, `${path} answered ${r.status} without a login: ${text.slice(0, 200)}`);
      assert.ok(!text.includes('Secret'), `${path} shows a track title: ${text.slice(0, 200)}`);
    }
    // The page's own files stay public (the login form) and hold no library data.
    for (const path of ['/', '/index.html']) {
      const r = await fetch(`${base()}${path}`);
      const text = await r.text();
      assert.equal(r.status, 200, path);
      assert.ok(!text.includes('Secret') && !text.includes('.flac'), `${path} holds library data`);
    }
  });
});

/** One HTTPS request trusting `ca`: status, and the body as text. */
function https(ca: Buffer, url: string, options: { method?: string; token?: string; body?: unknown } = {}): Promise<{ status: number; body: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method: options.method ?? 'GET', ca, headers: { ...(options.token ? { authorization: `Bearer ${options.token}` } : {}), ...(options.body ? { 'content-type': 'application/json' } : {}) } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(parts).toString(), bytes: Buffer.concat(parts).length }));
    });
    req.on('error', reject);
    req.end(options.body ? JSON.stringify(options.body) : undefined);
  });
}

describe('device streams from a hub serving HTTPS (--tls-cert, auth on)', () => {
  after(() => cleanup());

  it('hands speakers https:// URLs, signed, which the hub serves', async () => {
    const dir = await tempDir('firefly-tls-');
    const [cert, key] = [join(dir, 'hub.pem'), join(dir, 'hub.key')];
    await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost']);
    const ca = await readFile(cert);
    const broker = await embeddedBroker();
    const library = await tempDir('firefly-music-');
    await makeTrack(join(library, 'a.flac'), { format: 'flac', seconds: 4, seed: 31, title: 'Tls' });
    const cast = new CastDouble(300);
    await cast.start();
    try {
      const hub = await startControlHub(broker, { library, extraArgs: ['--auth', 'on', '--tls-cert', cert, '--tls-key', key, '--no-device-discovery', '--cast', `127.0.0.1:${cast.port}`, '--device-advertise-host', '127.0.0.1'] });
      await hub.proc.waitForLog('library indexed', 60_000);
      const port = Number((await hub.proc.waitForLog('HTTP listening', 20_000)).port);
      const token = String(hub.proc.logs.find((l) => typeof l.token === 'string')?.token);
      const base = `https://127.0.0.1:${port}`;
      const entryId = (JSON.parse((await https(ca, `${base}/api/library`, { token })).body) as { entries: { entryId: number }[] }).entries[0].entryId;
      const castNode = await waitFor(
        'the Cast online',
        async () => (JSON.parse((await https(ca, `${base}/api/nodes`, { token })).body) as { nodes: { nodeId: number; kind: string; online: boolean }[] }).nodes.find((n) => n.kind === 'cast' && n.online),
        30_000,
        200,
      );
      const created = await https(ca, `${base}/api/groups`, { method: 'POST', token, body: { name: 'Tls', members: [castNode.nodeId] } });
      assert.equal(created.status, 201, created.body);
      const groupId = (JSON.parse(created.body) as { groupId: number }).groupId;
      const played = await https(ca, `${base}/api/groups/${groupId}/play`, { method: 'POST', token, body: { entryId } });
      assert.equal(played.status, 200, played.body);
      // The double trusts no self-signed certificate, so its fetch fails; the URL it was handed is in the error.
      const handed = await waitFor('the Cast handed a URL', () => cast.fetches[0]?.url ?? cast.fetchErrors[0]?.split(': ')[0], 30_000, 50);
      assert.match(handed, new RegExp(`^https://127\\.0\\.0\\.1:${port}/stream/${entryId}\\.flac\\?exp=\\d+&sig=`));
      const got = await https(ca, handed);
      assert.equal(got.status, 200);
      assert.equal(got.bytes, (await readFile(join(library, 'a.flac'))).length);
      assert.equal((await https(ca, handed.split('?')[0])).status, 401);
    } finally {
      await cast.stop();
    }
  });
});
