import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { DEFAULT_MQTT_PORT } from '../config/schema.js';

export type { MqttClient };

/**
 * mqtt://HOST:PORT from what a user types: a URL (kept), HOST:PORT, [v6]:PORT, or HOST
 * (port 1883 added).
 */
export function brokerUrl(address: string, defaultPort = DEFAULT_MQTT_PORT): string {
  if (/^[a-z]+:\/\//i.test(address)) return address;
  if (/^\[.*\]:\d+$/.test(address) || /^[^:]+:\d+$/.test(address)) return `mqtt://${address}`;
  if (address.includes(':') && !address.startsWith('[')) return `mqtt://[${address}]:${defaultPort}`;
  return `mqtt://${address}:${defaultPort}`;
}

/** The host part of a HOST, HOST:PORT or [v6]:PORT address (the node's --hub). */
export function hostOf(address: string): string {
  const v6 = /^\[(.*)\](:\d+)?$/.exec(address);
  if (v6) return `[${v6[1]}]`;
  if (/^[^:]+:\d+$/.test(address)) return address.slice(0, address.lastIndexOf(':'));
  if (address.includes(':')) return `[${address}]`;
  return address;
}

export interface BrokerOptions {
  url: string;
  username?: string;
  password?: string;
  clientId: string;
  keepaliveSeconds?: number;
  will?: IClientOptions['will'];
  /** For mqtts:// brokers: the CA (PEM) to trust instead of the system's; rejectUnauthorized false only for the hub's own loopback connection. */
  tls?: { ca?: Buffer; rejectUnauthorized?: boolean };
}

/** The same broker address over TLS (mqtt:// becomes mqtts://, tcp:// ssl://, ws:// wss://). */
export function tlsUrl(url: string): string {
  return url.replace(/^mqtt:\/\//i, 'mqtts://').replace(/^tcp:\/\//i, 'ssl://').replace(/^ws:\/\//i, 'wss://');
}

/**
 * A client that keeps reconnecting (every second) until it is ended. Connection errors
 * are reported through `onError` with the broker's address, never thrown.
 */
export function connectBroker(options: BrokerOptions, onError: (message: string) => void): MqttClient {
  const client = connect(brokerUrl(options.url), {
    clientId: options.clientId,
    username: options.username,
    password: options.password,
    keepalive: options.keepaliveSeconds ?? 10,
    reconnectPeriod: 1000,
    connectTimeout: 5000,
    clean: true,
    will: options.will,
    protocolVersion: 4,
    ...(options.tls ? { ca: options.tls.ca, rejectUnauthorized: options.tls.rejectUnauthorized ?? true } : {}),
  });
  client.on('error', (err) => onError(`MQTT broker ${options.url}: ${err.message}`));
  // Commands are small packets that must go out at once: no Nagle wait behind a delayed ACK.
  client.on('connect', () => (client.stream as { setNoDelay?: (on: boolean) => void } | undefined)?.setNoDelay?.(true));
  return client;
}

/** Resolves on the first successful connection, or rejects after `timeoutMs` with the broker's address. */
export function whenConnected(client: MqttClient, url: string, timeoutMs = 10_000): Promise<void> {
  if (client.connected) return Promise.resolve();
  return new Promise((resolve, reject) => {
    let lastError = '';
    const onError = (err: Error) => (lastError = err.message);
    const timer = setTimeout(() => {
      client.off('connect', onConnect);
      client.off('error', onError);
      reject(new Error(`cannot reach the MQTT broker at ${url}${lastError ? `: ${lastError}` : ''} (setting mqtt.url / --mqtt)`));
    }, timeoutMs);
    const onConnect = () => {
      clearTimeout(timer);
      client.off('error', onError);
      resolve();
    };
    client.once('connect', onConnect);
    client.on('error', onError);
  });
}

/** Publishes and resolves once the broker has it (QoS 1) or it is written (QoS 0). */
export function publish(client: MqttClient, topic: string, payload: Buffer | string, options: { retain?: boolean; qos?: 0 | 1 } = {}): Promise<void> {
  return new Promise((resolve, reject) =>
    client.publish(topic, payload, { retain: options.retain ?? false, qos: options.qos ?? 1 }, (err) => (err ? reject(err) : resolve())),
  );
}

export function subscribe(client: MqttClient, topics: string[], qos: 0 | 1 = 1): Promise<void> {
  return new Promise((resolve, reject) => client.subscribe(topics, { qos }, (err) => (err ? reject(err) : resolve())));
}

export function endClient(client: MqttClient, force = false): Promise<void> {
  return new Promise((resolve) => client.end(force, {}, () => resolve()));
}
