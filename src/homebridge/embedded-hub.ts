import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Hub } from '../../hub/hub.js';
import { hubConfigSchema, type HubConfig } from '../config/schema.js';
import type { PluginConfig } from './config.js';

/**
 * The hub run inside the Homebridge process (setting `mode: embedded`). Loaded with a
 * dynamic import only in that mode, so external mode never loads SQLite or the hub. Its
 * data folder is inside Homebridge's storage path; its log goes to the Homebridge log.
 * The plugin then talks to it exactly as to an external hub: over MQTT, to the broker
 * the hub embeds (on 127.0.0.1 when it listens on every address).
 */

export interface HomebridgeLog {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** Pino lines (JSON) → Homebridge log lines: the message, then the fields worth reading. */
function logBridge(log: HomebridgeLog): Writable {
  const skip = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg', 'module']);
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line.trim()) continue;
        try {
          const entry = JSON.parse(line) as Record<string, unknown>;
          const extra = Object.entries(entry)
            .filter(([k]) => !skip.has(k))
            .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
            .join(' ');
          const text = `hub${entry.module ? ` ${String(entry.module)}` : ''}: ${String(entry.msg ?? '')}${extra ? ` (${extra.slice(0, 500)})` : ''}`;
          const level = Number(entry.level);
          if (level >= 50) log.error(text);
          else if (level >= 40) log.warn(text);
          else if (level >= 30) log.info(text);
          else log.debug(text);
        } catch {
          log.info(`hub: ${line}`);
        }
      }
      done();
    },
  });
}

/** The hub's settings from the plugin's: data in `<storage>/firefly/hub`, the plugin's broker credentials and topic prefix. */
export function embeddedHubConfig(config: PluginConfig, storagePath: string): HubConfig {
  const e = config.embedded!;
  const result = hubConfigSchema.safeParse({
    library: e.library,
    dataDir: join(storagePath, 'firefly', 'hub'),
    grpc: { host: e.grpcHost, port: e.grpcPort },
    http: { host: e.httpHost, port: e.httpPort },
    clock: { port: e.clockPort },
    mqtt: { host: e.mqttHost, port: e.mqttPort, username: config.mqttUsername, password: config.mqttPassword, topicPrefix: config.topicPrefix },
    ...(e.hubName ? { name: e.hubName } : {}),
    discovery: { advertise: e.advertise },
    logLevel: e.logLevel,
  });
  if (!result.success) throw new Error(`embedded hub: ${result.error.issues.map((i) => `setting embedded.${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return result.data;
}

export class EmbeddedHub {
  private hub?: Hub;

  constructor(
    private readonly config: HubConfig,
    private readonly log: HomebridgeLog,
  ) {}

  get dataDir(): string {
    return this.config.dataDir;
  }

  /** Starts every module of the hub; on failure stops what had started and rethrows. Resolves to the broker's URL. */
  async start(): Promise<string> {
    const logger = pino({ level: this.config.logLevel, base: { pid: process.pid } }, logBridge(this.log));
    const hub = new Hub(this.config, logger);
    this.hub = hub;
    try {
      await hub.start();
    } catch (err) {
      this.hub = undefined;
      await hub.stop();
      throw err;
    }
    return hub.broker!.url;
  }

  async stop(): Promise<void> {
    const hub = this.hub;
    this.hub = undefined;
    await hub?.stop();
  }
}
