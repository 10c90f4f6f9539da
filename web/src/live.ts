import type { DownloadProgress, GroupState, NodeInfo, PlaylistSummary } from '../../src/protocol/schemas';
import { api, ApiFailure, needLogin } from './api';

export interface ScanStatus {
  active: boolean;
  done: number;
  total: number;
  ready: boolean;
}

export interface LibraryState {
  version: number;
  counts: { live: number; ok: number; failed: number; unsupported: number; removed: number };
  scan: ScanStatus;
}

export type { UploadStatus } from '../../hub/http/api-types';
import type { UploadStatus } from '../../hub/http/api-types';

export interface Beat {
  uuid: string;
  nodeId: number | null;
  clock: NodeInfo['clock'];
  playback: NodeInfo['playback'];
  downloads: DownloadProgress | null;
  store: NodeInfo['store'];
}

export interface HubState {
  connected: boolean;
  groups: GroupState[];
  nodes: NodeInfo[];
  library: LibraryState | null;
  playlists: PlaylistSummary[];
  uploads: UploadStatus[];
  /** Latest heartbeat per node uuid: live clock quality and downloads. */
  beats: Record<string, Beat>;
  /** When each group's state arrived here (the position moves on from then while playing). */
  receivedAt: Record<number, number>;
  uploadMaxBytes: number;
}

type Listener = (s: HubState) => void;

/**
 * The hub's state as the page knows it: a snapshot on connect, then every change the hub
 * publishes, over one EventSource (server-sent events). Reconnects by itself.
 */
export class LiveState {
  state: HubState = { connected: false, groups: [], nodes: [], library: null, playlists: [], uploads: [], beats: {}, receivedAt: {}, uploadMaxBytes: 0 };
  private listeners = new Set<Listener>();
  private source?: EventSource;

  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  private set(patch: Partial<HubState>): void {
    this.state = { ...this.state, ...patch };
    for (const l of this.listeners) l(this.state);
  }

  private stampGroups(groups: GroupState[]): Record<number, number> {
    const now = performance.now();
    const out = { ...this.state.receivedAt };
    for (const g of groups) out[g.groupId] = now;
    return out;
  }

  async start(): Promise<void> {
    try {
      const s = await api<{ limits: { uploadMaxBytes: number } }>('GET', '/state');
      this.set({ uploadMaxBytes: s.limits.uploadMaxBytes });
    } catch (err) {
      if (!(err instanceof ApiFailure)) throw err;
    }
    this.connect();
  }

  private connect(): void {
    const source = new EventSource('api/events', { withCredentials: true });
    this.source = source;
    const on = <T>(event: string, fn: (data: T) => void) =>
      source.addEventListener(event, (e) => {
        try {
          fn(JSON.parse((e as MessageEvent<string>).data) as T);
        } catch (err) {
          console.warn(`bad ${event} event`, err);
        }
      });
    on<{ groups: GroupState[]; nodes: NodeInfo[]; library: LibraryState; playlists: PlaylistSummary[]; uploads: UploadStatus[] }>('snapshot', (s) =>
      this.set({ connected: true, groups: s.groups, nodes: s.nodes, library: s.library, playlists: s.playlists, uploads: s.uploads, receivedAt: this.stampGroups(s.groups) }),
    );
    on<{ groups: GroupState[] }>('groups', (g) => this.set({ groups: g.groups, receivedAt: this.stampGroups(g.groups) }));
    on<{ nodes: NodeInfo[] }>('nodes', (n) => this.set({ nodes: n.nodes }));
    on<LibraryState>('library', (l) => this.set({ library: l }));
    on<{ playlists: PlaylistSummary[] } | null>('playlists', (p) => this.set({ playlists: p?.playlists ?? [] }));
    on<Beat>('heartbeat', (b) => this.set({ beats: { ...this.state.beats, [b.uuid]: b } }));
    on<UploadStatus>('upload', (u) => {
      const rest = this.state.uploads.filter((x) => x.uploadId !== u.uploadId);
      this.set({ uploads: [...rest, u].slice(-100) });
    });
    source.onopen = () => this.set({ connected: true });
    source.onerror = () => {
      this.set({ connected: false });
      // EventSource retries by itself, but not after a refusal: ask why once it gave up.
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        void fetch('api/state', { credentials: 'same-origin' })
          .then(async (res) => {
            if (res.status === 401) await needLogin();
          })
          .catch(() => undefined)
          .finally(() => setTimeout(() => this.connect(), 2000));
      }
    };
  }

  stop(): void {
    this.source?.close();
  }
}

export const live = new LiveState();
