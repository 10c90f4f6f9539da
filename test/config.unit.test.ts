import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, hostname, tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { absolutePaths, ConfigError, parseValue, resolveConfig } from '../src/config/load.js';
import { hubConfigSchema, nodeConfigSchema } from '../src/config/schema.js';
import { hubConfigFrom, nodeConfigFrom } from '../src/cli/options.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

// Every FIREFLY_* variable is cleared for each test and restored afterwards, so the
// developer's own environment cannot leak in.
let savedEnv: Record<string, string | undefined> = {};
let dir = '';

beforeEach(() => {
  savedEnv = {};
  for (const k of Object.keys(process.env)) {
    if (k.startsWith('FIREFLY_')) {
      savedEnv[k] = process.env[k];
      delete process.env[k];
    }
  }
  dir = mkdtempSync(join(tmpdir(), 'ff-config-'));
});

afterEach(() => {
  for (const k of Object.keys(process.env)) if (k.startsWith('FIREFLY_')) delete process.env[k];
  for (const [k, v] of Object.entries(savedEnv)) process.env[k] = v;
  rmSync(dir, { recursive: true, force: true });
});

function configFile(content: unknown, name = 'firefly.json'): string {
  const file = join(dir, name);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

/** Runs fn and returns the ConfigError it throws (failing if it throws anything else, or nothing). */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a ConfigError, nothing was thrown');
}

test('hub defaults', () => {
  const c = hubConfigFrom({});
  assert.deepEqual(c.library, ['./music']);
  assert.equal(c.dataDir, join(homedir(), '.firefly', 'hub'));
  assert.deepEqual(c.grpc, { host: '0.0.0.0', port: 7420, maxMessageBytes: 4 * MiB, uploadLimitBytesPerSecond: 0 });
  assert.deepEqual(c.http, { host: '0.0.0.0', port: 8081 });
  assert.deepEqual(c.index, { inMemoryLimitBytes: 256 * MiB, workers: 0, settleMs: 750, followSymlinks: true });
  assert.equal(c.logLevel, 'info');
});

test('node defaults', () => {
  const c = nodeConfigFrom({});
  assert.equal(c.hub, undefined, 'no hub: the node looks for one over mDNS');
  assert.deepEqual(c.discovery, { timeoutSeconds: 10 });
  assert.equal(c.dataDir, join(homedir(), '.firefly', 'node'));
  assert.equal(c.name, hostname());
  assert.deepEqual(c.store, { budgetBytes: 8 * GiB, fsync: true });
  assert.deepEqual(c.serve, { host: '0.0.0.0', port: 7422 });
  assert.deepEqual(c.sync, { prefetch: 'all', peers: true, intervalSeconds: 60, batchChunks: 2 });
  assert.equal(c.logLevel, 'info');
});

test('file < environment < flags, each setting on its own', () => {
  const file = configFile({ grpc: { host: '10.0.0.1', port: 1000 }, http: { port: 1001 }, logLevel: 'warn', index: { workers: 3 } });
  let c = hubConfigFrom({ config: file });
  assert.deepEqual([c.grpc.host, c.grpc.port, c.http.port, c.logLevel, c.index.workers], ['10.0.0.1', 1000, 1001, 'warn', 3]);
  // Defaults still fill what the file leaves out, inside a section the file does set.
  assert.equal(c.grpc.maxMessageBytes, 4 * MiB);
  assert.equal(c.index.settleMs, 750);

  process.env.FIREFLY_GRPC_PORT = '2000';
  process.env.FIREFLY_LOG_LEVEL = 'debug';
  c = hubConfigFrom({ config: file });
  // The environment wins for the settings it names, and leaves the file's neighbours alone.
  assert.deepEqual([c.grpc.host, c.grpc.port, c.http.port, c.logLevel], ['10.0.0.1', 2000, 1001, 'debug']);

  c = hubConfigFrom({ config: file, grpcPort: '3000', workers: '5' });
  assert.deepEqual([c.grpc.host, c.grpc.port, c.http.port, c.logLevel, c.index.workers], ['10.0.0.1', 3000, 1001, 'debug', 5]);
});

test('the config file can be named by FIREFLY_CONFIG; --config wins over it', () => {
  const viaEnv = configFile({ grpc: { port: 1111 } }, 'env.json');
  const viaFlag = configFile({ grpc: { port: 2222 } }, 'flag.json');
  process.env.FIREFLY_CONFIG = viaEnv;
  assert.equal(hubConfigFrom({}).grpc.port, 1111);
  assert.equal(hubConfigFrom({ config: viaFlag }).grpc.port, 2222);
});

test('one file can configure both the hub and the node', () => {
  const file = configFile({ hub: { grpc: { port: 7000 }, library: ['/srv/music'] }, node: { hub: 'hub.local:7000', name: 'kitchen' } });
  const hub = hubConfigFrom({ config: file });
  assert.equal(hub.grpc.port, 7000);
  assert.deepEqual(hub.library, ['/srv/music']);
  const node = nodeConfigFrom({ config: file });
  assert.equal(node.hub, 'hub.local:7000');
  assert.equal(node.name, 'kitchen');
  // A node-only file whose "hub" setting is the hub's address is read as node settings.
  const nodeOnly = configFile({ hub: '10.1.1.1', name: 'den' }, 'node.json');
  assert.deepEqual([nodeConfigFrom({ config: nodeOnly }).hub, nodeConfigFrom({ config: nodeOnly }).name], ['10.1.1.1', 'den']);
});

test('list, boolean and number values from text', () => {
  process.env.FIREFLY_LIBRARY = ['/a', '/b c', ''].join(delimiter);
  assert.deepEqual(hubConfigFrom({}).library, ['/a', '/b c']);
  assert.deepEqual(hubConfigFrom({ library: `/x${delimiter}/y` }).library, ['/x', '/y']);
  for (const t of ['1', 'true', 'YES', 'on']) assert.equal(parseValue(t, 'boolean', 'X'), true, t);
  for (const t of ['0', 'false', 'No', 'off']) assert.equal(parseValue(t, 'boolean', 'X'), false, t);
  assert.throws(() => parseValue('maybe', 'boolean', '--flag'), /--flag: expected true or false, got "maybe"/);
  assert.equal(parseValue('42', 'number', 'X'), 42);
  assert.equal(parseValue('2.5', 'number', 'X'), 2.5);
  for (const t of ['', '  ', 'abc', '12abc', 'NaN', 'Infinity']) {
    assert.throws(() => parseValue(t, 'number', 'SRC'), (e: unknown) => e instanceof ConfigError && e.message.startsWith('SRC: expected a number'), JSON.stringify(t));
  }
});

test('byte sizes take K, M, G, T in powers of 1024', () => {
  const cases: [string, number][] = [
    ['0', 0],
    ['123', 123],
    ['2G', 2 * GiB],
    ['2g', 2 * GiB],
    ['500M', 500 * MiB],
    ['500MB', 500 * MiB],
    ['1.5K', 1536],
    ['8 GiB', 8 * GiB],
    ['1T', 1024 ** 4],
    ['64b', 64],
  ];
  for (const [text, bytes] of cases) assert.equal(parseValue(text, 'bytes', 'X'), bytes, text);
  for (const text of ['', 'lots', '2X', '-1G', 'G', '1.2.3M', '2 G B']) {
    assert.throws(() => parseValue(text, 'bytes', '--store-budget'), /--store-budget: expected a size such as 500M or 8G/, text);
  }
  process.env.FIREFLY_STORE_BUDGET = '2G';
  assert.equal(nodeConfigFrom({}).store.budgetBytes, 2 * GiB);
  assert.equal(nodeConfigFrom({ storeBudget: '500M' }).store.budgetBytes, 500 * MiB);
  // In a file a size is a plain number of bytes.
  delete process.env.FIREFLY_STORE_BUDGET;
  assert.equal(nodeConfigFrom({ config: configFile({ store: { budgetBytes: 1024 } }) }).store.budgetBytes, 1024);
});

test('a value that is not a number is refused with where it came from', () => {
  process.env.FIREFLY_GRPC_PORT = 'abc';
  const e = configError(() => hubConfigFrom({}));
  assert.match(e.message, /FIREFLY_GRPC_PORT: expected a number, got "abc"/);
  delete process.env.FIREFLY_GRPC_PORT;
  assert.match(configError(() => hubConfigFrom({ grpcPort: 'abc' })).message, /--grpc-port: expected a number, got "abc"/);
  process.env.FIREFLY_STORE_BUDGET = 'lots';
  assert.match(configError(() => nodeConfigFrom({})).message, /FIREFLY_STORE_BUDGET: expected a size/);
});

test('an out-of-range value is refused with the setting name and its source', () => {
  const file = configFile({ grpc: { port: 70000 } });
  let e = configError(() => hubConfigFrom({ config: file }));
  assert.match(e.message, /setting grpc\.port \(from config file [^)]*firefly\.json\): .*65535/);

  process.env.FIREFLY_GRPC_PORT = '70000';
  e = configError(() => hubConfigFrom({}));
  assert.match(e.message, /setting grpc\.port \(from FIREFLY_GRPC_PORT\): .*65535/);
  // The file's bad value is overridden by a good one from the environment: accepted.
  process.env.FIREFLY_GRPC_PORT = '7000';
  assert.equal(hubConfigFrom({ config: file }).grpc.port, 7000);

  e = configError(() => hubConfigFrom({ grpcPort: '-1' }));
  assert.match(e.message, /setting grpc\.port \(from --grpc-port\)/);
  e = configError(() => hubConfigFrom({ grpcPort: '80.5' }));
  assert.match(e.message, /setting grpc\.port \(from --grpc-port\)/);

  process.env.FIREFLY_LOG_LEVEL = 'loud';
  e = configError(() => nodeConfigFrom({}));
  assert.match(e.message, /setting logLevel \(from FIREFLY_LOG_LEVEL\)/);
  delete process.env.FIREFLY_LOG_LEVEL;

  e = configError(() => nodeConfigFrom({ prefetch: 'some' }));
  assert.match(e.message, /setting sync\.prefetch \(from --prefetch\)/);

  process.env.FIREFLY_LIBRARY = delimiter;
  e = configError(() => hubConfigFrom({}));
  assert.match(e.message, /setting library \(from FIREFLY_LIBRARY\)/);
});

test('every problem is reported, not just the first', () => {
  const file = configFile({ grpc: { port: 70000 }, index: { settleMs: -5 } });
  process.env.FIREFLY_HTTP_PORT = '99999';
  const e = configError(() => hubConfigFrom({ config: file }));
  assert.match(e.message, /setting grpc\.port \(from config file/);
  assert.match(e.message, /setting index\.settleMs \(from config file/);
  assert.match(e.message, /setting http\.port \(from FIREFLY_HTTP_PORT\)/);
});

test('unknown keys in the config file are refused, at any depth', () => {
  let e = configError(() => hubConfigFrom({ config: configFile({ grpcPort: 7000 }) }));
  assert.match(e.message, /firefly\.json/);
  assert.match(e.message, /grpcPort/);
  e = configError(() => hubConfigFrom({ config: configFile({ grpc: { prot: 7000 } }) }));
  assert.match(e.message, /firefly\.json/);
  assert.match(e.message, /prot/);
  e = configError(() => nodeConfigFrom({ config: configFile({ store: { budget: '2G' } }) }));
  assert.match(e.message, /budget/);
  e = configError(() => nodeConfigFrom({ config: configFile({ sync: { prefetch: 'all', interval: 5 } }) }));
  assert.match(e.message, /interval/);
});

test('a config file that cannot be read or is not a JSON object is refused', () => {
  assert.match(configError(() => hubConfigFrom({ config: join(dir, 'nope.json') })).message, /cannot read config file .*nope\.json/);
  assert.match(configError(() => hubConfigFrom({ config: configFile('{ "grpc": ') })).message, /config file .*firefly\.json is not valid JSON/);
  assert.match(configError(() => hubConfigFrom({ config: configFile('[1, 2]') })).message, /must hold a JSON object/);
  assert.match(configError(() => hubConfigFrom({ config: configFile('null') })).message, /must hold a JSON object/);
});

test('resolveConfig does not modify the file object it is given', () => {
  const file = { grpc: { port: 1000 } };
  const c = resolveConfig(hubConfigSchema, { file, overrides: [{ path: ['grpc', 'port'], value: 2000, source: 'X' }] });
  assert.equal(c.grpc.port, 2000);
  assert.deepEqual(file, { grpc: { port: 1000 } });
  assert.match(
    configError(() => resolveConfig(nodeConfigSchema, { overrides: [{ path: ['name'], value: '', source: '--name' }] })).message,
    /setting name \(from --name\)/,
  );
});

test('absolutePaths resolves against the start folder', () => {
  assert.deepEqual(absolutePaths(['./music', '/abs', 'rel/x'], '/base'), [resolve('/base/music'), '/abs', resolve('/base/rel/x')]);
});
