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
        /** Cap on the chunk bytes the hub uploads per second, all nodes together (a slow home uplink); 0: unlimited. */
        uploadLimitBytesPerSecond: z.number().int().min(0).default(0),
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
    clock: z
      .object({
        /** UDP port of the clock exchange (on grpc.host); 0: any free port. */
        port: port.default(7421),
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
    /** The hub's name: what nodes see when they look for a hub on the LAN (mDNS instance name). */
    name: z.string().min(1).max(63).default(hostname()),
    discovery: z
      .object({
        /** Advertise the hub over mDNS (_firefly._tcp) so nodes started without --hub find it. */
        advertise: z.boolean().default(true),
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
    /** The hub's gRPC address, HOST or HOST:PORT; unset: find the hub on the LAN over mDNS. */
    hub: z.string().min(1).optional(),
    discovery: z
      .object({
        /** Without `hub`: use only the hub advertising this name (default: the first found). */
        hubName: z.string().min(1).max(63).optional(),
        /** Without `hub`: how long to look for one before giving up. */
        timeoutSeconds: z.number().min(0.5).max(600).default(10),
      })
      .strict()
      .prefault({}),
    /** Stable identity, chunk store and its index live here. */
    dataDir: z.string().min(1).default(join(homedir(), '.firefly', 'node')),
    name: z.string().min(1).max(64).default(hostname()),
    store: z
      .object({
        /** Size budget of the chunk store in bytes; least recently used chunks are evicted past it. */
        budgetBytes: byteSize.default(8 * 1024 * 1024 * 1024),
        /**
         * fsync every chunk before it is renamed into place (on by default: what is in the
         * index survives a power cut). Turning it off trades that for speed where fsync is
         * slow (several ms a chunk on SD cards and virtual disks): reads still verify every
         * chunk, so one a power cut damaged is dropped and fetched again.
         */
        fsync: z.boolean().default(true),
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
    clock: z
      .object({
        /** The hub's clock-exchange UDP port (the host is the hub's). */
        port: port.min(1).default(7421),
      })
      .strict()
      .prefault({}),
    /** Simulation knobs, for tests and benchmarks only: one machine stands in for boxes whose clocks disagree. */
    sim: z
      .object({
        /** Seconds added to this node's clock. */
        clockOffsetSeconds: z.number().min(-1e6).max(1e6).default(0),
        /** Parts per million this node's clock runs fast (negative: slow). */
        clockSkewPpm: z.number().min(-1000).max(1000).default(0),
        /** Parts per million the measurement output's virtual crystal runs fast (negative: slow). */
        outputRateErrorPpm: z.number().min(-1000).max(1000).default(0),
        /** Flip one byte of every chunk this node serves to peers (tests of the swarm's defences). */
        corruptServing: z.boolean().optional(),
        /** Hold back a track being streamed (fetched while it plays) for this long once, just past its beginning: a link that stalls (ms). */
        streamStallMs: z.number().int().min(0).max(600_000).optional(),
      })
      .strict()
      .prefault({}),
    /** Playback: the start barrier's pre-roll and the measurement output (output.kind measure). */
    playback: z
      .object({
        /** Audio decoded before the node tells the hub it is ready (ms). */
        prerollMs: z.number().min(0).max(5000).default(200),
        /** File where the measurement output records when frames play (JSON lines); tests and benchmarks. */
        measureFile: z.string().min(1).optional(),
      })
      .strict()
      .prefault({}),
    /** The node's own Chunks service: peers fetch what this node holds. */
    serve: z
      .object({
        /** Listen address of the chunk server. */
        host: z.string().min(1).default('0.0.0.0'),
        /** Its port; 0: any free port. */
        port: port.default(7422),
        /** The host peers reach this node at; default: the local address of the node's connection to the broker. */
        advertiseHost: z.string().min(1).optional(),
      })
      .strict()
      .prefault({}),
    sync: z
      .object({
        /**
         * Which chunks the node keeps: every track in the library (all), the tracks its
         * group is about to play (queue: the current and next track the hub names), or
         * none until asked.
         */
        prefetch: z.enum(['all', 'queue', 'none']).default('all'),
        /** Fetch from peers too (every node that holds a chunk), not only from the hub. */
        peers: z.boolean().default(true),
        /** Seconds between library polls (the control plane also triggers syncs). */
        intervalSeconds: z.number().min(1).max(86_400).default(60),
        /** Chunks asked for in one Fetch call (each source gets a few calls at once; small calls let work move between sources). */
        batchChunks: z.number().int().min(1).max(1024).default(2),
      })
      .strict()
      .prefault({}),
    output: z
      .object({
        /**
         * Where audio goes. auto: PulseAudio/PipeWire if a server answers, else ALSA if a
         * card exists, else nothing (null, with a warning). measure: the measurement output
         * (tests and benchmarks).
         */
        kind: z.enum(['auto', 'pulse', 'alsa', 'null', 'measure']).default('auto'),
        /** Sink (PulseAudio) or device (ALSA, e.g. hw:0,0); default: the system's default. */
        device: z.string().min(1).optional(),
        /** Audio buffered in the sound server or card, in ms: lower reacts faster, higher survives a busy CPU. */
        bufferMs: z.number().int().min(10).max(2000).default(100),
      })
      .strict()
      .prefault({}),
    logLevel: logLevel.default('info'),
  })
  .strict();

export type HubConfig = z.infer<typeof hubConfigSchema>;
export type NodeConfig = z.infer<typeof nodeConfigSchema>;
/** A node's settings once the hub is known (given, or found over mDNS): what FireflyNode runs with. */
export type ResolvedNodeConfig = NodeConfig & { hub: string };

export const DEFAULT_GRPC_PORT = 7420;
export const DEFAULT_MQTT_PORT = 1883;
