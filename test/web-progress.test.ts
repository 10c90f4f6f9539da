/**
 * Progress of long work as the web page sees it (GET /api/events): a library scan counts
 * files done of files seen, and a node's download reports bytes and chunks as they
 * arrive. Real hub (its chunk upload capped so the download takes seconds), a real node.
 */
import { strict as assert } from 'node:assert';
import { copyFile, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeTrack } from './helpers/audio.js';
import { embeddedBroker, startControlHub, startControlNode, type BrokerAccess, type HubProcess } from './helpers/control-plane.js';
import { cleanup, tempDir, waitFor } from './helpers/processes.js';
import { EventStream, hubHttpUrl, launchChromium, request } from './helpers/web.js';

describe('progress of long work over live updates', () => {
  let broker: BrokerAccess;
  let hub: HubProcess;
  let base: string;
  let library: string;
  let stream: EventStream;

  before(async () => {
    broker = await embeddedBroker();
    library = await tempDir('firefly-music-');
    for (let i = 0; i < 3; i++) await makeTrack(join(library, `long-${i}.flac`), { format: 'flac', seconds: 20, seed: 100 + i, title: `Long ${i}` });
    // 8 Mbit/s: the node's download of these ~5 MB takes several seconds.
    hub = await startControlHub(broker, { library, extraArgs: ['--no-advertise', '--upload-limit', '8M', '--workers', '1'] });
    base = await hubHttpUrl(hub.proc);
    await hub.proc.waitForLog('library indexed', 60_000);
    stream = await new EventStream(`${base}/api/events`).open();
    await waitFor('snapshot', () => stream.events.find((e) => e.event === 'snapshot'), 10_000);
  });

  after(async () => {
    stream?.close();
    await cleanup();
  });

  it("shows a node's download: bytes and chunks climbing, then complete", async () => {
    // The page shows it too, while it happens.
    const browser = await launchChromium();
    let proc;
    try {
      const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
      await page.goto(`${base}/#/speakers`);
      await page.getByRole('status').filter({ hasText: 'live' }).waitFor();
      ({ proc } = await startControlNode(broker, hub, { name: 'attic' }));
      await page.getByRole('progressbar', { name: 'Downloads of attic' }).first().waitFor({ timeout: 60_000 });
      // The activity line under the header names the node, bytes and chunks.
      await page.getByText(/attic: [\d.]+ [KM]B of [\d.]+ MB \(\d+\/\d+ chunks\)/).first().waitFor();
    } finally {
      await browser.close();
    }
    await proc.waitForLog('joined the hub', 30_000);
    const beats = () => stream.events.filter((e) => e.event === 'heartbeat' && e.data.downloads);
    const midway = await waitFor('a heartbeat in the middle of the download', () => beats().find((e) => e.data.downloads.active && e.data.downloads.bytesDone > 0 && e.data.downloads.bytesDone < e.data.downloads.bytesWanted), 60_000);
    const d = midway.data.downloads;
    assert.ok(d.chunksWanted > 10, `chunks wanted: ${d.chunksWanted}`);
    assert.ok(d.chunksDone < d.chunksWanted);
    assert.ok(d.bytesWanted > 3_000_000, `bytes wanted: ${d.bytesWanted}`);
    const done = await waitFor('a heartbeat after the download', () => beats().find((e) => !e.data.downloads.active && e.data.downloads.chunksWanted > 0 && e.data.downloads.chunksDone === e.data.downloads.chunksWanted), 60_000);
    assert.equal(done.data.downloads.bytesDone, done.data.downloads.bytesWanted);
    assert.equal(done.data.downloads.bytesWanted, d.bytesWanted, 'the same download, from start to end');
    // The node list (REST and the retained topic) carries it too.
    const node = (await request(base, 'GET', '/api/nodes')).body.nodes.find((n: any) => n.name === 'attic');
    assert.ok(node.downloads, 'downloads in the node list');
  });

  it('counts a scan: files done of files seen, then all done', async () => {
    const source = await tempDir('firefly-more-');
    const first = join(source, 'a.flac');
    await makeTrack(first, { format: 'flac', seconds: 8, seed: 7, title: 'Copy' });
    const before = (await request(base, 'GET', '/api/state')).body.library.counts.live;
    const files = 40;
    const since = stream.events.length;
    await mkdir(join(library, 'more'));
    // Copies of one file: different paths, each read and indexed (one worker).
    await Promise.all(Array.from({ length: files }, (_, i) => copyFile(first, join(library, 'more', `copy-${String(i).padStart(2, '0')}.flac`))));
    assert.equal((await readdir(join(library, 'more'))).length, files);
    const scans = () => stream.events.slice(since).filter((e) => e.event === 'library').map((e) => e.data);
    const end = await waitFor('the scan to finish', () => scans().find((l) => !l.scan.active && l.counts.live === before + files), 60_000);
    assert.equal(end.scan.done, end.scan.total, JSON.stringify(end.scan));
    assert.ok(end.scan.total >= files, `the scan saw ${end.scan.total} files`);
    const midway = scans().filter((l) => l.scan.active && l.scan.done < l.scan.total);
    assert.ok(midway.length > 0, `progress while scanning: ${JSON.stringify(scans().map((l) => l.scan))}`);
    // Progress only moves forward within one scan.
    for (let i = 1; i < midway.length; i++) assert.ok(midway[i].scan.done >= midway[i - 1].scan.done);
  });
});
