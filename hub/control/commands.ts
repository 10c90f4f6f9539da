import type { Logger } from '../../src/log.js';
import { commandSchemas, envelopeOf, parsePayload, type CommandPayload, type CommandReply, type ErrorCode } from '../../src/protocol/schemas.js';
import { COMMAND_NAMES, isCommandName, type CommandName } from '../../src/protocol/topics.js';
import type { ControlChannel, IncomingMessage } from './channel.js';

/** A command refused for a reason the sender can fix (unknown id, name taken…). */
export class CommandError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'CommandError';
  }
}

export type CommandHandler<N extends CommandName> = (payload: CommandPayload<N>) => unknown;

/**
 * Receives every message under `<prefix>/cmd/`, checks it against the command's schema
 * and hands it to the module that registered the command. Whatever goes wrong (unknown
 * command, bad JSON, wrong types, unknown ids) leaves state untouched and produces an
 * error event, plus a reply when the sender asked for one.
 */
export class CommandRouter {
  private readonly handlers = new Map<CommandName, (payload: unknown) => unknown>();
  /** Commands handled and refused since start, for tests and the benchmark. */
  readonly counts = { handled: 0, refused: 0 };

  constructor(
    private readonly channel: ControlChannel,
    private readonly log: Logger,
  ) {}

  register<N extends CommandName>(name: N, handler: CommandHandler<N>): void {
    this.handlers.set(name, handler as (payload: unknown) => unknown);
  }

  async start(): Promise<void> {
    await this.channel.handle(this.channel.topics.allCommands, (m) => this.onMessage(m));
  }

  /**
   * Runs a command in-process (REST API, Home Assistant bridge, an embedded Homebridge
   * plugin): the same schema and handler as the MQTT topic, so every way in behaves alike.
   * Returns the handler's result; throws CommandError for anything refused (an invalid
   * payload is code 'invalid' with the schema's issues in the message).
   */
  invoke<N extends CommandName>(name: N, payload: unknown): unknown {
    const parsed = commandSchemas[name].safeParse(payload);
    if (!parsed.success) {
      const issues = parsed.error.issues.slice(0, 10).map((i) => `${i.path.map(String).join('.') || '(payload)'}: ${i.message}`);
      this.counts.refused++;
      throw new CommandError('invalid', `${name}: ${issues.join('; ')}`);
    }
    const handler = this.handlers.get(name);
    if (!handler) throw new CommandError('unknown-command', `command ${name} is not available on this hub`);
    try {
      const result = handler(parsed.data);
      this.counts.handled++;
      return result;
    } catch (err) {
      this.counts.refused++;
      throw err;
    }
  }

  async stop(): Promise<void> {}

  private onMessage(message: IncomingMessage): void {
    const { topic, payload } = message;
    const name = this.channel.topics.commandNameOf(topic) ?? '';
    const envelope = envelopeOf(payload);
    const refuse = (code: ErrorCode, text: string, issues?: { path: string; message: string }[]) => {
      this.counts.refused++;
      this.channel.error(topic, code, text, envelope.id, issues);
      this.reply(envelope.replyTo, { id: envelope.id, command: name, ok: false, error: { code, message: text, issues } });
    };
    if (message.retained) return refuse('invalid', 'retained commands are ignored (publish commands without the retain flag)');
    if (!isCommandName(name)) return refuse('unknown-command', `unknown command ${JSON.stringify(name.slice(0, 64))}; known: ${COMMAND_NAMES.join(', ')}`);
    const parsed = parsePayload(commandSchemas[name], payload);
    if (!parsed.ok) return refuse(parsed.code, `${name}: ${parsed.message}`, parsed.issues);
    const replyTo = (parsed.value as { replyTo?: string }).replyTo;
    if (replyTo !== undefined && !this.channel.topics.isReplyTopic(replyTo)) {
      return refuse('invalid', `replyTo must be a topic under ${this.channel.topics.replyRoot}/ without wildcards`);
    }
    const handler = this.handlers.get(name);
    if (!handler) return refuse('unknown-command', `command ${name} is not available on this hub`);
    let result: unknown;
    try {
      result = handler(parsed.value);
    } catch (err) {
      if (err instanceof CommandError) return refuse(err.code, `${name}: ${err.message}`);
      this.log.error({ err, command: name }, 'command failed');
      return refuse('internal', `${name} failed in the hub: ${(err as Error).message}`);
    }
    this.counts.handled++;
    this.reply(replyTo ?? null, { id: envelope.id, command: name, ok: true, result });
  }

  private reply(replyTo: string | null, reply: CommandReply): void {
    if (replyTo === null || !this.channel.topics.isReplyTopic(replyTo)) return;
    this.channel.publish(replyTo, reply, { qos: 1 });
  }
}
