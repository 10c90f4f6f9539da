import { isIPv6 } from 'node:net';
import type { NodeConfig, ResolvedNodeConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import { discoverHub, type DiscoveredHub } from './browse.js';

/** HOST:PORT for an address (IPv6 in brackets). */
export function hostPort(address: string, port: number): string {
  return isIPv6(address) ? `[${address}]:${port}` : `${address}:${port}`;
}

/**
 * The node's settings with the hub filled in from an mDNS answer: the hub's gRPC address,
 * and (unless mqtt.url was set) its embedded broker. Pure, for tests.
 */
export function applyDiscoveredHub(config: NodeConfig, hub: DiscoveredHub): ResolvedNodeConfig {
  const mqttUrl = config.mqtt.url ?? (hub.mqtt === 'external' ? undefined : `mqtt://${hostPort(hub.address, hub.mqtt)}`);
  return { ...config, hub: hostPort(hub.address, hub.grpcPort), mqtt: { ...config.mqtt, url: mqttUrl } };
}

/**
 * Makes the node's settings concrete before anything reads `hub`: a configured hub
 * (--hub, FIREFLY_HUB, config `hub`) is used as is; otherwise the node looks for one on
 * the LAN over mDNS for up to discovery.timeoutSeconds (the first to answer, or the one
 * named by discovery.hubName) and rejects with HubNotFoundError if none answers.
 */
export async function resolveHub(config: NodeConfig, log: Logger, discover = discoverHub): Promise<ResolvedNodeConfig> {
  if (config.hub !== undefined) return { ...config, hub: config.hub };
  const { hubName, timeoutSeconds } = config.discovery;
  log.info({ name: hubName, timeoutSeconds }, 'no hub address given; looking for a hub on the LAN (mDNS)');
  const started = Date.now();
  const hub = await discover({ timeoutMs: timeoutSeconds * 1000, name: hubName }, log);
  const resolved = applyDiscoveredHub(config, hub);
  log.info(
    { hub: hub.name, address: resolved.hub, mqtt: resolved.mqtt.url ?? hub.mqtt, software: hub.software, addresses: hub.addresses, ms: Date.now() - started },
    'found the hub over mDNS',
  );
  if (hub.mqtt === 'external' && !config.mqtt.url) {
    log.warn({ hub: hub.name }, "the hub uses an external MQTT broker it does not advertise; trying the hub's host, port 1883 (set mqtt.url / --mqtt otherwise)");
  }
  if (hub.topicPrefix !== undefined && hub.topicPrefix !== config.mqtt.topicPrefix) {
    log.warn({ hub: hub.topicPrefix, node: config.mqtt.topicPrefix }, 'the hub uses another MQTT topic prefix than this node (setting mqtt.topicPrefix / --topic-prefix)');
  }
  return resolved;
}
