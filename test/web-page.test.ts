/**
 * The web page in a real browser (Debian's Chromium, headless, driven by playwright-core)
 * against a real hub and two real nodes on measurement outputs: what a person does on
 * the page must reach the nodes. Start playback and see both nodes play the frames;
 * change volumes and see the node report them; create a group by choosing nodes; upload
 * a file, see it indexed and play it; see why an upload was refused. Screenshots of the
 * main views at phone and desktop widths go to FIREFLY_SCREENSHOTS_DIR (docs/screenshots
 * in the repository) when it is set.
 */
import { strict as assert } from 'node:assert';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { makeTrack } from './helpers/audio.js';
import { embeddedBroker, startControlHub, startControlNode, type BrokerAccess, type HubProcess } from './helpers/control-plane.js';
import { readMeasure } from './helpers/measure.js';
import { cleanup, tempDir, waitFor } from './helpers/processes.js';
import { EventStream, hubHttpUrl, launchChromium, makeTrackWithCover, request } from './helpers/web.js';

const NODES = ['kitchen', 'lounge'];

describe('web page in Chromium (real hub, two nodes on measurement outputs)', () => {
  let broker: BrokerAccess;
  let hub: HubProcess;
  let base: string;
  let browser: Browser;
  let desktop: BrowserContext;
  let page: Page;
  let stream: EventStream;
  let shots: string;
  const measure = new Map<string, string>();
  const entries = new Map<string, number>();
  let groupId: number;
  /** Script errors, refused requests and security-policy violations on the main page. */
  const consoleErrors: string[] = [];

  /** Both nodes recorded frames of the group's current session (and entry, when given). */
  async function nodesPlay(what: string, entryId?: number): Promise<void> {
    const g = await waitFor(`${what}: a started session`, async () => {
      const s = (await request(base, 'GET', `/api/groups/${groupId}`)).body;
      return s.playback.state === 'playing' && s.playback.anchor && (entryId === undefined || s.playback.entryId === entryId) ? s : undefined;
    }, 30_000);
    for (const name of NODES) {
      await waitFor(`${what}: ${name} plays frames of session ${g.playback.session}`, async () => {
        const frames = (await readMeasure(measure.get(name)!)).filter((r) => r.session === g.playback.session && (entryId === undefined || r.entryId === entryId));
        return frames.length > 5;
      }, 30_000, 250);
    }
  }

  async function screenshot(p: Page, name: string): Promise<void> {
    await p.screenshot({ path: join(shots, `${name}.png`), fullPage: false });
  }

  async function show(p: Page, view: 'Playing' | 'Library' | 'Speakers'): Promise<void> {
    await p.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: view }).click();
    await p.getByRole('heading', { level: 1, name: view }).waitFor();
  }

  /** Every control has a name a screen reader can say. */
  async function unnamedControls(p: Page): Promise<string[]> {
    // Runs in the page (this project compiles without the DOM types).
    return p.evaluate(() => {
      const doc = (globalThis as any).document;
      const bad: string[] = [];
      for (const e of Array.from(doc.querySelectorAll('button, input, select, a[href]')) as any[]) {
        const labelled = e.getAttribute('aria-label') || e.getAttribute('aria-labelledby') || e.labels?.length || e.textContent?.trim();
        if (!labelled) bad.push(String(e.outerHTML).slice(0, 120));
      }
      return bad;
    });
  }

  before(async () => {
    shots = process.env.FIREFLY_SCREENSHOTS_DIR ?? (await tempDir('firefly-shots-'));
    await mkdir(shots, { recursive: true });
    broker = await embeddedBroker();
    const library = await tempDir('firefly-music-');
    await makeTrack(join(library, 'Ann/Dawn/01 Morning.flac'), { format: 'flac', seconds: 30, seed: 1, title: 'Morning', artist: 'Ann', album: 'Dawn' });
    await makeTrack(join(library, 'Ann/Dawn/02 Noon.flac'), { format: 'flac', seconds: 12, seed: 2, title: 'Noon', artist: 'Ann', album: 'Dawn' });
    await makeTrackWithCover(join(library, 'Bea/Red/01 Crimson.mp3'), { title: 'Crimson', artist: 'Bea', album: 'Red', seconds: 20 });
    await makeTrack(join(library, 'Cal/Night.ogg'), { format: 'ogg', seconds: 8, seed: 4, title: 'Night', artist: 'Cal', album: 'Late' });
    await makeTrack(join(library, 'damaged.flac'), { format: 'flac', seconds: 10, seed: 5, title: 'Damaged' });
    const whole = await readFile(join(library, 'damaged.flac'));
    await writeFile(join(library, 'damaged.flac'), whole.subarray(0, 150));
    hub = await startControlHub(broker, { library, extraArgs: ['--no-advertise'] });
    base = await hubHttpUrl(hub.proc);
    await hub.proc.waitForLog('library indexed', 60_000);
    for (const e of (await request(base, 'GET', '/api/library')).body.entries) entries.set(e.path, e.entryId);
    for (const name of NODES) {
      const file = join(await tempDir('firefly-measure-'), 'frames.jsonl');
      measure.set(name, file);
      await startControlNode(broker, hub, { name, extraArgs: ['--serve-host', '127.0.0.1', '--serve-port', '0', '--output', 'measure', '--measure-file', file, '--output-buffer', '50'] });
    }
    await waitFor('both nodes online', async () => (await request(base, 'GET', '/api/nodes')).body.nodes.filter((n: any) => n.online).length === 2, 30_000);
    stream = await new EventStream(`${base}/api/events`).open();
    browser = await launchChromium();
    desktop = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    page = await desktop.newPage();
    page.on('pageerror', (err) => consoleErrors.push(`page error: ${err.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    await page.goto(base);
    await page.getByRole('status').filter({ hasText: 'live' }).waitFor();
  });

  after(async () => {
    stream?.close();
    await browser?.close();
    await cleanup();
  });

  it('shows the nodes online with their sync quality, live', async () => {
    await show(page, 'Speakers');
    for (const name of NODES) {
      const card = page.locator(`article[data-node="${name}"]`);
      await card.getByText('online', { exact: true }).waitFor();
      // The clock estimate arrives with heartbeats, without a reload.
      await card.getByTestId('sync').filter({ hasText: /±[\d.]+ ms/ }).waitFor({ timeout: 30_000 });
    }
    assert.deepEqual(await unnamedControls(page), []);
  });

  it('creates a group by choosing nodes', async () => {
    await show(page, 'Playing');
    await page.getByRole('button', { name: 'New group' }).click();
    const form = page.getByRole('form', { name: 'New group' });
    await form.getByLabel('Group name').fill('House');
    for (const name of NODES) await form.getByRole('checkbox', { name: new RegExp(`^${name}`) }).check();
    await form.getByRole('button', { name: 'Create group' }).click();
    await page.locator('article[data-group="House"]').waitFor();
    const groups = (await request(base, 'GET', '/api/groups')).body.groups;
    const house = groups.find((g: any) => g.name === 'House');
    assert.ok(house, 'the hub has the group');
    groupId = house.groupId;
    assert.deepEqual(house.members.map((m: any) => m.name).sort(), NODES);
    // A refused action says why: the same name again.
    await page.getByRole('button', { name: 'New group' }).click();
    await form.getByLabel('Group name').fill('House');
    await form.getByRole('button', { name: 'Create group' }).click();
    const notice = page.locator('.notice.error').filter({ hasText: 'exists already' });
    await notice.waitFor();
    await notice.getByRole('button', { name: 'Dismiss' }).click();
    await notice.waitFor({ state: 'detached' });
    await form.getByRole('button', { name: 'Cancel' }).click();
    // Edit the group: take lounge out, then put it back.
    const card = page.locator('article[data-group="House"]');
    const edit = async (check: boolean) => {
      await card.getByRole('button', { name: 'Edit group' }).click();
      const editor = page.getByRole('form', { name: 'Edit House' });
      await editor.getByRole('checkbox', { name: /^lounge/ }).setChecked(check);
      await editor.getByRole('button', { name: 'Save' }).click();
      await editor.waitFor({ state: 'detached' });
    };
    await edit(false);
    await waitFor('lounge out of House', async () => (await request(base, 'GET', `/api/groups/${groupId}`)).body.members.length === 1, 10_000);
    await edit(true);
    await waitFor('lounge back in House', async () => (await request(base, 'GET', `/api/groups/${groupId}`)).body.members.length === 2, 10_000);
  });

  it('starts playback from the library and both nodes play it', async () => {
    await show(page, 'Library');
    await page.getByRole('button', { name: 'Play Morning' }).click();
    await nodesPlay('play from the page', entries.get('Ann/Dawn/01 Morning.flac'));
    await show(page, 'Playing');
    const card = page.locator('article[data-group="House"]');
    await card.getByTestId('now-title').filter({ hasText: 'Morning' }).waitFor();
    await card.getByRole('button', { name: 'Pause' }).waitFor();
    // Seek with the position slider: both nodes continue from there.
    const before = (await request(base, 'GET', `/api/groups/${groupId}`)).body.playback.session;
    await card.getByRole('slider', { name: 'Position in Morning' }).fill('20');
    const sought = await waitFor('a session from 20 s', async () => {
      const g = (await request(base, 'GET', `/api/groups/${groupId}`)).body;
      return g.playback.session !== before && g.playback.anchor && Math.abs(g.playback.anchor.positionMs - 20_000) < 1 ? g : undefined;
    }, 15_000);
    await nodesPlay('after the seek', sought.playback.entryId);
    for (const name of NODES) {
      const frames = (await readMeasure(measure.get(name)!)).filter((r) => r.session === sought.playback.session);
      assert.ok(frames.every((r) => r.trackFrame >= 20 * 48_000 - 48), `${name} plays from 20 s on (frames at 48 kHz)`);
    }
    // Queue from the page: add two tracks, move the last one up.
    await show(page, 'Library');
    await page.getByRole('button', { name: 'Add Noon to the queue' }).click();
    await page.getByRole('button', { name: 'Add Crimson to the queue' }).click();
    await waitFor('queue of 3', async () => (await request(base, 'GET', `/api/groups/${groupId}`)).body.queue.length === 3, 10_000);
    await show(page, 'Playing');
    await card.getByRole('button', { name: 'Move Crimson up' }).click();
    await waitFor('Crimson moved up', async () => {
      const q = (await request(base, 'GET', `/api/groups/${groupId}`)).body.queue.items.map((i: any) => i.entryId);
      return q[1] === entries.get('Bea/Red/01 Crimson.mp3');
    }, 10_000);
    await card.getByRole('button', { name: 'Remove Noon from the queue' }).click();
    await waitFor('Noon removed', async () => {
      const q = (await request(base, 'GET', `/api/groups/${groupId}`)).body.queue.items.map((i: any) => i.entryId);
      return q.length === 2 && !q.includes(entries.get('Ann/Dawn/02 Noon.flac'));
    }, 10_000);
    // Next, from the page: both nodes play the next track.
    await card.getByRole('button', { name: 'Next track' }).click();
    await nodesPlay('next from the page', entries.get('Bea/Red/01 Crimson.mp3'));
    await card.getByTestId('now-title').filter({ hasText: 'Crimson' }).waitFor();
    await card.getByRole('img', { name: 'Cover of Crimson' }).waitFor();
  });

  it('changes the group volume and a node volume; the node reports it', async () => {
    const card = page.locator('article[data-group="House"]');
    const groupSlider = card.getByRole('slider', { name: 'Volume of House' });
    await groupSlider.focus();
    for (let i = 0; i < 5; i++) await page.keyboard.press('ArrowLeft');
    try {
      await waitFor('group volume 95', async () => (await request(base, 'GET', `/api/groups/${groupId}`)).body.volume === 95, 10_000);
    } catch (err) {
      const focused = await page.evaluate(() => String((globalThis as any).document.activeElement?.outerHTML).slice(0, 200));
      throw new Error(`${(err as Error).message}; slider shows ${await groupSlider.inputValue()}, hub has ${(await request(base, 'GET', `/api/groups/${groupId}`)).body.volume}, focus on ${focused}`);
    }
    await card.getByText(/Speakers \(2 of 2 online\)/).click();
    const kitchen = (await request(base, 'GET', '/api/nodes')).body.nodes.find((n: any) => n.name === 'kitchen');
    const nodeSlider = card.getByRole('slider', { name: 'Volume of kitchen' });
    await nodeSlider.focus();
    await page.keyboard.press('Home');
    await waitFor('kitchen reports volume 0 in its heartbeat', () => stream.events.find((e) => e.event === 'heartbeat' && e.data.nodeId === kitchen.nodeId && e.data.volume === 0), 15_000);
    await page.keyboard.press('End');
    await waitFor('kitchen back at 100', () => stream.events.findLast((e) => e.event === 'heartbeat' && e.data.nodeId === kitchen.nodeId)?.data.volume === 100, 15_000);
    // Mute one speaker from the page, then unmute it.
    await card.getByRole('button', { name: 'Mute kitchen' }).click();
    await waitFor('kitchen muted', async () => (await request(base, 'GET', `/api/groups/${groupId}`)).body.members.find((m: any) => m.name === 'kitchen').muted, 10_000);
    await card.getByRole('button', { name: 'Mute kitchen', pressed: true }).click();
    await waitFor('kitchen unmuted', async () => !(await request(base, 'GET', `/api/groups/${groupId}`)).body.members.find((m: any) => m.name === 'kitchen').muted, 10_000);
    await card.getByRole('button', { name: 'Pause' }).click();
    await waitFor('paused', async () => (await request(base, 'GET', `/api/groups/${groupId}`)).body.playback.state === 'paused', 10_000);
  });

  it('uploads a file: progress, indexed, listed, and it plays', async () => {
    const dir = await tempDir('firefly-upload-src-');
    await makeTrack(join(dir, 'fresh.flac'), { format: 'flac', seconds: 15, seed: 21, title: 'Fresh Upload', artist: 'Dee', album: 'New' });
    await show(page, 'Library');
    await page.getByLabel('Choose audio files to upload').setInputFiles(join(dir, 'fresh.flac'));
    await page.locator('li[data-upload="fresh.flac"]').filter({ hasText: 'added to the library' }).waitFor({ timeout: 30_000 });
    const row = page.locator('tr[data-entry="Uploads/fresh.flac"]');
    await row.waitFor({ timeout: 15_000 });
    const entry = (await request(base, 'GET', '/api/library?q=Fresh')).body.entries[0];
    assert.equal(entry.path, 'Uploads/fresh.flac');
    await row.getByRole('button', { name: 'Play Fresh Upload' }).click();
    await nodesPlay('the uploaded track', entry.entryId);
    // Drag and drop onto the box uploads too.
    await makeTrack(join(dir, 'dropped.ogg'), { format: 'ogg', seconds: 2, seed: 22, title: 'Dropped In' });
    const b64 = (await readFile(join(dir, 'dropped.ogg'))).toString('base64');
    const transfer = await page.evaluateHandle((data: string) => {
      const g = globalThis as any;
      const dt = new g.DataTransfer();
      const bytes = Uint8Array.from(g.atob(data) as string, (c) => c.charCodeAt(0));
      dt.items.add(new g.File([bytes], 'dropped.ogg', { type: 'audio/ogg' }));
      return dt;
    }, b64);
    await page.locator('.dropzone').dispatchEvent('drop', { dataTransfer: transfer });
    await page.locator('li[data-upload="dropped.ogg"]').filter({ hasText: 'added to the library' }).waitFor({ timeout: 30_000 });
    await page.locator('tr[data-entry="Uploads/dropped.ogg"]').waitFor({ timeout: 15_000 });
    await screenshot(page, 'library-desktop');
  });

  it('shows why an upload was refused, and files that failed to index', async () => {
    await page.getByLabel('Choose audio files to upload').setInputFiles({ name: 'notes.mp3', mimeType: 'audio/mpeg', buffer: Buffer.from('these are my notes, not an mp3') });
    await page.locator('li[data-upload="notes.mp3"]').filter({ hasText: /refused: .*not audio/ }).waitFor({ timeout: 15_000 });
    await page.getByRole('button', { name: /Not playable/ }).click();
    await page.locator('tr[data-entry="damaged.flac"]').waitFor();
    const reason = await page.locator('tr[data-entry="damaged.flac"] .t-sub').textContent();
    assert.match(reason ?? '', /damaged\.flac: .{5,}/);
    await page.getByRole('button', { name: 'All', exact: true }).click();
    // Search.
    await page.getByLabel('Search the library by title, artist or album').fill('noon');
    await page.locator('tr[data-entry="Ann/Dawn/02 Noon.flac"]').waitFor();
    await waitFor('only Noon listed', async () => (await page.locator('tbody tr').count()) === 1, 10_000);
    await page.getByLabel('Search the library by title, artist or album').fill('');
    assert.deepEqual(await unnamedControls(page), []);
  });

  it('deletes a file after asking, and rescans', async () => {
    const row = page.locator('tr[data-entry="Uploads/dropped.ogg"]');
    // Declining the question keeps the file.
    page.once('dialog', (d) => void d.dismiss());
    await row.getByRole('button', { name: 'Delete Dropped In' }).click();
    await page.waitForTimeout(500);
    assert.ok((await request(base, 'GET', '/api/library?q=Dropped')).body.total === 1, 'still there after "cancel"');
    page.once('dialog', (d) => void d.accept());
    await row.getByRole('button', { name: 'Delete Dropped In' }).click();
    await row.waitFor({ state: 'detached', timeout: 15_000 });
    assert.equal((await request(base, 'GET', '/api/library?q=Dropped')).body.total, 0);
    const since = stream.events.length;
    await page.getByRole('button', { name: 'Rescan' }).click();
    await page.locator('.notice.info').filter({ hasText: 'Rescanning' }).waitFor();
    // Every file is read again: a scan of all of them (the deletion before was a scan of one).
    const files = (await request(base, 'GET', '/api/state')).body.library.counts.live;
    const end = await waitFor('the rescan finished', () => stream.events.slice(since).find((e) => e.event === 'library' && !e.data.scan.active && e.data.scan.total >= files), 30_000);
    assert.equal(end.data.scan.done, end.data.scan.total);
    await page.locator('.notice.info').getByRole('button', { name: 'Dismiss' }).click();
  });

  it('asks for the access token when the hub requires one, then carries on', async () => {
    // A second, real hub with credentials forced on (a hub bound beyond loopback has them
    // by default): the page gets 401s, shows its token form, and the hub's own login
    // (POST /api/login, hub/http/auth.ts) sets the session cookie.
    const secured = await startControlHub(await embeddedBroker(), { library: await tempDir('firefly-music-'), extraArgs: ['--auth', 'on', '--no-advertise'] });
    await secured.proc.waitForLog('credentials required');
    const token = secured.proc.logs.find((l) => typeof l.token === 'string')?.token as string | undefined;
    assert.ok(token, 'the hub shows its controller token once at first start');
    const securedBase = await hubHttpUrl(secured.proc);
    const refused = await request(securedBase, 'GET', '/api/groups');
    assert.equal(refused.status, 401);
    const gated = await browser.newContext({ viewport: { width: 800, height: 700 } });
    const p = await gated.newPage();
    await p.goto(securedBase);
    const dialog = p.getByRole('dialog', { name: 'This hub needs an access token' });
    await dialog.waitFor();
    await dialog.getByLabel('Access token').fill('controller:nobody:wrong');
    await dialog.getByRole('button', { name: 'Sign in' }).click();
    await dialog.getByRole('alert').filter({ hasText: 'token refused' }).waitFor();
    await dialog.getByLabel('Access token').fill(token);
    await dialog.getByRole('button', { name: 'Sign in' }).click();
    await dialog.waitFor({ state: 'detached' });
    await p.getByRole('status').filter({ hasText: 'live' }).waitFor({ timeout: 15_000 });
    await gated.close();
    await secured.proc.stop();
  });

  it('holds at 360 px wide and on a desktop; screenshots of the main views', async () => {
    // A queue with cover art for the pictures (the controls were tested above).
    const ids = ['Bea/Red/01 Crimson.mp3', 'Ann/Dawn/01 Morning.flac', 'Ann/Dawn/02 Noon.flac', 'Cal/Night.ogg'].map((p) => entries.get(p)!);
    await request(base, 'POST', `/api/groups/${groupId}/play`, { entryIds: ids });
    await nodesPlay('the queue for the screenshots', ids[0]);
    await show(page, 'Playing');
    await page.locator('article[data-group="House"]').getByRole('img', { name: 'Cover of Crimson' }).waitFor();
    await page.waitForTimeout(1500);
    await screenshot(page, 'playing-desktop');
    await show(page, 'Speakers');
    await screenshot(page, 'speakers-desktop');
    const phone = await browser.newContext({ viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    const p = await phone.newPage();
    await p.goto(base);
    await p.getByRole('status').filter({ hasText: 'live' }).waitFor();
    for (const [view, name] of [['Playing', 'playing'], ['Library', 'library'], ['Speakers', 'speakers']] as const) {
      await show(p, view);
      await p.waitForTimeout(500);
      const width = await p.evaluate(() => (globalThis as any).document.documentElement.scrollWidth as number);
      assert.ok(width <= 360, `${view} is ${width} px wide at a 360 px viewport`);
      await screenshot(p, `${name}-phone`);
    }
    // Keyboard: the views are reachable with Tab and Enter.
    for (let i = 0; i < 6; i++) {
      await p.keyboard.press('Tab');
      if ((await p.evaluate(() => (globalThis as any).document.activeElement?.textContent as string | undefined)) === 'Playing') break;
    }
    await p.keyboard.press('Enter');
    await p.getByRole('heading', { level: 1, name: 'Playing' }).waitFor();
    await phone.close();
    // The dark theme follows the system's setting.
    const dark = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: 'dark' });
    const d = await dark.newPage();
    await d.goto(`${base}/#/library`);
    await d.getByRole('status').filter({ hasText: 'live' }).waitFor();
    await d.locator('tr[data-entry="Ann/Dawn/01 Morning.flac"]').waitFor();
    await screenshot(d, 'library-desktop-dark');
    await dark.close();
    process.stderr.write(`screenshots in ${shots}\n`);
    // The refusals the tests provoke on purpose (a group name taken, a text file as audio) log their status; nothing else may.
    assert.deepEqual(consoleErrors.filter((e) => !/status of (409 \(Conflict\)|415 \(Unsupported Media Type\))/.test(e)), [], 'the page logged errors');
  });
});
