import { Topics } from '../../src/protocol/topics.js';
import type { Principal } from '../security/credentials.js';

/** What each kind of client may do on the control plane (see docs/security.md). */
const NODE_PUBLISHES = new Set(['availability', 'heartbeat', 'join', 'player', 'holdings']);
/** Per-node topics only the hub and that node may read. */
const PRIVATE_NODE_TOPICS = new Set(['welcome', 'command']);

function hasWildcard(filter: string): boolean {
  return /[+#]/.test(filter);
}

/**
 * The embedded broker's access rules, as plain functions of the client's principal and
 * the topic, so they are tested directly:
 * - the hub (and a legacy mqtt.username) may do anything;
 * - a node publishes only its own `<prefix>/node/<uuid>/{availability,heartbeat,join,player,holdings}`
 *   and reads `<prefix>/hub/…` and its own welcome and command topics;
 * - a controller (ctl, Homebridge, Home Assistant, the web backend) publishes commands
 *   (`<prefix>/cmd/…`) and reads anything except other clients' private node topics.
 */
export class BrokerPermissions {
  readonly topics: Topics;

  constructor(prefix: string) {
    this.topics = new Topics(prefix);
  }

  /** Why this client may not publish on this topic, or undefined when it may. */
  publish(who: Principal, topic: string): string | undefined {
    if (who.kind === 'hub') return undefined;
    if (hasWildcard(topic)) return 'wildcards in a topic name';
    if (who.kind === 'node') {
      const parsed = this.topics.parseNodeTopic(topic);
      if (parsed && parsed.uuid === who.uuid && NODE_PUBLISHES.has(parsed.kind)) return undefined;
      return `node ${who.uuid} may publish only on ${this.topics.prefix}/node/${who.uuid}/{${[...NODE_PUBLISHES].join(',')}}`;
    }
    if (who.kind === 'controller') {
      if (this.topics.commandNameOf(topic) !== undefined) return undefined;
      return `controllers may publish only commands (${this.topics.prefix}/cmd/…)`;
    }
    return 'this credential may not publish';
  }

  /** Why this client may not subscribe to this filter, or undefined when it may. */
  subscribe(who: Principal, filter: string): string | undefined {
    if (who.kind === 'hub' || who.kind === 'controller') return undefined;
    if (who.kind === 'node') {
      const t = this.topics;
      if (filter.startsWith(`${t.prefix}/hub/`)) return undefined;
      if (filter === t.nodeWelcome(who.uuid) || filter === t.nodeCommand(who.uuid)) return undefined;
      return `node ${who.uuid} may read only ${t.prefix}/hub/… and its own welcome and command topics`;
    }
    return 'this credential may not subscribe';
  }

  /** Whether a message on `topic` may be delivered to this client (private node topics go to their node and the hub only). */
  deliver(who: Principal, topic: string): boolean {
    if (who.kind === 'hub') return true;
    const parsed = this.topics.parseNodeTopic(topic);
    if (!parsed || !PRIVATE_NODE_TOPICS.has(parsed.kind)) return true;
    return who.kind === 'node' && who.uuid === parsed.uuid;
  }

  /** Client ids of the form `firefly-node-<uuid>` belong to that node: another client taking one would throw it off. */
  clientId(who: Principal, id: string): string | undefined {
    if (who.kind === 'hub' || !id.startsWith('firefly-node-')) return undefined;
    if (who.kind === 'node' && id === `firefly-node-${who.uuid}`.slice(0, 64)) return undefined;
    return `client id ${id} is reserved for another node`;
  }
}
