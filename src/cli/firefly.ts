#!/usr/bin/env node
import { Command } from 'commander';
import { existsSync, mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError } from '../config/load.js';
import { DEFAULT_GRPC_PORT } from '../config/schema.js';
import { createLogger } from '../log.js';
import { grpcAddress, libraryClient } from '../protocol/data-plane.js';
import { addControlCommands } from './ctl-control.js';
import { tuneGarbageCollector } from './gc-tuning.js';
import { addCredentialCommands } from './ctl-credentials.js';
import { readPem } from '../protocol/access.js';
import { addFlags, HUB_FLAGS, hubConfigFrom, NODE_FLAGS, nodeConfigFrom } from './options.js';
import type { ChangesReply__Output } from '../generated/firefly/v1/ChangesReply.js';
import type { LibraryEntry__Output } from '../generated/firefly/v1/LibraryEntry.js';

/** Runs a long-lived service until SIGINT/SIGTERM, then stops it cleanly. */
async function runService(name: string, service: { start(): Promise<void>; stop(): Promise<void> }, log: ReturnType<typeof createLogger>): Promise<void> {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, `${name} stopping`);
    service.stop().then(
      () => process.exit(0),
      (err: Error) => {
        log.error({ err }, `${name} did not stop cleanly`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  await service.start();
}

function fail(err: unknown): never {
  if (err instanceof ConfigError) process.stderr.write(`firefly: ${err.message}\n`);
  else process.stderr.write(`firefly: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
}

const program = new Command('firefly')
  .description('Firefly: multi-room music in sync.\nRun `firefly hub` on one machine and `firefly node` on every speaker box.')
  .showHelpAfterError();

addFlags(program.command('hub').description('run the hub: library index, catalogue and the gRPC data plane'), HUB_FLAGS).action(
  async (opts: Record<string, unknown>) => {
    let config;
    try {
      config = hubConfigFrom(opts);
    } catch (err) {
      fail(err);
    }
    const log = createLogger('hub', config.logLevel);
    tuneGarbageCollector();
    // A fresh clone's `npm start` indexes ./music: make it rather than fail. Any other
    // folder must exist (a typo should not silently index an empty folder).
    if (config.library.length === 1 && config.library[0] === './music' && !existsSync('./music')) {
      mkdirSync('./music', { recursive: true });
      log.info({ folder: resolve('./music') }, 'created the default library folder; put music there');
    }
    const { Hub } = await import('../../hub/hub.js');
    try {
      await runService('hub', new Hub(config, log), log);
    } catch (err) {
      fail(err);
    }
  },
);

addFlags(program.command('node').description('run a node: mirror the library and keep the chunks it lacks'), NODE_FLAGS)
  .option('--once', 'sync once, print the report as JSON and exit')
  .action(async (opts: Record<string, unknown>) => {
    let config;
    try {
      config = nodeConfigFrom(opts);
    } catch (err) {
      fail(err);
    }
    const log = createLogger('node', config.logLevel);
    tuneGarbageCollector();
    // Without a hub address, find the hub on the LAN first: everything after reads config.hub.
    const { resolveHub } = await import('../discovery/resolve.js');
    let resolved;
    try {
      resolved = await resolveHub(config, log);
    } catch (err) {
      fail(err);
    }
    const { FireflyNode } = await import('../node/node.js');
    let node;
    try {
      node = new FireflyNode(resolved, log);
    } catch (err) {
      fail(err);
    }
    if (opts.once) {
      const report = await node.syncOnce();
      process.stdout.write(`${JSON.stringify({ ...report, store: node.store.usage() })}\n`);
      await node.stop();
      process.exit(report ? 0 : 1);
    }
    await runService('node', node, log);
  });

const ctl = program.command('ctl').description('inspect and control a running hub');
addControlCommands(ctl, fail);
addCredentialCommands(ctl, fail);
ctl
  .command('library')
  .description('list the files in the hub\'s library')
  .option('--hub <address>', 'hub address, HOST or HOST:PORT', process.env.FIREFLY_HUB ?? '127.0.0.1')
  .option('--json', 'one JSON object per line')
  .option('--failed', 'only files that could not be indexed, with the reason')
  .option('--token <token>', 'credential from the hub (default: $FIREFLY_TOKEN)', process.env.FIREFLY_TOKEN)
  .option('--ca-file <file>', "reach the hub over TLS, trusting this CA certificate (default: $FIREFLY_CA_FILE)", process.env.FIREFLY_CA_FILE)
  .action(async (opts: { hub: string; json?: boolean; failed?: boolean; token?: string; caFile?: string }) => {
    const client = libraryClient(grpcAddress(opts.hub, DEFAULT_GRPC_PORT), undefined, { token: () => opts.token, tls: opts.caFile ? { ca: readPem(opts.caFile, '--ca-file') } : undefined });
    const entries: LibraryEntry__Output[] = [];
    let version = 0;
    try {
      for (;;) {
        const reply = await new Promise<ChangesReply__Output>((resolve, reject) =>
          client.Changes({ sinceVersion: String(version) }, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res!))),
        );
        entries.push(...reply.entries.filter((e) => !e.removed));
        version = Number(reply.pageVersion);
        if (!reply.more) break;
      }
    } catch (err) {
      fail(new Error(`cannot reach the hub at ${opts.hub}: ${(err as Error).message}`));
    }
    client.close();
    for (const e of entries) {
      if (opts.failed && e.status === 'OK') continue;
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ id: Number(e.id), path: e.path, root: e.root, status: e.status, error: e.error || undefined, format: e.format, title: e.metadata?.title, artist: e.metadata?.artist, album: e.metadata?.album, duration: e.metadata?.durationSeconds })}\n`);
      } else {
        const what = e.status === 'OK' ? `${e.metadata?.artist ?? '?'} — ${e.metadata?.title ?? e.path}` : `${e.status}: ${e.error}`;
        process.stdout.write(`${String(e.id).padStart(6)}  ${e.path}  ${what}\n`);
      }
    }
  });

program.parseAsync(process.argv).catch(fail);
