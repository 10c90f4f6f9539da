import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';

/**
 * Every setting Firefly has, with its default. One schema validates the config file,
 * the environment and the command-line flags alike (see load.ts), and docs/configuration.md
 * describes the same fields.
 */

const port = z.number().int().min(0).max(65535);
const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);
const byteSize = z.number().int().min(0);
/** An MQTT broker: mqtt://HOST[:PORT] (also mqtts://, ws://, wss://), or HOST / HOST:PORT. */
const brokerAddress = z.string().min(1).regex(/^((mqtts?|wss?|tcp|ssl):\/\/)?[^\s/]+(\/.*)?$/, 'expected mqtt://HOST:PORT, HOST:PORT or HOST');
const topicPrefix = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/, 'letters, digits, _ and -, levels separated by /')
  .default('firefly');

export const hubConfigSchema = z
  .object({
    /** Folders the hub indexes and watches. */
    library: z.array(z.string().min(1)).min(1).default(['./music']),
    /** Where the catalogue (SQLite) and the hub's own state live. */
    dataDir: z.string().min(1).default(join(homedir(), '.firefly', 'hub')),
    grpc: z
      .object({
        host: z.string().min(1).default('0.0.0.0'),
        port: port.default(7420),
        /** Largest gRPC message accepted or sent, in bytes. */
        maxMessageBytes: z.number().int().min(1024 * 1024).max(64 * 1024 * 1024).default(4 * 1024 * 1024),
      })
      .strict()
      .prefault({}),
    http: z
      .object({
        host: z.string().min(1).default('0.0.0.0'),
        port: port.default(8081),
      })
      .strict()
      .prefault({}),
    mqtt: z
      .object({
        /** An external broker to use instead of the embedded one (Mosquitto, EMQX…). */
        url: brokerAddress.optional(),
        /** Where the embedded broker listens (ignored when url is set). */
        host: z.string().min(1).default('0.0.0.0'),
        port: port.default(1883),
        /** Credentials for the external broker; with the embedded broker, clients must present them. */
        username: z.string().min(1).optional(),
        password: z.string().optional(),
        topicPrefix,
      })
      .strict()
      .prefault({}),
    nodes: z
      .object({
        /** A node that sends no heartbeat for this long is marked offline. */
        heartbeatTimeoutSeconds: z.number().min(1).max(3600).default(3),
      })
      .strict()
      .prefault({}),
    index: z
      .object({
        /** Files larger than this are streamed rather than read into memory whole. */
        inMemoryLimitBytes: byteSize.default(256 * 1024 * 1024),
        /** Worker threads that chunk and parse files; 0 = one per core. */
        workers: z.number().int().min(0).max(64).default(0),
        /** How long a file's size must stay still before it is indexed (partial writes). */
        settleMs: z.number().int().min(0).max(60_000).default(750),
        followSymlinks: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
    logLevel: logLevel.default('info'),
  })
  .strict();

export const nodeConfigSchema = z
  .object({
    /** The hub's gRPC address, HOST or HOST:PORT. */
    hub: z.string().min(1).default('127.0.0.1'),
    /** Stable identity, chunk store and its index live here. */
    dataDir: z.string().min(1).default(join(homedir(), '.firefly', 'node')),
    name: z.string().min(1).max(64).default(hostname()),
    store: z
      .object({
        /** Size budget of the chunk store in bytes; least recently used chunks are evicted past it. */
        budgetBytes: byteSize.default(8 * 1024 * 1024 * 1024),
      })
      .strict()
      .prefault({}),
    mqtt: z
      .object({
        /** The control-plane broker; default: the hub's host, port 1883. */
        url: brokerAddress.optional(),
        username: z.string().min(1).optional(),
        password: z.string().optional(),
        topicPrefix,
        /** The broker declares the node offline (last will) after 1.5 × this without traffic. */
        keepaliveSeconds: z.int().min(1).max(600).default(2),
        heartbeatSeconds: z.number().min(0.1).max(600).default(1),
      })
      .strict()
      .prefault({}),
    sync: z
      .object({
        /** Which chunks the node keeps: every track in the library, or none until asked. */
        prefetch: z.enum(['all', 'none']).default('all'),
        /** Seconds between library polls (the control plane also triggers syncs). */
        intervalSeconds: z.number().min(1).max(86_400).default(60),
        /** Chunks asked for in one Fetch call. */
        batchChunks: z.number().int().min(1).max(1024).default(32),
      })
      .strict()
      .prefault({}),
    logLevel: logLevel.default('info'),
  })
  .strict();

export type HubConfig = z.infer<typeof hubConfigSchema>;
export type NodeConfig = z.infer<typeof nodeConfigSchema>;

export const DEFAULT_GRPC_PORT = 7420;
export const DEFAULT_MQTT_PORT = 1883;
