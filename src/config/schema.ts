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

/** A speaker's address: HOST, HOST:PORT or [v6]:PORT; a string may list several, comma-separated (flags, environment). */
const deviceAddress = z.string().regex(/^([^\s:/\[\],]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?$/, 'expected HOST or HOST:PORT');
const deviceAddressList = z
  .preprocess((v) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter((s) => s.length > 0) : v), z.array(deviceAddress).max(64))
  .default([]);

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
    /** Chromecast and Sonos speakers (hub/devices): how they are found, reached and kept in sync. */
    devices: z
      .object({
        /** Look for speakers on the LAN: mDNS (_googlecast._tcp) for Cast, SSDP for Sonos. */
        discovery: z.boolean().default(true),
        /** Chromecast addresses to use besides (or instead of) discovery: HOST or HOST:PORT (port 8009). */
        cast: deviceAddressList,
        /** Sonos addresses to use besides (or instead of) discovery: HOST or HOST:PORT (port 1400). */
        sonos: deviceAddressList,
        /** The host put in stream URLs handed to devices; default: the hub's first non-loopback IPv4 address. */
        advertiseHost: z.string().min(1).optional(),
        /** A device whose measured position is off the group's by more than this is corrected by a seek (ms). */
        seekThresholdMs: z.number().min(5).max(5000).default(60),
        /** Every request to a device gives up after this long (ms); the device is then retried or marked unavailable. */
        requestTimeoutMs: z.int().min(100).max(60_000).default(5000),
        /** How often a playing device's position is read (ms). */
        pollMs: z.int().min(20).max(5000).default(200),
      })
      .strict()
      .prefault({}),
    /** The web page's uploads (drag and drop into the library). */
    web: z
      .object({
        /** Largest file a user may upload, in bytes. */
        uploadMaxBytes: byteSize.min(1).default(1024 * 1024 * 1024),
        /** Folder inside the first library folder that uploads land in ('' for the library folder itself). */
        uploadFolder: z
          .string()
          .max(200)
          .regex(/^(?!.*(^|\/)\.\.?(\/|$))[^\u0000]*$/, 'a relative folder without . or .. parts')
          .refine((s) => !s.startsWith('/'), 'must be relative to the library folder')
          .default('Uploads'),
      })
      .strict()
      .prefault({}),
    /** Credentials, TLS and rate limits (docs/security.md). */
    security: z
      .object({
        /**
         * on: every MQTT, gRPC and HTTP client must present credentials; off: none needs
         * any; auto: on as soon as any listener (mqtt.host, grpc.host, http.host) is
         * reachable beyond loopback.
         */
        auth: z.enum(['auto', 'on', 'off']).default('auto'),
        /** Serve MQTT (embedded broker), gRPC and HTTP over TLS with this certificate and key (PEM files). */
        tls: z.object({ certFile: z.string().min(1), keyFile: z.string().min(1) }).strict().optional(),
        /** Publishes per second one MQTT client may make (bursts of twice that) before it is disconnected; 0: no limit. Applies with auth on. */
        mqttPublishesPerSecond: z.number().min(0).max(1_000_000).default(200),
        /** gRPC calls per second one address may start (bursts of twice that); 0: no limit. Applies with auth on. */
        grpcCallsPerSecond: z.number().min(0).max(1_000_000).default(500),
        /** HTTP requests per second one address may make (bursts of twice that); 0: no limit. Applies with auth on. */
        httpRequestsPerSecond: z.number().min(0).max(1_000_000).default(50),
      })
      .strict()
      .prefault({}),
    homeAssistant: z
      .object({
        /** Announce groups and nodes to Home Assistant (MQTT discovery) and serve the plain …/set command topics. */
        enabled: z.boolean().default(true),
        /** Home Assistant's MQTT discovery prefix (its MQTT integration setting of the same name). */
        discoveryPrefix: z
          .string()
          .min(1)
          .max(64)
          .regex(/^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/, 'letters, digits, _ and -, levels separated by /')
          .default('homeassistant'),
        /** Seconds between position updates of a playing group's media topic; 0: only on changes. */
        positionIntervalSeconds: z.number().min(0).max(3600).default(5),
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
         * fdatasync each batch of chunks before it is indexed (on by default: what is in the
         * index survives a power cut). Turning it off trades that for speed where syncing is
         * slow (several ms on SD cards and virtual disks): reads still verify every chunk, so
         * one a power cut damaged is dropped and fetched again.
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
        /**
         * How many tracks' first 500 ms the node keeps decoded, in its data folder (about
         * 94 KiB each at 48 kHz stereo: 256 is 23.4 MiB). A play of one from its start
         * needs no start barrier. 0: none.
         */
        startCacheTracks: z.number().int().min(0).max(1024).default(256),
        /** Decode the starts of the tracks the node holds while it is idle (up to startCacheTracks), so their first play starts at once too. */
        prepareStarts: z.boolean().default(true),
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
    /** Credentials and TLS towards the hub (docs/security.md). */
    security: z
      .object({
        /** This node's credential, `node:<uuid>:<secret>`, from `firefly ctl credentials add-node` on the hub machine. */
        token: z.string().min(1).max(512).optional(),
        /** Reach the hub over TLS (mqtts, gRPC with TLS); on when caFile is set. */
        tls: z.boolean().default(false),
        /** The certificate authority (PEM) that signed the hub's certificate; default: the system's. */
        caFile: z.string().min(1).optional(),
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
