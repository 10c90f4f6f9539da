import type { NodeInfo } from '../../src/protocol/schemas';
import { api } from './api';
import { formatBytes } from './entries';
import { VolumeSlider } from './groups';
import type { Beat, HubState } from './live';
import { Progress, useAction } from './ui';

/** How well a node follows the hub's clock, in words and a class for the colour. */
export function syncQuality(clock: NodeInfo['clock']): { text: string; cls: string } {
  if (!clock) return { text: 'no report yet', cls: 'off' };
  if (!clock.synced || clock.errorMs === null) return { text: 'syncing clock…', cls: 'warn' };
  const err = clock.errorMs;
  const cls = err <= 1 ? 'ok' : err <= 5 ? 'warn' : 'bad';
  const parts = [`±${err.toFixed(err < 1 ? 2 : 1)} ms`];
  if (clock.rttMs !== null) parts.push(`rtt ${clock.rttMs.toFixed(1)} ms`);
  if (clock.jitterMs !== null && clock.jitterMs !== undefined) parts.push(`jitter ${clock.jitterMs.toFixed(1)} ms`);
  if (clock.driftPpm !== null && clock.driftPpm !== undefined) parts.push(`drift ${clock.driftPpm.toFixed(0)} ppm`);
  return { text: parts.join(' · '), cls };
}

function live(n: NodeInfo, beats: Record<string, Beat>): Pick<NodeInfo, 'clock' | 'downloads' | 'store' | 'playback'> {
  const b = beats[n.uuid];
  return b && n.online ? { clock: b.clock, downloads: b.downloads, store: b.store, playback: b.playback } : { clock: n.clock, downloads: n.downloads ?? null, store: n.store, playback: n.playback };
}

export function NodesView({ hub }: { hub: HubState }) {
  const act = useAction();
  const groupName = new Map(hub.groups.map((g) => [g.groupId, g.name]));
  return (
    <section aria-labelledby="nodes-title">
      <div class="view-head">
        <h1 id="nodes-title">Speakers</h1>
        <span class="muted">
          {hub.nodes.filter((n) => n.online).length} of {hub.nodes.length} online
        </span>
      </div>
      {hub.nodes.length === 0 && <p class="muted">No node has joined yet. Start one with “firefly node” on a speaker box.</p>}
      <div class="cards">
        {hub.nodes.map((n) => {
          const l = live(n, hub.beats);
          const q = syncQuality(l.clock);
          const d = l.downloads;
          return (
            <article class="card node" key={n.nodeId} aria-labelledby={`node-${n.nodeId}`} data-node={n.name}>
              <header class="card-head">
                <h2 id={`node-${n.nodeId}`}>{n.name}</h2>
                <span class={`badge ${n.online ? 'ok' : 'off'}`}>{n.online ? 'online' : 'offline'}</span>
              </header>
              <dl class="facts">
                <dt>Group</dt>
                <dd>{n.groupId !== null ? groupName.get(n.groupId) ?? `#${n.groupId}` : 'none'}</dd>
                <dt>Sync</dt>
                <dd>
                  <span class={`dot ${q.cls}`} aria-hidden="true" /> <span data-testid="sync">{q.text}</span>
                </dd>
                <dt>Playing</dt>
                <dd>{l.playback ? l.playback.state : '–'}</dd>
                <dt>Store</dt>
                <dd>{l.store ? `${formatBytes(l.store.bytes)} in ${l.store.chunks} chunks (budget ${formatBytes(l.store.budgetBytes)})` : '–'}</dd>
              </dl>
              {d && d.chunksWanted > 0 && (d.active || d.chunksDone < d.chunksWanted) && (
                <Progress
                  value={d.bytesDone}
                  max={d.bytesWanted}
                  label={`Downloads of ${n.name}`}
                  text={`${d.active ? 'Downloading' : 'Last download'}: ${formatBytes(d.bytesDone)} of ${formatBytes(d.bytesWanted)}, ${d.chunksDone} of ${d.chunksWanted} chunks`}
                />
              )}
              <div class="volume-row">
                <label for={`node-${n.nodeId}-volume`}>Volume</label>
                <VolumeSlider id={`node-${n.nodeId}-volume`} value={n.volume} label={`Volume of ${n.name}`} onCommit={(v) => act(() => api('PATCH', `/nodes/${n.nodeId}`, { volume: v }))} />
              </div>
            </article>
          );
        })}
      </div>
    </section>
  );
}

/** Long work in one line each: the scan, and nodes downloading. */
export function Activity({ hub }: { hub: HubState }) {
  const scan = hub.library?.scan;
  const downloading = hub.nodes
    .map((n) => ({ n, d: live(n, hub.beats).downloads }))
    .filter((x) => x.n.online && x.d?.active);
  const indexing = hub.uploads.filter((u) => u.state === 'indexing');
  if (!scan?.active && downloading.length === 0 && indexing.length === 0) return null;
  return (
    <aside class="activity" aria-label="Work in progress">
      {scan?.active && <Progress value={scan.done} max={scan.total} label="Library scan" text={`Library scan: ${scan.done} of ${scan.total} files`} />}
      {indexing.length > 0 && <p class="muted">Indexing {indexing.length} uploaded file{indexing.length > 1 ? 's' : ''}…</p>}
      {downloading.map(({ n, d }) => (
        <Progress key={n.nodeId} value={d!.bytesDone} max={d!.bytesWanted} label={`Downloads of ${n.name}`} text={`${n.name}: ${formatBytes(d!.bytesDone)} of ${formatBytes(d!.bytesWanted)} (${d!.chunksDone}/${d!.chunksWanted} chunks)`} />
      ))}
    </aside>
  );
}
