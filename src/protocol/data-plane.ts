import { credentials as grpcCredentials, loadPackageDefinition, type ChannelCredentials, type ChannelOptions, type ClientOptions, type Server } from '@grpc/grpc-js';
import { tokenInterceptor, type ClientAccess } from './access.js';
import { loadSync } from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';
import type { ProtoGrpcType } from '../generated/firefly.js';
import type { ChunksClient } from '../generated/firefly/v1/Chunks.js';
import type { LibraryClient } from '../generated/firefly/v1/Library.js';

export type { ChunksClient, LibraryClient };
export type { ChunksHandlers } from '../generated/firefly/v1/Chunks.js';
export type { LibraryHandlers } from '../generated/firefly/v1/Library.js';
export type { LibraryEntry } from '../generated/firefly/v1/LibraryEntry.js';
export type { ChunkData } from '../generated/firefly/v1/ChunkData.js';

/** proto/firefly.proto, found from both src/ and dist/src/. */
export const PROTO_PATH = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../../proto/firefly.proto' : '../../proto/firefly.proto', import.meta.url));

/** The same options the generated types assume (see the `gen` script in package.json). */
export const PROTO_LOADER_OPTIONS = { longs: String, enums: String, defaults: true, oneofs: true } as const;

let loaded: ProtoGrpcType | undefined;

export function dataPlane(): ProtoGrpcType {
  loaded ??= loadPackageDefinition(loadSync(PROTO_PATH, PROTO_LOADER_OPTIONS)) as unknown as ProtoGrpcType;
  return loaded;
}

export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** Receive window (per connection and per stream) for data-plane clients. */
const FLOW_CONTROL_WINDOW_BYTES = 4 * 1024 * 1024;

export function channelOptions(maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES): ChannelOptions {
  return {
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.max_send_message_length': maxMessageBytes,
    'grpc.keepalive_time_ms': 20_000,
    'grpc.keepalive_timeout_ms': 10_000,
    // HTTP/2's default receive window (64 KiB per connection) lets a sender have only one
    // small chunk on the way at a time: a downloader busy for a few milliseconds stalls
    // every stream from that source. Chunk streams need room for several chunks in flight.
    'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW_BYTES,
  };
}

/** HOST, HOST:PORT or [v6]:PORT, with the default data-plane port filled in. */
export function grpcAddress(hub: string, defaultPort: number): string {
  if (/^\[.*\]:\d+$/.test(hub) || /^[^:]+:\d+$/.test(hub)) return hub;
  if (hub.includes(':') && !hub.startsWith('[')) return `[${hub}]:${defaultPort}`;
  return `${hub}:${defaultPort}`;
}

/** Channel credentials and the token interceptor for a client (see access.ts). */
function clientSetup(maxMessageBytes: number | undefined, access: ClientAccess | undefined): [ChannelCredentials, ClientOptions] {
  const creds = access?.tls ? grpcCredentials.createSsl(access.tls.ca ?? null) : grpcCredentials.createInsecure();
  const options: ClientOptions = { ...channelOptions(maxMessageBytes) };
  if (access?.token) options.interceptors = [tokenInterceptor(access.token)];
  return [creds, options];
}

export function libraryClient(address: string, maxMessageBytes?: number, access?: ClientAccess): LibraryClient {
  const { Library } = dataPlane().firefly.v1;
  return new Library(address, ...clientSetup(maxMessageBytes, access));
}

export function chunksClient(address: string, maxMessageBytes?: number, access?: ClientAccess): ChunksClient {
  const { Chunks } = dataPlane().firefly.v1;
  return new Chunks(address, ...clientSetup(maxMessageBytes, access));
}

/** Stops a gRPC server: lets calls under way finish, then cuts what is left after `graceMs`. */
export function shutdownServer(server: Server, graceMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
