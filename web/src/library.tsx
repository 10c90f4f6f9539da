import { useEffect, useRef, useState } from 'preact/hooks';
import { api, uploadFile } from './api';
import { forgetEntries, formatBytes, formatTime, type Entry } from './entries';
import type { HubState } from './live';
import { Icon } from './icons';
import { notify, Progress, useAction } from './ui';

interface Page {
  entries: Entry[];
  total: number;
}

interface Album {
  artist: string;
  album: string;
  tracks: number;
  coverEntryId: number | null;
}

/** One file the user dropped: its upload here, then its indexing on the hub. */
interface LocalUpload {
  key: number;
  name: string;
  loaded: number;
  total: number;
  phase: 'uploading' | 'stored' | 'refused';
  error?: string;
  uploadId?: number;
}

let uploadKey = 1;

/** Entries fetched per request. */
const PAGE = 200;

function Uploads({ hub }: { hub: HubState }) {
  const [local, setLocal] = useState<LocalUpload[]>([]);
  const [over, setOver] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const update = (key: number, patch: Partial<LocalUpload>) => setLocal((l) => l.map((u) => (u.key === key ? { ...u, ...patch } : u)));

  const send = (files: FileList | File[]) => {
    for (const file of Array.from(files)) {
      const key = uploadKey++;
      const item: LocalUpload = { key, name: file.name, loaded: 0, total: file.size, phase: 'uploading' };
      setLocal((l) => [...l.slice(-19), item]);
      if (hub.uploadMaxBytes && file.size > hub.uploadMaxBytes) {
        update(key, { phase: 'refused', error: `larger than the hub's upload limit of ${formatBytes(hub.uploadMaxBytes)}` });
        continue;
      }
      uploadFile(file, (p) => update(key, { loaded: p.loaded, total: p.total }))
        .then((res) => update(key, { phase: 'stored', loaded: file.size, uploadId: res.files[0]?.uploadId }))
        .catch((err: Error) => update(key, { phase: 'refused', error: err.message }));
    }
  };

  return (
    <section class="card uploads" aria-labelledby="upload-title">
      <h2 id="upload-title">Add music</h2>
      <div
        class={`dropzone ${over ? 'over' : ''}`}
        onDragOver={(e) => {
          e.preventDefault();
          setOver(true);
        }}
        onDragLeave={() => setOver(false)}
        onDrop={(e) => {
          e.preventDefault();
          setOver(false);
          if (e.dataTransfer?.files.length) send(e.dataTransfer.files);
        }}
      >
        <p>Drop audio files here (MP3, FLAC, WAV, Ogg, Opus, M4A), or</p>
        <label class="button primary">
          Choose files
          <input
            ref={input}
            type="file"
            multiple
            accept="audio/*,.mp3,.flac,.wav,.ogg,.oga,.opus,.m4a,.aac"
            class="visually-hidden"
            aria-label="Choose audio files to upload"
            onChange={(e) => {
              const files = (e.target as HTMLInputElement).files;
              if (files?.length) send(files);
              (e.target as HTMLInputElement).value = '';
            }}
          />
        </label>
      </div>
      {local.length > 0 && (
        <ul class="upload-list" aria-label="Uploads">
          {[...local].reverse().map((u) => {
            const hubSide = u.uploadId !== undefined ? hub.uploads.find((x) => x.uploadId === u.uploadId) : undefined;
            let status: string;
            let cls = '';
            if (u.phase === 'uploading') status = `uploading ${Math.round((u.loaded / Math.max(u.total, 1)) * 100)} %`;
            else if (u.phase === 'refused') {
              status = `refused: ${u.error}`;
              cls = 'failed';
            } else if (hubSide?.state === 'indexed') {
              status = 'added to the library';
              cls = 'done';
            } else if (hubSide?.state === 'failed') {
              status = `failed: ${hubSide.error}`;
              cls = 'failed';
            } else status = 'indexing…';
            return (
              <li key={u.key} class={cls} data-upload={u.name}>
                <span class="u-name">{u.name}</span>
                <span class="u-status">{status}</span>
                {u.phase === 'uploading' && <progress value={u.loaded} max={Math.max(u.total, 1)} aria-label={`Upload of ${u.name}`} />}
              </li>
            );
          })}
        </ul>
      )}
    </section>
  );
}

export function LibraryView({ hub }: { hub: HubState }) {
  const act = useAction();
  const [q, setQ] = useState('');
  const [filter, setFilter] = useState<'all' | 'failed'>('all');
  const [album, setAlbum] = useState<Album | null>(null);
  const [albums, setAlbums] = useState<Album[]>([]);
  const [page, setPage] = useState<Page>({ entries: [], total: 0 });
  // Pages shown: the first, plus one more each time the user asks for more.
  const [pages, setPages] = useState(1);
  const [target, setTarget] = useState<number | null>(null);
  const version = hub.library?.version ?? 0;
  const groupId = target ?? hub.groups[0]?.groupId ?? null;

  useEffect(() => {
    // A slower, older answer must not replace a newer one.
    let current = true;
    const t = setTimeout(() => {
      const params = new URLSearchParams({ limit: String(PAGE) });
      if (q.trim()) params.set('q', q.trim());
      if (album) {
        params.set('artist', album.artist);
        params.set('album', album.album);
      }
      const load = async () => {
        if (filter === 'failed') {
          const [failed, unsupported] = await Promise.all([
            api<Page>('GET', `/library?${params}&status=failed`),
            api<Page>('GET', `/library?${params}&status=unsupported`),
          ]);
          return { entries: [...failed.entries, ...unsupported.entries], total: failed.total + unsupported.total };
        }
        // Every page shown so far, again: the library may have changed under them.
        const all: Page = { entries: [], total: 0 };
        for (let i = 0; i < pages; i++) {
          params.set('offset', String(i * PAGE));
          const p = await api<Page>('GET', `/library?${params}`);
          all.entries.push(...p.entries);
          all.total = p.total;
          if (all.entries.length >= p.total) break;
        }
        return all;
      };
      load().then(
        (p) => current && setPage(p),
        (err: Error) => current && notify('error', `cannot load the library: ${err.message}`),
      );
    }, 200);
    return () => {
      current = false;
      clearTimeout(t);
    };
  }, [q, filter, album, pages, version]);
  useEffect(() => setPages(1), [q, filter, album]);

  useEffect(() => {
    forgetEntries();
    api<{ albums: Album[] }>('GET', '/library/albums').then((a) => setAlbums(a.albums), () => undefined);
  }, [version]);

  const scan = hub.library?.scan;
  const counts = hub.library?.counts;
  return (
    <section aria-labelledby="library-title">
      <div class="view-head">
        <h1 id="library-title">Library</h1>
        <span class="muted">
          {counts ? `${counts.ok} playable · ${counts.failed + counts.unsupported} not playable` : ''}
        </span>
        <button type="button" class="ghost" onClick={() => act(() => api('POST', '/library/rescan')).then((ok) => ok && notify('info', 'Rescanning the library'))}>
          Rescan
        </button>
      </div>
      {scan?.active && <Progress value={scan.done} max={scan.total} label="Library scan" text={`Scanning: ${scan.done} of ${scan.total} files`} />}
      <Uploads hub={hub} />
      <div class="library-tools">
        <label class="search">
          <span>Search</span>
          <input type="search" value={q} placeholder="Title, artist or album" aria-label="Search the library by title, artist or album" onInput={(e) => setQ((e.target as HTMLInputElement).value)} />
        </label>
        <div class="segmented" role="group" aria-label="Which files">
          <button type="button" aria-pressed={filter === 'all'} onClick={() => setFilter('all')}>
            All
          </button>
          <button type="button" aria-pressed={filter === 'failed'} onClick={() => setFilter('failed')}>
            Not playable ({counts ? counts.failed + counts.unsupported : 0})
          </button>
        </div>
        <label class="inline">
          <span>Play on</span>
          <select value={groupId ?? ''} onChange={(e) => setTarget(Number((e.target as HTMLSelectElement).value))} aria-label="Group that Play and Queue act on">
            {hub.groups.length === 0 && <option value="">no group yet</option>}
            {hub.groups.map((g) => (
              <option key={g.groupId} value={g.groupId}>
                {g.name}
              </option>
            ))}
          </select>
        </label>
      </div>
      {hub.playlists.length > 0 && (
        <section class="playlists" aria-labelledby="playlists-title">
          <h2 id="playlists-title">Playlists</h2>
          <ul>
            {hub.playlists.map((pl) => (
              <li key={pl.playlistId}>
                <span>
                  {pl.name}
                  <small>
                    {pl.entryCount} tracks · {formatTime(pl.durationMs)}
                  </small>
                </span>
                {groupId !== null && (
                  <button type="button" class="icon" aria-label={`Play the playlist ${pl.name}`} title="Play" onClick={() => act(() => api('POST', `/groups/${groupId}/play`, { playlistId: pl.playlistId }))}>
                    <Icon name="play" />
                  </button>
                )}
              </li>
            ))}
          </ul>
        </section>
      )}
      {albums.length > 0 && filter === 'all' && (
        <nav class="albums" aria-label="Albums">
          <button type="button" aria-pressed={album === null} onClick={() => setAlbum(null)}>
            All albums
          </button>
          {albums.slice(0, 60).map((a) => (
            <button type="button" key={`${a.artist}\u0000${a.album}`} aria-pressed={album?.album === a.album && album?.artist === a.artist} onClick={() => setAlbum(a)}>
              {a.coverEntryId !== null && <img src={`api/library/entries/${a.coverEntryId}/cover`} alt="" width={28} height={28} />}
              <span>
                {a.album || 'No album'}
                <small>{a.artist || 'Unknown artist'}</small>
              </span>
            </button>
          ))}
        </nav>
      )}
      <table class="tracks">
        <caption class="visually-hidden">Library files</caption>
        <thead>
          <tr>
            <th scope="col">Title</th>
            <th scope="col" class="wide">Artist</th>
            <th scope="col" class="wide">Album</th>
            <th scope="col" class="num">Time</th>
            <th scope="col">
              <span class="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {page.entries.map((e) => {
            const name = e.title ?? e.path;
            return (
              <tr key={e.entryId} data-entry={e.path} class={e.status === 'ok' ? '' : 'bad'}>
                <td>
                  <span class="t-title">{name}</span>
                  <small class="t-sub">{e.status === 'ok' ? [e.artist, e.album].filter(Boolean).join(' — ') || e.path : `${e.path}: ${e.error ?? e.status}`}</small>
                </td>
                <td class="wide">{e.artist ?? e.albumArtist ?? ''}</td>
                <td class="wide">{e.album ?? ''}</td>
                <td class="num">{formatTime(e.durationMs)}</td>
                <td class="actions">
                  {e.status === 'ok' && groupId !== null && (
                    <>
                      <button type="button" class="icon" aria-label={`Play ${name}`} title="Play now" onClick={() => act(() => api('POST', `/groups/${groupId}/play`, { entryId: e.entryId }))}>
                        <Icon name="play" />
                      </button>
                      <button type="button" class="icon" aria-label={`Add ${name} to the queue`} title="Add to queue" onClick={() => act(() => api('POST', `/groups/${groupId}/queue`, { entryIds: [e.entryId] }))}>
                        <Icon name="plus" />
                      </button>
                    </>
                  )}
                  <button
                    type="button"
                    class="icon danger"
                    aria-label={`Delete ${name}`}
                    title="Delete the file"
                    onClick={() => {
                      if (confirm(`Delete ${e.path} from the library folder? The file is removed from disk.`)) act(() => api('DELETE', `/library/entries/${e.entryId}`));
                    }}
                  >
                    <Icon name="trash" />
                  </button>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {page.entries.length === 0 && <p class="muted">{filter === 'failed' ? 'Every file in the library is playable.' : 'No tracks match.'}</p>}
      {page.total > page.entries.length && filter === 'all' && (
        <button type="button" class="ghost more" onClick={() => setPages(pages + 1)}>
          Show more ({page.entries.length} of {page.total})
        </button>
      )}
    </section>
  );
}
