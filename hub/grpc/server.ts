import { Server, ServerCredentials, status, type sendUnaryData, type ServerInterceptor, type ServerUnaryCall } from '@grpc/grpc-js';
import { open } from 'node:fs/promises';
import type { Logger } from '../../src/log.js';
import { sha256 } from '../../src/chunking/manifest.js';
import { channelOptions, dataPlane, shutdownServer, type LibraryHandlers } from '../../src/protocol/data-plane.js';
import { chunkService, type ChunkServiceStats, type ChunkSource, type TransitCall } from '../../src/transfer/chunk-service.js';
import { TokenBucket } from '../../src/transfer/token-bucket.js';
import type { ChunkSourceInfo } from '../../src/generated/firefly/v1/ChunkSourceInfo.js';
import type { SourcesReply } from '../../src/generated/firefly/v1/SourcesReply.js';
import type { SourcesRequest__Output } from '../../src/generated/firefly/v1/SourcesRequest.js';
import type { ChangesRequest__Output } from '../../src/generated/firefly/v1/ChangesRequest.js';
import type { ChangesReply } from '../../src/generated/firefly/v1/ChangesReply.js';
import type { ManifestRequest__Output } from '../../src/generated/firefly/v1/ManifestRequest.js';
import type { TrackManifest } from '../../src/generated/firefly/v1/TrackManifest.js';
import type { LibraryEntry } from '../../src/generated/firefly/v1/LibraryEntry.js';
import type { Catalogue, EntryRow } from '../library/catalogue.js';

export const DEFAULT_CHANGES_PAGE = 500;
export const MAX_CHANGES_PAGE = 5000;

const STATUS = { ok: 'OK', unsupported: 'UNSUPPORTED', failed: 'FAILED' } as const;

export function toWireEntry(e: EntryRow): LibraryEntry {
  const m = e.metadata;
  return {
    id: String(e.id),
    version: String(e.version),
    removed: e.removed,
    root: e.root,
    path: e.path,
    contentId: e.contentId ?? Buffer.alloc(0),
    size: String(e.size),
    status: STATUS[e.status],
    error: e.error ?? '',
    format: e.format ?? '',
    metadata: e.removed
      ? undefined
      : {
          title: m.title,
          artist: m.artist,
          album: m.album,
          albumArtist: m.albumArtist,
          trackNo: m.trackNo,
          discNo: m.discNo,
          year: m.year,
          genre: m.genre,
          durationSeconds: m.durationSeconds,
          sampleRate: m.sampleRate,
          channels: m.channels,
          bitsPerSample: m.bitsPerSample,
          codec: m.codec,
          container: m.container,
          bitrate: m.bitrate,
          coverHash: m.coverHash ? Buffer.from(m.coverHash, 'hex') : undefined,
          coverMime: m.coverMime,
        },
  };
}

/**
 * Reads chunks straight from the library files. Every chunk is hashed before it is
 * sent: a file edited on disk since it was indexed must not hand out wrong bytes, so a
 * mismatch tries the next file holding the chunk and asks for the stale file to be
 * indexed again.
 */
export class LibraryChunkSource implements ChunkSource {
  constructor(
    private readonly catalogue: Catalogue,
    private readonly onStale: (file: string) => void,
  ) {}

  async read(hash: Buffer): Promise<Buffer | undefined> {
    for (const loc of this.catalogue.locate(hash)) {
      let data: Buffer;
      try {
        const fh = await open(loc.file, 'r');
        try {
          data = Buffer.allocUnsafe(loc.size);
          const { bytesRead } = await fh.read(data, 0, loc.size, loc.offset);
          if (bytesRead !== loc.size) data = data.subarray(0, bytesRead);
        } finally {
          await fh.close();
        }
      } catch {
        this.onStale(loc.file);
        continue;
      }
      if (data.length === loc.size && sha256(data).equals(hash)) return data;
      this.onStale(loc.file);
    }
    return undefined;
  }
}

export interface DataPlaneOptions {
  host: string;
  port: number;
  maxMessageBytes: number;
  /** Cap on chunk bytes sent per second, all calls together; 0: unlimited. */
  uploadLimitBytesPerSecond?: number;
  /** Checks run before any handler (the token check and rate limit of hub/security/). */
  interceptors?: ServerInterceptor[];
  /** Serve over TLS with this certificate and key (PEM). */
  tls?: { cert: Buffer; key: Buffer };
}

/** The swarm's view for the data plane: who holds what, and what the hub is sending to whom. */
export interface SwarmDirectory {
  sources(contentIds: readonly Buffer[]): ChunkSourceInfo[];
  transit(node: string, hashes: readonly Buffer[]): TransitCall;
  /** Is this chunk on its way to another node that serves peers (so `node` should fetch it there)? */
  elsewhere(node: string, hash: Buffer): boolean;
}

/** Largest chunk FastCDC makes: the upload cap lets at least one through at once. */
const UPLOAD_BURST_BYTES = 256 * 1024;
/** How often the hub logs what it uploaded, while it uploads. */
const STATS_LOG_MS = 2000;
/** At most this many content ids per Sources call. */
export const MAX_SOURCES_CONTENTS = 4096;

/** The hub's gRPC server: library deltas, manifests and chunks. */
export class DataPlaneServer {
  private server?: Server;
  readonly stats: ChunkServiceStats = { chunksSent: 0, bytesSent: 0, missing: 0, deflected: 0, resent: 0 };
  readonly uploadLimit?: TokenBucket;
  boundPort = 0;
  private statsTimer?: NodeJS.Timeout;

  constructor(
    private readonly catalogue: Catalogue,
    private readonly options: DataPlaneOptions,
    private readonly log: Logger,
    private readonly onStale: (file: string) => void = () => {},
    /** Peer-to-peer: answers Library.Sources; without it only the hub is named. */
    private readonly swarm?: SwarmDirectory,
  ) {
    const limit = options.uploadLimitBytesPerSecond ?? 0;
    if (limit > 0) this.uploadLimit = new TokenBucket(limit, UPLOAD_BURST_BYTES);
  }

  private libraryHandlers(): LibraryHandlers {
    return {
      Changes: (call: ServerUnaryCall<ChangesRequest__Output, ChangesReply>, callback: sendUnaryData<ChangesReply>) => {
        try {
          const since = Number(call.request.sinceVersion ?? '0');
          if (!Number.isSafeInteger(since) || since < 0) {
            callback({ code: status.INVALID_ARGUMENT, details: `since_version ${call.request.sinceVersion} is not a valid version` });
            return;
          }
          const limit = Math.min(MAX_CHANGES_PAGE, call.request.limit || DEFAULT_CHANGES_PAGE);
          const current = this.catalogue.version();
          const rows = this.catalogue.changesSince(since, limit + 1);
          const more = rows.length > limit;
          const page = rows.slice(0, limit);
          const pageVersion = page.length > 0 ? page[page.length - 1].version : Math.max(since, current);
          callback(null, {
            libraryVersion: String(current),
            entries: page.map(toWireEntry),
            more,
            pageVersion: String(more ? pageVersion : Math.max(pageVersion, current)),
            fullResync: false,
          });
        } catch (err) {
          this.log.error({ err }, 'Changes failed');
          callback({ code: status.INTERNAL, details: (err as Error).message });
        }
      },
      Manifest: (call: ServerUnaryCall<ManifestRequest__Output, TrackManifest>, callback: sendUnaryData<TrackManifest>) => {
        const contentId = call.request.contentId;
        if (!contentId || contentId.length !== 32) {
          callback({ code: status.INVALID_ARGUMENT, details: 'content_id must be a 32-byte SHA-256' });
          return;
        }
        const m = this.catalogue.manifest(contentId);
        if (!m) {
          callback({ code: status.NOT_FOUND, details: `no playable file with content ${contentId.toString('hex')}` });
          return;
        }
        callback(null, { contentId, size: String(m.size), chunks: m.chunks.map((c) => ({ hash: c.hash, size: c.size })) });
      },
      Sources: (call: ServerUnaryCall<SourcesRequest__Output, SourcesReply>, callback: sendUnaryData<SourcesReply>) => {
        const ids = call.request.contentIds ?? [];
        if (ids.length > MAX_SOURCES_CONTENTS || ids.some((id) => id.length !== 32)) {
          callback({ code: status.INVALID_ARGUMENT, details: `content_ids: at most ${MAX_SOURCES_CONTENTS}, each a 32-byte SHA-256` });
          return;
        }
        try {
          callback(null, { sources: this.swarm ? this.swarm.sources(ids) : [{ hub: true, nodeUuid: '', address: '', holdings: [] }] });
        } catch (err) {
          this.log.error({ err }, 'Sources failed');
          callback({ code: status.INTERNAL, details: (err as Error).message });
        }
      },
    };
  }

  async start(): Promise<void> {
    const server = new Server({ ...channelOptions(this.options.maxMessageBytes), interceptors: this.options.interceptors ?? [] });
    const v1 = dataPlane().firefly.v1;
    server.addService(v1.Library.service, this.libraryHandlers());
    const swarm = this.swarm;
    server.addService(
      v1.Chunks.service,
      chunkService(new LibraryChunkSource(this.catalogue, this.onStale), this.stats, {
        uploadLimit: this.uploadLimit,
        transit: swarm ? (node, hashes) => swarm.transit(node, hashes) : undefined,
        elsewhere: swarm ? (node, hash) => swarm.elsewhere(node, hash) : undefined,
        onResend: (r) => this.log.debug({ node: r.node, chunk: r.hash.toString('hex').slice(0, 16), urgent: r.urgent, firstSentMsAgo: r.firstSentMsAgo }, 'chunk sent again'),
      }),
    );
    this.boundPort = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${this.options.host}:${this.options.port}`, this.options.tls ? ServerCredentials.createSsl(null, [{ cert_chain: this.options.tls.cert, private_key: this.options.tls.key }]) : ServerCredentials.createInsecure(), (err, port) =>
        err ? reject(new Error(`cannot listen for gRPC on ${this.options.host}:${this.options.port}: ${err.message} (setting: grpc.port)`)) : resolve(port),
      ),
    );
    this.server = server;
    this.log.info({ port: this.boundPort, uploadLimitBytesPerSecond: this.uploadLimit?.bytesPerSecond ?? 0 }, 'data plane (gRPC) listening');
    let logged = 0;
    this.statsTimer = setInterval(() => {
      if (this.stats.bytesSent === logged) return;
      logged = this.stats.bytesSent;
      this.log.info({ ...this.stats }, 'chunks uploaded');
    }, STATS_LOG_MS);
    this.statsTimer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.statsTimer);
    const server = this.server;
    if (!server) return;
    await shutdownServer(server, 2000);
  }
}
