import { randomUUID } from 'node:crypto';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';

/**
 * `firefly ctl credentials …`: issue and revoke credentials. Run on the hub machine, as
 * the user the hub runs as: whoever can read the hub's credentials file may issue them,
 * and nothing else may (no network call is involved).
 */
export function addCredentialCommands(ctl: Command, fail: (err: unknown) => never): void {
  const credentials = ctl.command('credentials').description("issue and revoke credentials (run on the hub machine; reads the hub's data folder)");
  const dataDirOption = (cmd: Command) =>
    cmd.option('--data-dir <folder>', "the hub's data folder (default: $FIREFLY_DATA_DIR or ~/.firefly/hub)", process.env.FIREFLY_DATA_DIR ?? join(homedir(), '.firefly', 'hub')).option('--json', 'print JSON');
  const open = async (dataDir: string) => {
    const { Credentials } = await import('../../hub/security/credentials.js');
    return Credentials.inDataDir(resolve(dataDir), { create: false });
  };
  const print = (json: boolean | undefined, value: Record<string, string>, text: string) => process.stdout.write(json ? `${JSON.stringify(value)}\n` : text);

  dataDirOption(credentials.command('add-node').description('a credential for one node: pass it to that node with --token or FIREFLY_TOKEN'))
    .option('--uuid <uuid>', "the node's uuid, to keep an existing node's identity (it logs it at start); default: a new one")
    .action(async (opts: { dataDir: string; uuid?: string; json?: boolean }) => {
      try {
        const store = await open(opts.dataDir);
        const uuid = opts.uuid ?? randomUUID();
        const token = store.tokenFor(`node:${uuid}`);
        print(opts.json, { uuid, token }, `node ${uuid}\n  token: ${token}\n  start it with: FIREFLY_TOKEN='${token}' firefly node …\n`);
      } catch (err) {
        fail(err);
      }
    });

  dataDirOption(credentials.command('add-controller').description('a credential for a controller (firefly ctl, Homebridge, Home Assistant, the web page)'))
    .argument('<name>', 'what it is for, e.g. homebridge (letters, digits, . _ -)')
    .action(async (name: string, opts: { dataDir: string; json?: boolean }) => {
      try {
        const store = await open(opts.dataDir);
        const token = store.issue(`controller:${name}`);
        print(
          opts.json,
          { user: token.user, password: token.secret, token: `${token.user}:${token.secret}` },
          `controller ${name}\n  token: ${token.user}:${token.secret}\n  MQTT user name: ${token.user}\n  MQTT password: ${token.secret}\n`,
        );
      } catch (err) {
        fail(err);
      }
    });

  dataDirOption(credentials.command('revoke').description('refuse a credential from now on (the running hub notices within a second)'))
    .argument('<user>', 'node:<uuid> or controller:<name>')
    .action(async (user: string, opts: { dataDir: string; json?: boolean }) => {
      try {
        (await open(opts.dataDir)).revoke(user);
        print(opts.json, { revoked: user }, `revoked ${user}\n`);
      } catch (err) {
        fail(err);
      }
    });
}
