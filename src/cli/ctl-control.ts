import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import { brokerUrl, connectBroker, endClient, publish, subscribe, tlsUrl, whenConnected, type MqttClient } from '../protocol/mqtt-client.js';
import { parseToken, readPem } from '../protocol/access.js';
import {
  commandReplySchema,
  encode,
  groupListSchema,
  nodeListSchema,
  parsePayload,
  playlistListSchema,
  playlistPageSchema,
  type PlaylistList,
  type PlaylistPage,
  type GroupList,
  type GroupState,
  type NodeInfo,
  type NodeList,
} from '../protocol/schemas.js';
import { Topics, type CommandName } from '../protocol/topics.js';
import type { z } from 'zod';

/** `firefly ctl nodes|groups|group …|node …`: the control plane, over MQTT. */

interface MqttFlags {
  mqtt: string;
  mqttUsername?: string;
  mqttPassword?: string;
  topicPrefix: string;
  json?: boolean;
  timeout: string;
  token?: string;
  tls?: boolean;
  caFile?: string;
}

function withMqttFlags(cmd: Command): Command {
  return cmd
    .option('--mqtt <url>', 'MQTT broker, mqtt://HOST:PORT or HOST[:PORT] (default: $FIREFLY_MQTT_URL or 127.0.0.1:1883)', process.env.FIREFLY_MQTT_URL ?? '127.0.0.1')
    .option('--mqtt-username <name>', 'MQTT user name (default: $FIREFLY_MQTT_USERNAME)', process.env.FIREFLY_MQTT_USERNAME)
    .option('--mqtt-password <password>', 'MQTT password (default: $FIREFLY_MQTT_PASSWORD)', process.env.FIREFLY_MQTT_PASSWORD)
    .option('--topic-prefix <prefix>', 'root of the MQTT topics', process.env.FIREFLY_MQTT_TOPIC_PREFIX ?? 'firefly')
    .option('--token <token>', 'credential from the hub (controller:<name>:<secret>; default: $FIREFLY_TOKEN)', process.env.FIREFLY_TOKEN)
    .option('--tls', 'reach the broker over TLS (mqtts)', /^(1|true|yes|on)$/i.test(process.env.FIREFLY_TLS ?? ''))
    .option('--ca-file <file>', "CA certificate (PEM) that signed the hub's certificate (default: $FIREFLY_CA_FILE)", process.env.FIREFLY_CA_FILE)
    .option('--timeout <seconds>', 'how long to wait for the hub', '5')
    .option('--json', 'print JSON');
}

class CtlError extends Error {}

async function withBroker<T>(flags: MqttFlags, work: (client: MqttClient, topics: Topics, timeoutMs: number) => Promise<T>): Promise<T> {
  const timeoutMs = Math.max(0.1, Number(flags.timeout) || 5) * 1000;
  const token = flags.token ? parseToken(flags.token) : undefined;
  if (flags.token && !token) throw new CtlError('--token (FIREFLY_TOKEN): expected USER:SECRET, as `firefly ctl credentials add-controller` prints it');
  const tls = flags.tls || flags.caFile ? { ca: flags.caFile ? readPem(flags.caFile, '--ca-file') : undefined } : undefined;
  const url = tls ? tlsUrl(brokerUrl(flags.mqtt)) : flags.mqtt;
  const client = connectBroker(
    {
      url,
      username: flags.mqttUsername ?? token?.user,
      password: flags.mqttUsername ? flags.mqttPassword : (token?.secret ?? flags.mqttPassword),
      clientId: `firefly-ctl-${randomBytes(4).toString('hex')}`,
      keepaliveSeconds: 10,
      tls,
    },
    () => undefined,
  );
  try {
    await whenConnected(client, flags.mqtt, timeoutMs);
    return await work(client, new Topics(flags.topicPrefix), timeoutMs);
  } finally {
    await endClient(client, true);
  }
}

/** The retained message of a topic, checked against its schema. */
async function readRetained<S extends z.ZodType>(client: MqttClient, topic: string, schema: S, timeoutMs: number): Promise<z.infer<S>> {
  const got = new Promise<z.infer<S>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new CtlError(`nothing on ${topic} after ${timeoutMs / 1000} s: is the hub running and using this broker?`)), timeoutMs);
    client.on('message', (t, payload) => {
      if (t !== topic) return;
      clearTimeout(timer);
      const parsed = parsePayload(schema, payload);
      if (parsed.ok) resolve(parsed.value);
      else reject(new CtlError(`the hub's ${topic} cannot be read: ${parsed.message}`));
    });
  });
  await subscribe(client, [topic]);
  return got;
}

async function sendCommand(client: MqttClient, topics: Topics, name: CommandName, body: Record<string, unknown>, timeoutMs: number): Promise<unknown> {
  const id = randomBytes(6).toString('hex');
  const replyTo = topics.reply(`ctl-${id}`);
  const reply = new Promise<unknown>((resolve, reject) => {
    const timer = setTimeout(() => reject(new CtlError(`no reply to ${name} after ${timeoutMs / 1000} s: is the hub running?`)), timeoutMs);
    client.on('message', (t, payload) => {
      if (t !== replyTo) return;
      clearTimeout(timer);
      const parsed = parsePayload(commandReplySchema, payload);
      if (!parsed.ok) return reject(new CtlError(`unreadable reply: ${parsed.message}`));
      if (parsed.value.ok) resolve(parsed.value.result);
      else reject(new CtlError(`the hub refused ${name}: ${parsed.value.error?.message ?? 'no reason given'}`));
    });
  });
  await subscribe(client, [replyTo]);
  await publish(client, topics.command(name), encode({ ...body, id, replyTo }));
  return reply;
}

/** A group given by id or by name. */
function resolveGroup(groups: GroupList, given: string): GroupState {
  const byId = /^\d+$/.test(given) ? groups.groups.find((g) => g.groupId === Number(given)) : undefined;
  const found = byId ?? groups.groups.find((g) => g.name.toLowerCase() === given.toLowerCase());
  if (!found) throw new CtlError(`no group ${JSON.stringify(given)}; known: ${groups.groups.map((g) => `${g.groupId} ${g.name}`).join(', ') || 'none'}`);
  return found;
}

/** A node given by id, name or uuid. */
function resolveNode(nodes: NodeList, given: string): NodeInfo {
  const byId = /^\d+$/.test(given) ? nodes.nodes.find((n) => n.nodeId === Number(given)) : undefined;
  const found = byId ?? nodes.nodes.find((n) => n.uuid === given || n.name.toLowerCase() === given.toLowerCase());
  if (!found) throw new CtlError(`no node ${JSON.stringify(given)}; known: ${nodes.nodes.map((n) => `${n.nodeId} ${n.name}`).join(', ') || 'none'}`);
  return found;
}

function parseVolume(text: string): number {
  const v = Number(text);
  if (!Number.isInteger(v) || v < 0 || v > 100) throw new CtlError(`volume must be a whole number from 0 to 100, got ${JSON.stringify(text)}`);
  return v;
}

function printNodes(list: NodeList, json?: boolean): void {
  for (const n of list.nodes) {
    if (json) process.stdout.write(`${JSON.stringify(n)}\n`);
    else {
      const store = n.store ? `${(n.store.bytes / 1024 ** 2).toFixed(1)} MiB` : '-';
      process.stdout.write(`${String(n.nodeId).padStart(4)}  ${n.online ? 'online ' : 'offline'}  ${n.name.padEnd(20)}  group ${n.groupId ?? '-'}  vol ${n.volume}  library v${n.libraryVersion ?? '-'}  store ${store}  ${n.uuid}\n`);
    }
  }
}

function printGroups(groups: GroupState[], json?: boolean): void {
  for (const g of groups) {
    if (json) process.stdout.write(`${JSON.stringify(g)}\n`);
    else {
      const members = g.members.map((m) => `${m.name}${m.online ? '' : ' (offline)'}`).join(', ') || 'no members';
      const p = g.playback;
      const what = p.entryId === null ? '' : `  ${p.title ?? `entry ${p.entryId}`} ${formatTime(p.positionMs)}${p.durationMs === null ? '' : `/${formatTime(p.durationMs)}`}`;
      const modes = `${p.shuffle ? '  shuffle' : ''}${p.repeat === 'off' ? '' : `  repeat ${p.repeat}`}${p.muted ? '  muted' : ''}`;
      process.stdout.write(`${String(g.groupId).padStart(4)}  ${g.name.padEnd(20)}  vol ${g.volume}  ${p.state}${what}${modes}  ${members}\n`);
      for (const e of g.errors.slice(-3)) process.stdout.write(`        error: ${e.nodeId === null ? '' : `node ${e.nodeId}, `}entry ${e.entryId ?? '-'}: ${e.message}\n`);
    }
  }
}

export function addControlCommands(ctl: Command, fail: (err: unknown) => never): void {
  const run = (work: (flags: MqttFlags, ...args: string[]) => Promise<void>) =>
    async (...args: unknown[]) => {
      const cmd = args[args.length - 1] as Command;
      const flags = cmd.opts<MqttFlags>();
      try {
        await work(flags, ...(args.slice(0, -2) as string[]));
      } catch (err) {
        fail(err);
      }
    };

  withMqttFlags(ctl.command('nodes').description('list the nodes the hub knows, online or not')).action(
    run((flags) => withBroker(flags, async (client, topics, ms) => printNodes(await readRetained(client, topics.nodes, nodeListSchema, ms), flags.json))),
  );
  withMqttFlags(ctl.command('groups').description('list the groups and their members')).action(
    run((flags) => withBroker(flags, async (client, topics, ms) => printGroups((await readRetained(client, topics.groups, groupListSchema, ms)).groups, flags.json))),
  );

  const group = ctl.command('group').description('create, rename, delete and change groups');
  const groupCommand = (usage: string, description: string, build: (client: MqttClient, topics: Topics, ms: number, args: string[]) => Promise<[CommandName, Record<string, unknown>]>) =>
    withMqttFlags(group.command(usage).description(description)).action(
      run((flags, ...args) =>
        withBroker(flags, async (client, topics, ms) => {
          const [name, body] = await build(client, topics, ms, args);
          const result = await sendCommand(client, topics, name, body, ms);
          if (flags.json) process.stdout.write(`${JSON.stringify(result)}\n`);
          else if (result && typeof result === 'object' && 'members' in result) printGroups([result as GroupState]);
          else process.stdout.write(`ok ${JSON.stringify(result)}\n`);
        }),
      ),
    );
  const groups = (client: MqttClient, topics: Topics, ms: number) => readRetained(client, topics.groups, groupListSchema, ms);
  const nodes = (client: MqttClient, topics: Topics, ms: number) => readRetained(client, topics.nodes, nodeListSchema, ms);

  groupCommand('create <name> [nodes...]', 'make a group, optionally with members (node ids or names)', async (client, topics, ms, [name, members]) => {
    const given = (members as unknown as string[] | undefined) ?? [];
    const list = given.length > 0 ? await nodes(client, topics, ms) : undefined;
    return ['group/create', { name, members: given.length > 0 ? given.map((m) => resolveNode(list!, m).nodeId) : undefined }];
  });
  groupCommand('rename <group> <name>', 'rename a group (given by id or name)', async (client, topics, ms, [g, name]) => ['group/rename', { groupId: resolveGroup(await groups(client, topics, ms), g).groupId, name }]);
  groupCommand('delete <group>', 'delete a group', async (client, topics, ms, [g]) => ['group/delete', { groupId: resolveGroup(await groups(client, topics, ms), g).groupId }]);
  groupCommand('add <group> <node>', 'add a node to a group (moving it out of its old one)', async (client, topics, ms, [g, n]) => [
    'group/add',
    { groupId: resolveGroup(await groups(client, topics, ms), g).groupId, nodeId: resolveNode(await nodes(client, topics, ms), n).nodeId },
  ]);
  groupCommand('remove <group> <node>', 'remove a node from a group', async (client, topics, ms, [g, n]) => [
    'group/remove',
    { groupId: resolveGroup(await groups(client, topics, ms), g).groupId, nodeId: resolveNode(await nodes(client, topics, ms), n).nodeId },
  ]);
  groupCommand('volume <group> <volume>', "set a group's volume, 0-100", async (client, topics, ms, [g, v]) => ['group/volume', { groupId: resolveGroup(await groups(client, topics, ms), g).groupId, volume: parseVolume(v) }]);

  const node = ctl.command('node').description('change one node');
  withMqttFlags(node.command('volume <node> <volume>').description("set a node's own volume, 0-100")).action(
    run((flags, n, v) =>
      withBroker(flags, async (client, topics, ms) => {
        const nodeId = resolveNode(await readRetained(client, topics.nodes, nodeListSchema, ms), n).nodeId;
        const result = await sendCommand(client, topics, 'node/volume', { nodeId, volume: parseVolume(v) }, ms);
        process.stdout.write(`${flags.json ? JSON.stringify(result) : `ok ${JSON.stringify(result)}`}\n`);
      }),
    ),
  );

  addPlaybackCommands(ctl, run, groups, nodes);
  addPlaylistCommands(ctl, run, groups);
}

function formatTime(ms: number): string {
  const total = Math.floor(ms / 1000);
  return `${Math.floor(total / 60)}:${String(total % 60).padStart(2, '0')}`;
}

function parseIds(given: string[], what: string): number[] {
  return given.map((t) => {
    const v = Number(t);
    if (!Number.isInteger(v) || v < 1) throw new CtlError(`${what} must be whole numbers (see firefly ctl library), got ${JSON.stringify(t)}`);
    return v;
  });
}

type Run = (work: (flags: MqttFlags, ...args: string[]) => Promise<void>) => (...args: unknown[]) => Promise<void>;
type Reader<T> = (client: MqttClient, topics: Topics, ms: number) => Promise<T>;

/** `firefly ctl play|pause|resume|stop|seek|next|previous|queue|shuffle|repeat|mute`, and `node latency`. */
function addPlaybackCommands(ctl: Command, run: Run, groups: Reader<GroupList>, nodes: Reader<NodeList>): void {
  const command = (parent: Command, usage: string, description: string, build: (client: MqttClient, topics: Topics, ms: number, args: string[]) => Promise<[CommandName, Record<string, unknown>]>) =>
    withMqttFlags(parent.command(usage).description(description)).action(
      run((flags, ...args) =>
        withBroker(flags, async (client, topics, ms) => {
          const [name, body] = await build(client, topics, ms, args.map((a) => a as unknown as string | string[]).flat());
          const result = await sendCommand(client, topics, name, body, ms);
          if (flags.json) process.stdout.write(`${JSON.stringify(result)}\n`);
          else if (result && typeof result === 'object' && 'members' in result) printGroups([result as GroupState]);
          else process.stdout.write(`ok ${JSON.stringify(result)}\n`);
        }),
      ),
    );
  const groupId = async (client: MqttClient, topics: Topics, ms: number, given: string) => resolveGroup(await groups(client, topics, ms), given).groupId;
  const simple = (name: 'pause' | 'resume' | 'stop' | 'next' | 'previous', description: string) =>
    command(ctl, `${name} <group>`, description, async (client, topics, ms, [g]) => [name, { groupId: await groupId(client, topics, ms, g) }]);

  command(ctl, 'play <group> [entries...]', 'play the queue, or replace it with these library entries (ids from `firefly ctl library`) and play', async (client, topics, ms, [g, ...entries]) => [
    'play',
    { groupId: await groupId(client, topics, ms, g), entryIds: entries.length > 0 ? parseIds(entries, 'entries') : undefined },
  ]);
  simple('pause', 'pause a group');
  simple('resume', 'resume a paused group');
  simple('stop', 'stop a group');
  simple('next', 'skip to the next track');
  simple('previous', 'back to the start of the track, or the previous one');
  command(ctl, 'seek <group> <seconds>', 'jump to a position in the current track', async (client, topics, ms, [g, sec]) => {
    const seconds = Number(sec);
    if (!Number.isFinite(seconds) || seconds < 0) throw new CtlError(`seconds must be a number ≥ 0, got ${JSON.stringify(sec)}`);
    return ['seek', { groupId: await groupId(client, topics, ms, g), seconds }];
  });
  command(ctl, 'shuffle <group> <on|off>', 'shuffle the queue', async (client, topics, ms, [g, on]) => ['shuffle', { groupId: await groupId(client, topics, ms, g), on: parseSwitch(on) }]);
  command(ctl, 'repeat <group> <off|one|all>', 'repeat nothing, the track, or the queue', async (client, topics, ms, [g, mode]) => {
    if (!['off', 'one', 'all'].includes(mode)) throw new CtlError(`repeat is off, one or all, got ${JSON.stringify(mode)}`);
    return ['repeat', { groupId: await groupId(client, topics, ms, g), mode }];
  });
  command(ctl, 'mute <group> <on|off>', 'mute or unmute a group', async (client, topics, ms, [g, on]) => ['mute', { groupId: await groupId(client, topics, ms, g), muted: parseSwitch(on) }]);

  const queue = ctl.command('queue').description("show and change a group's queue");
  withMqttFlags(queue.command('show <group>').description('list the queue (item ids are what remove and move take)')).action(
    run((flags, g) =>
      withBroker(flags, async (client, topics, ms) => {
        const state = resolveGroup(await groups(client, topics, ms), g);
        if (flags.json) return void process.stdout.write(`${JSON.stringify(state.queue)}\n`);
        for (const [i, item] of state.queue.items.entries()) {
          process.stdout.write(`${item.itemId === state.queue.current ? '>' : ' '} ${String(i).padStart(4)}  item ${String(item.itemId).padStart(5)}  entry ${item.entryId}\n`);
        }
        if (state.queue.length > state.queue.items.length) process.stdout.write(`  … ${state.queue.length - state.queue.items.length} more\n`);
      }),
    ),
  );
  command(queue, 'add <group> <entries...>', 'append library entries to the queue', async (client, topics, ms, [g, ...entries]) => [
    'queue/add',
    { groupId: await groupId(client, topics, ms, g), entryIds: parseIds(entries, 'entries') },
  ]);
  command(queue, 'remove <group> <item>', 'remove a queue item', async (client, topics, ms, [g, item]) => ['queue/remove', { groupId: await groupId(client, topics, ms, g), itemId: parseIds([item], 'item')[0] }]);
  command(queue, 'move <group> <item> <to>', 'move a queue item to a place (0 = first)', async (client, topics, ms, [g, item, to]) => [
    'queue/move',
    { groupId: await groupId(client, topics, ms, g), itemId: parseIds([item], 'item')[0], to: parseIds([String(Number(to) + 1)], 'place')[0] - 1 },
  ]);
  command(queue, 'clear <group>', 'empty the queue (and stop)', async (client, topics, ms, [g]) => ['queue/clear', { groupId: await groupId(client, topics, ms, g) }]);

  const node = ctl.commands.find((c) => c.name() === 'node') ?? ctl.command('node').description('change one node');
  command(node, 'mute <node> <on|off>', 'mute or unmute one node', async (client, topics, ms, [n, on]) => ['mute', { nodeId: resolveNode(await nodes(client, topics, ms), n).nodeId, muted: parseSwitch(on) }]);
  command(node, 'latency <node> <ms>', 'latency offset: how much later than reported this speaker sounds (ms)', async (client, topics, ms, [n, l]) => {
    const latencyMs = Number(l);
    if (!Number.isFinite(latencyMs)) throw new CtlError(`latency must be a number of milliseconds, got ${JSON.stringify(l)}`);
    return ['node/latency', { nodeId: resolveNode(await nodes(client, topics, ms), n).nodeId, latencyMs }];
  });
}

function parseSwitch(text: string): boolean {
  if (text === 'on' || text === 'true') return true;
  if (text === 'off' || text === 'false') return false;
  throw new CtlError(`expected on or off, got ${JSON.stringify(text)}`);
}

/** A playlist given by id or by name. */
function resolvePlaylist(list: PlaylistList, given: string) {
  const byId = /^\d+$/.test(given) ? list.playlists.find((p) => p.playlistId === Number(given)) : undefined;
  const found = byId ?? list.playlists.find((p) => p.name.toLowerCase() === given.toLowerCase());
  if (!found) throw new CtlError(`no playlist ${JSON.stringify(given)}; known: ${list.playlists.map((p) => `${p.playlistId} ${p.name}`).join(', ') || 'none'}`);
  return found;
}

/** `firefly ctl playlists` and `firefly ctl playlist create|rename|delete|add|remove|play`. */
function addPlaylistCommands(ctl: Command, run: Run, groups: Reader<GroupList>): void {
  const playlists = (client: MqttClient, topics: Topics, ms: number) => readRetained(client, topics.playlists, playlistListSchema, ms);
  const line = (p: PlaylistList['playlists'][number]) => `${String(p.playlistId).padStart(4)}  ${p.name.padEnd(24)}  ${String(p.entryCount).padStart(5)} entries  ${formatTime(p.durationMs)}`;
  const print = (list: PlaylistList['playlists'], json?: boolean) => {
    for (const p of list) process.stdout.write(json ? `${JSON.stringify(p)}\n` : `${line(p)}\n`);
  };
  /** A command's reply (a playlist page): its summary and the first entries. */
  const printPage = (page: PlaylistPage) =>
    process.stdout.write(`${line(page)}  ${page.entryIds.slice(0, 20).join(' ')}${page.entryCount > 20 ? ' …' : ''}\n`);
  withMqttFlags(ctl.command('playlists').description('list the saved playlists')).action(
    run((flags) => withBroker(flags, async (client, topics, ms) => print((await playlists(client, topics, ms)).playlists, flags.json))),
  );
  const playlist = ctl.command('playlist').description('create, rename, delete, change and play saved playlists');
  const command = (usage: string, description: string, build: (client: MqttClient, topics: Topics, ms: number, args: string[]) => Promise<[CommandName, Record<string, unknown>]>) =>
    withMqttFlags(playlist.command(usage).description(description)).action(
      run((flags, ...args) =>
        withBroker(flags, async (client, topics, ms) => {
          const [name, body] = await build(client, topics, ms, args.map((a) => a as unknown as string | string[]).flat());
          const result = await sendCommand(client, topics, name, body, ms);
          if (flags.json) process.stdout.write(`${JSON.stringify(result)}\n`);
          else if (result && typeof result === 'object' && 'entryIds' in result && 'entryCount' in result) printPage(result as PlaylistPage);
          else if (result && typeof result === 'object' && 'members' in result) printGroups([result as GroupState]);
          else process.stdout.write(`ok ${JSON.stringify(result)}\n`);
        }),
      ),
    );
  const playlistId = async (client: MqttClient, topics: Topics, ms: number, given: string) => resolvePlaylist(await playlists(client, topics, ms), given).playlistId;
  // The list carries no entries (it must stay under the payload limit): they come a page at a time.
  withMqttFlags(playlist.command('show <playlist>').description("a playlist's entries, in order (given by id or name)")).action(
    run((flags, given) =>
      withBroker(flags, async (client, topics, ms) => {
        const id = await playlistId(client, topics, ms, given as unknown as string);
        const entryIds: number[] = [];
        let page: PlaylistPage;
        do {
          const reply = playlistPageSchema.safeParse(await sendCommand(client, topics, 'playlist/get', { playlistId: id, offset: entryIds.length }, ms));
          if (!reply.success) throw new CtlError(`the hub's playlist/get reply is not a playlist page: ${reply.error.issues[0]?.message}`);
          page = reply.data;
          entryIds.push(...page.entryIds);
        } while (page.entryIds.length > 0 && entryIds.length < page.entryCount);
        if (flags.json) process.stdout.write(`${JSON.stringify({ ...page, offset: 0, entryIds })}\n`);
        else process.stdout.write(`${line(page)}\n${entryIds.join(' ')}\n`);
      }),
    ),
  );
  command('create <name> [entries...]', 'save a playlist, optionally with library entries (ids from `firefly ctl library`)', async (_c, _t, _ms, [name, ...entries]) => [
    'playlist/create',
    { name, entryIds: entries.length > 0 ? parseIds(entries, 'entries') : undefined },
  ]);
  command('rename <playlist> <name>', 'rename a playlist (given by id or name)', async (client, topics, ms, [p, name]) => ['playlist/rename', { playlistId: await playlistId(client, topics, ms, p), name }]);
  command('delete <playlist>', 'delete a playlist', async (client, topics, ms, [p]) => ['playlist/delete', { playlistId: await playlistId(client, topics, ms, p) }]);
  command('add <playlist> <entries...>', 'append library entries to a playlist', async (client, topics, ms, [p, ...entries]) => [
    'playlist/add',
    { playlistId: await playlistId(client, topics, ms, p), entryIds: parseIds(entries, 'entries') },
  ]);
  command('remove <playlist> <index>', 'remove the entry at this place (0 = first)', async (client, topics, ms, [p, index]) => [
    'playlist/remove',
    { playlistId: await playlistId(client, topics, ms, p), index: parseIds([String(Number(index) + 1)], 'index')[0] - 1 },
  ]);
  command('play <playlist> <group>', "replace a group's queue with the playlist and play it", async (client, topics, ms, [p, g]) => [
    'play',
    { groupId: resolveGroup(await groups(client, topics, ms), g).groupId, playlistId: await playlistId(client, topics, ms, p) },
  ]);
}
