import type { Command } from 'commander';
import { hubConfigSchema, nodeConfigSchema, type HubConfig, type NodeConfig } from '../config/schema.js';
import { envOverrides, parseValue, readConfigFile, resolveConfig, type EnvBinding, type Override, type ValueKind } from '../config/load.js';

/** A command-line flag that sets a setting; the same table documents the flag. */
export interface FlagBinding {
  flag: string; // e.g. "--grpc-port <port>"
  path: string[];
  kind: ValueKind;
  help: string;
}

export const HUB_ENV: EnvBinding[] = [
  { env: 'FIREFLY_LIBRARY', path: ['library'], kind: 'list' },
  { env: 'FIREFLY_DATA_DIR', path: ['dataDir'], kind: 'string' },
  { env: 'FIREFLY_GRPC_PORT', path: ['grpc', 'port'], kind: 'number' },
  { env: 'FIREFLY_HTTP_PORT', path: ['http', 'port'], kind: 'number' },
  { env: 'FIREFLY_CLOCK_PORT', path: ['clock', 'port'], kind: 'number' },
  { env: 'FIREFLY_MQTT_URL', path: ['mqtt', 'url'], kind: 'string' },
  { env: 'FIREFLY_MQTT_PORT', path: ['mqtt', 'port'], kind: 'number' },
  { env: 'FIREFLY_MQTT_USERNAME', path: ['mqtt', 'username'], kind: 'string' },
  { env: 'FIREFLY_MQTT_PASSWORD', path: ['mqtt', 'password'], kind: 'string' },
  { env: 'FIREFLY_MQTT_TOPIC_PREFIX', path: ['mqtt', 'topicPrefix'], kind: 'string' },
  { env: 'FIREFLY_HUB_NAME', path: ['name'], kind: 'string' },
  { env: 'FIREFLY_ADVERTISE', path: ['discovery', 'advertise'], kind: 'boolean' },
  { env: 'FIREFLY_DEVICE_DISCOVERY', path: ['devices', 'discovery'], kind: 'boolean' },
  { env: 'FIREFLY_CAST', path: ['devices', 'cast'], kind: 'string' },
  { env: 'FIREFLY_SONOS', path: ['devices', 'sonos'], kind: 'string' },
  { env: 'FIREFLY_DEVICE_ADVERTISE_HOST', path: ['devices', 'advertiseHost'], kind: 'string' },
  { env: 'FIREFLY_HOME_ASSISTANT', path: ['homeAssistant', 'enabled'], kind: 'boolean' },
  { env: 'FIREFLY_HA_DISCOVERY_PREFIX', path: ['homeAssistant', 'discoveryPrefix'], kind: 'string' },
  { env: 'FIREFLY_LOG_LEVEL', path: ['logLevel'], kind: 'string' },
  { env: 'FIREFLY_AUTH', path: ['security', 'auth'], kind: 'string' },
  { env: 'FIREFLY_TLS_CERT', path: ['security', 'tls', 'certFile'], kind: 'string' },
  { env: 'FIREFLY_TLS_KEY', path: ['security', 'tls', 'keyFile'], kind: 'string' },
];

export const HUB_FLAGS: FlagBinding[] = [
  { flag: '--library <folders>', path: ['library'], kind: 'list', help: "music folders, ':'-separated (default ./music)" },
  { flag: '--data-dir <folder>', path: ['dataDir'], kind: 'string', help: 'catalogue and state (default ~/.firefly/hub)' },
  { flag: '--grpc-host <host>', path: ['grpc', 'host'], kind: 'string', help: 'data-plane listen address (default 0.0.0.0)' },
  { flag: '--grpc-port <port>', path: ['grpc', 'port'], kind: 'number', help: 'data-plane port (default 7420)' },
  { flag: '--http-host <host>', path: ['http', 'host'], kind: 'string', help: 'web page and REST listen address (default 0.0.0.0)' },
  { flag: '--http-port <port>', path: ['http', 'port'], kind: 'number', help: 'web page and REST port (default 8081)' },
  { flag: '--clock-port <port>', path: ['clock', 'port'], kind: 'number', help: 'clock-exchange UDP port, on the grpc host (default 7421)' },
  { flag: '--mqtt <url>', path: ['mqtt', 'url'], kind: 'string', help: 'use this external MQTT broker (mqtt://HOST:PORT) instead of the embedded one' },
  { flag: '--mqtt-host <host>', path: ['mqtt', 'host'], kind: 'string', help: 'embedded broker listen address (default 0.0.0.0)' },
  { flag: '--mqtt-port <port>', path: ['mqtt', 'port'], kind: 'number', help: 'embedded broker port (default 1883)' },
  { flag: '--mqtt-username <name>', path: ['mqtt', 'username'], kind: 'string', help: 'MQTT user name (external broker, or required by the embedded one)' },
  { flag: '--mqtt-password <password>', path: ['mqtt', 'password'], kind: 'string', help: 'MQTT password (prefer FIREFLY_MQTT_PASSWORD)' },
  { flag: '--topic-prefix <prefix>', path: ['mqtt', 'topicPrefix'], kind: 'string', help: 'root of every MQTT topic (default firefly)' },
  { flag: '--name <name>', path: ['name'], kind: 'string', help: 'name nodes see when they look for a hub (default: host name)' },
  { flag: '--no-advertise', path: ['discovery', 'advertise'], kind: 'boolean', help: 'do not advertise the hub over mDNS (nodes then need --hub)' },
  { flag: '--no-home-assistant', path: ['homeAssistant', 'enabled'], kind: 'boolean', help: 'no Home Assistant discovery and no plain …/set command topics' },
  { flag: '--ha-discovery-prefix <prefix>', path: ['homeAssistant', 'discoveryPrefix'], kind: 'string', help: "Home Assistant's MQTT discovery prefix (default homeassistant)" },
  { flag: '--upload-limit <rate>', path: ['grpc', 'uploadLimitBytesPerSecond'], kind: 'bitrate', help: 'cap the chunk upload to nodes, in bits per second: 100M = 100 Mbit/s (default 0 = unlimited)' },
  { flag: '--heartbeat-timeout <seconds>', path: ['nodes', 'heartbeatTimeoutSeconds'], kind: 'number', help: 'mark a silent node offline after this long (default 3)' },
  { flag: '--workers <n>', path: ['index', 'workers'], kind: 'number', help: 'indexing threads, 0 = one per core' },
  { flag: '--settle-ms <ms>', path: ['index', 'settleMs'], kind: 'number', help: 'how long a file must stand still before it is indexed' },
  { flag: '--no-device-discovery', path: ['devices', 'discovery'], kind: 'boolean', help: 'do not look for Chromecast and Sonos speakers on the LAN (use --cast / --sonos addresses)' },
  { flag: '--cast <addresses>', path: ['devices', 'cast'], kind: 'string', help: 'Chromecast addresses, HOST[:PORT], comma-separated' },
  { flag: '--sonos <addresses>', path: ['devices', 'sonos'], kind: 'string', help: 'Sonos addresses, HOST[:PORT], comma-separated' },
  { flag: '--device-advertise-host <host>', path: ['devices', 'advertiseHost'], kind: 'string', help: 'host put in stream URLs for speakers (default: first non-loopback IPv4)' },
  { flag: '--device-seek-threshold <ms>', path: ['devices', 'seekThresholdMs'], kind: 'number', help: 'correct a speaker by seeking when it is off by more than this (default 60)' },
  { flag: '--log-level <level>', path: ['logLevel'], kind: 'string', help: 'fatal, error, warn, info, debug, trace or silent' },
  { flag: '--upload-max <bytes>', path: ['web', 'uploadMaxBytes'], kind: 'bytes', help: 'largest file the web page accepts for upload (default 1G)' },
  { flag: '--auth <mode>', path: ['security', 'auth'], kind: 'string', help: 'credentials: auto (default: on when any listener is beyond loopback), on or off' },
  { flag: '--tls-cert <file>', path: ['security', 'tls', 'certFile'], kind: 'string', help: 'serve MQTT, gRPC and HTTP over TLS with this certificate (PEM; needs --tls-key)' },
  { flag: '--tls-key <file>', path: ['security', 'tls', 'keyFile'], kind: 'string', help: "the certificate's private key (PEM)" },
  { flag: '--mqtt-rate <n>', path: ['security', 'mqttPublishesPerSecond'], kind: 'number', help: 'MQTT publishes per second one client may make, with auth on (default 200; 0 = no limit)' },
];

export const NODE_ENV: EnvBinding[] = [
  { env: 'FIREFLY_HUB', path: ['hub'], kind: 'string' },
  { env: 'FIREFLY_HUB_NAME', path: ['discovery', 'hubName'], kind: 'string' },
  { env: 'FIREFLY_DATA_DIR', path: ['dataDir'], kind: 'string' },
  { env: 'FIREFLY_NODE_NAME', path: ['name'], kind: 'string' },
  { env: 'FIREFLY_STORE_BUDGET', path: ['store', 'budgetBytes'], kind: 'bytes' },
  { env: 'FIREFLY_CLOCK_PORT', path: ['clock', 'port'], kind: 'number' },
  { env: 'FIREFLY_MQTT_URL', path: ['mqtt', 'url'], kind: 'string' },
  { env: 'FIREFLY_MQTT_USERNAME', path: ['mqtt', 'username'], kind: 'string' },
  { env: 'FIREFLY_MQTT_PASSWORD', path: ['mqtt', 'password'], kind: 'string' },
  { env: 'FIREFLY_MQTT_TOPIC_PREFIX', path: ['mqtt', 'topicPrefix'], kind: 'string' },
  { env: 'FIREFLY_OUTPUT', path: ['output', 'kind'], kind: 'string' },
  { env: 'FIREFLY_OUTPUT_DEVICE', path: ['output', 'device'], kind: 'string' },
  { env: 'FIREFLY_LOG_LEVEL', path: ['logLevel'], kind: 'string' },
  { env: 'FIREFLY_TOKEN', path: ['security', 'token'], kind: 'string' },
  { env: 'FIREFLY_TLS', path: ['security', 'tls'], kind: 'boolean' },
  { env: 'FIREFLY_CA_FILE', path: ['security', 'caFile'], kind: 'string' },
];

export const NODE_FLAGS: FlagBinding[] = [
  { flag: '--hub <address>', path: ['hub'], kind: 'string', help: 'hub address, HOST or HOST:PORT (port 7420 when omitted; default: find the hub on the LAN over mDNS)' },
  { flag: '--hub-name <name>', path: ['discovery', 'hubName'], kind: 'string', help: 'without --hub: use the hub advertising this name (default: the first found)' },
  { flag: '--discovery-timeout <seconds>', path: ['discovery', 'timeoutSeconds'], kind: 'number', help: 'without --hub: how long to look for a hub (default 10)' },
  { flag: '--data-dir <folder>', path: ['dataDir'], kind: 'string', help: 'identity, chunk store and index (default ~/.firefly/node)' },
  { flag: '--name <name>', path: ['name'], kind: 'string', help: 'name shown for this node (default: host name)' },
  { flag: '--store-budget <size>', path: ['store', 'budgetBytes'], kind: 'bytes', help: 'chunk store size budget, e.g. 2G (default 8G)' },
  { flag: '--prefetch <policy>', path: ['sync', 'prefetch'], kind: 'string', help: 'all (keep the whole library), queue (what the group is about to play) or none' },
  { flag: '--no-peers', path: ['sync', 'peers'], kind: 'boolean', help: 'fetch chunks from the hub only, never from other nodes' },
  { flag: '--serve-host <host>', path: ['serve', 'host'], kind: 'string', help: 'chunk server listen address (default 0.0.0.0)' },
  { flag: '--serve-port <port>', path: ['serve', 'port'], kind: 'number', help: 'chunk server port for peers (default 7422; 0 = any free port)' },
  { flag: '--advertise-host <host>', path: ['serve', 'advertiseHost'], kind: 'string', help: 'host peers reach this node at (default: the address it reaches the broker from)' },
  { flag: '--mqtt <url>', path: ['mqtt', 'url'], kind: 'string', help: 'control-plane broker, mqtt://HOST:PORT or HOST[:PORT] (default: the hub host, port 1883)' },
  { flag: '--mqtt-username <name>', path: ['mqtt', 'username'], kind: 'string', help: 'MQTT user name' },
  { flag: '--mqtt-password <password>', path: ['mqtt', 'password'], kind: 'string', help: 'MQTT password (prefer FIREFLY_MQTT_PASSWORD)' },
  { flag: '--topic-prefix <prefix>', path: ['mqtt', 'topicPrefix'], kind: 'string', help: 'root of every MQTT topic (default firefly)' },
  { flag: '--keepalive <seconds>', path: ['mqtt', 'keepaliveSeconds'], kind: 'number', help: 'MQTT keepalive; offline after 1.5x this (default 2)' },
  { flag: '--heartbeat <seconds>', path: ['mqtt', 'heartbeatSeconds'], kind: 'number', help: 'seconds between heartbeats (default 1)' },
  { flag: '--sync-interval <seconds>', path: ['sync', 'intervalSeconds'], kind: 'number', help: 'seconds between library polls (default 60)' },
  { flag: '--output <kind>', path: ['output', 'kind'], kind: 'string', help: 'auto (default), pulse, alsa, null or measure' },
  { flag: '--output-device <name>', path: ['output', 'device'], kind: 'string', help: 'PulseAudio sink or ALSA device (default: the system default)' },
  { flag: '--output-buffer <ms>', path: ['output', 'bufferMs'], kind: 'number', help: 'audio buffered in the sound server or card, ms (default 100)' },
  { flag: '--clock-port <port>', path: ['clock', 'port'], kind: 'number', help: "the hub's clock-exchange UDP port (default 7421)" },
  { flag: '--sim-clock-offset <seconds>', path: ['sim', 'clockOffsetSeconds'], kind: 'number', help: 'tests and benchmarks only: add this many seconds to the node clock' },
  { flag: '--sim-clock-skew <ppm>', path: ['sim', 'clockSkewPpm'], kind: 'number', help: 'tests and benchmarks only: run the node clock this many ppm fast (negative: slow)' },
  { flag: '--sim-corrupt-serving', path: ['sim', 'corruptServing'], kind: 'boolean', help: 'tests only: damage every chunk served to peers' },
  { flag: '--sim-stream-stall <ms>', path: ['sim', 'streamStallMs'], kind: 'number', help: 'tests only: hold back a track being streamed for this long once, past its beginning (a stalled link)' },
  { flag: '--sim-output-rate-error <ppm>', path: ['sim', 'outputRateErrorPpm'], kind: 'number', help: 'tests and benchmarks only: run the measurement output this many ppm fast (negative: slow)' },
  { flag: '--start-cache-tracks <n>', path: ['playback', 'startCacheTracks'], kind: 'number', help: "tracks whose start the node keeps decoded on disk, so a play from the start needs no barrier (default 256, ~94 KiB each; 0 = none)" },
  { flag: '--no-prepare-starts', path: ['playback', 'prepareStarts'], kind: 'boolean', help: 'do not decode the starts of held tracks while idle (only those played or coming up in the queue are cached)' },
  { flag: '--measure-file <file>', path: ['playback', 'measureFile'], kind: 'string', help: 'measurement output: record when frames play in this file (tests and benchmarks)' },
  { flag: '--log-level <level>', path: ['logLevel'], kind: 'string', help: 'fatal, error, warn, info, debug, trace or silent' },
  { flag: '--token <token>', path: ['security', 'token'], kind: 'string', help: "this node's credential from `firefly ctl credentials add-node` (prefer FIREFLY_TOKEN)" },
  { flag: '--tls', path: ['security', 'tls'], kind: 'boolean', help: 'reach the hub over TLS (mqtts and gRPC with TLS)' },
  { flag: '--ca-file <file>', path: ['security', 'caFile'], kind: 'string', help: "the CA certificate (PEM) that signed the hub's certificate; implies --tls" },
];

export function addFlags(cmd: Command, flags: readonly FlagBinding[]): Command {
  cmd.option('-c, --config <file>', 'JSON config file (default: $FIREFLY_CONFIG)');
  for (const f of flags) cmd.option(f.flag, f.help);
  return cmd;
}

function camel(flag: string): string {
  const name = flag.split(/\s+/)[0].replace(/^--/, '');
  return name.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
}

function flagOverrides(opts: Record<string, unknown>, flags: readonly FlagBinding[]): Override[] {
  const out: Override[] = [];
  for (const f of flags) {
    // A negated switch (--no-advertise): commander sets the option to true by default and
    // false when given; only "given" overrides the file and environment.
    if (f.flag.startsWith('--no-')) {
      if (opts[camel(`--${f.flag.slice(5)}`)] === false) out.push({ path: f.path, value: false, source: f.flag });
      continue;
    }
    const v = opts[camel(f.flag)];
    // A plain switch (--sim-corrupt-serving): commander sets it to true when given.
    if (v === true && f.kind === 'boolean') {
      out.push({ path: f.path, value: true, source: f.flag.split(/\s+/)[0] });
      continue;
    }
    if (typeof v !== 'string') continue;
    const source = f.flag.split(/\s+/)[0];
    out.push({ path: f.path, value: parseValue(v, f.kind, source), source });
  }
  return out;
}

function build<T>(schema: typeof hubConfigSchema | typeof nodeConfigSchema, opts: Record<string, unknown>, env: EnvBinding[], flags: FlagBinding[], section: 'hub' | 'node'): T {
  const fileName = (opts.config as string | undefined) ?? process.env.FIREFLY_CONFIG;
  let file: Record<string, unknown> | undefined;
  if (fileName) {
    const whole = readConfigFile(fileName);
    // One file may configure both: { "hub": {...}, "node": {...} }, or be just one section.
    file = (whole[section] as Record<string, unknown> | undefined) ?? whole;
  }
  return resolveConfig(schema, { file, fileName, overrides: [...envOverrides(process.env, env), ...flagOverrides(opts, flags)] }) as T;
}

export function hubConfigFrom(opts: Record<string, unknown>): HubConfig {
  return build<HubConfig>(hubConfigSchema, opts, HUB_ENV, HUB_FLAGS, 'hub');
}

export function nodeConfigFrom(opts: Record<string, unknown>): NodeConfig {
  return build<NodeConfig>(nodeConfigSchema, opts, NODE_ENV, NODE_FLAGS, 'node');
}
