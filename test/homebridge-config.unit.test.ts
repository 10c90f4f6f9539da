/**
 * config.schema.json (what the Homebridge UI renders and validates) against the plugin's
 * own zod schema (what the plugin checks at start): the form compiles under AJV 8, uses
 * object-level `required` arrays, and both accept and refuse the same configurations,
 * with the same defaults.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Ajv } from 'ajv';
import { checkPluginConfig, exposureOf, pluginConfigSchema, BROKER_ADDRESS_PATTERN, TOPIC_PREFIX_PATTERN } from '../src/homebridge/config.js';
import { homeKitName } from '../src/homebridge/names.js';
import { redactUrl } from '../src/homebridge/hub-link.js';
import { PLATFORM_NAME, PLUGIN_NAME } from '../src/homebridge/settings.js';
import { REPO_ROOT } from './helpers/processes.js';

interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  required?: unknown;
  default?: unknown;
  pattern?: string;
  [key: string]: unknown;
}

const form = JSON.parse(readFileSync(join(REPO_ROOT, 'config.schema.json'), 'utf8')) as { pluginAlias: string; pluginType: string; singular: boolean; schema: JsonSchema; layout: unknown[] };
const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as Record<string, Record<string, string> | string>;

/** Keywords of the Homebridge UI's form that are not JSON Schema. */
const UI_KEYWORDS = ['placeholder', 'condition'];

function compile() {
  const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false, useDefaults: false });
  for (const k of UI_KEYWORDS) if (!ajv.getKeyword(k)) ajv.addKeyword(k);
  return ajv.compile(form.schema);
}

const CASES: { what: string; config: Record<string, unknown>; valid: boolean }[] = [
  { what: 'only the platform', config: { platform: 'Firefly' }, valid: true },
  { what: 'external hub', config: { platform: 'Firefly', mqttUrl: 'mqtt://192.168.1.20:1883', mqttUsername: 'ha', mqttPassword: 'x' }, valid: true },
  { what: 'host only', config: { platform: 'Firefly', mqttUrl: '192.168.1.20' }, valid: true },
  { what: 'embedded with a library', config: { platform: 'Firefly', mode: 'embedded', embedded: { library: ['/srv/music'], mqttPort: 1884 } }, valid: true },
  { what: 'embedded without the embedded block', config: { platform: 'Firefly', mode: 'embedded' }, valid: false },
  { what: 'embedded without a library', config: { platform: 'Firefly', mode: 'embedded', embedded: { mqttPort: 1884 } }, valid: false },
  { what: 'embedded with an empty library', config: { platform: 'Firefly', mode: 'embedded', embedded: { library: [] } }, valid: false },
  { what: 'an unknown mode', config: { platform: 'Firefly', mode: 'remote' }, valid: false },
  { what: 'a broker address with spaces', config: { platform: 'Firefly', mqttUrl: 'my hub' }, valid: false },
  { what: 'a number as broker address', config: { platform: 'Firefly', mqttUrl: 42 }, valid: false },
  { what: 'a port out of range', config: { platform: 'Firefly', mode: 'embedded', embedded: { library: ['/m'], mqttPort: 70000 } }, valid: false },
  { what: 'a fractional port', config: { platform: 'Firefly', mode: 'embedded', embedded: { library: ['/m'], grpcPort: 7420.5 } }, valid: false },
  { what: 'a typo inside the embedded block', config: { platform: 'Firefly', mode: 'embedded', embedded: { library: ['/m'], mqtport: 1 } }, valid: false },
  { what: 'a topic prefix with a wildcard', config: { platform: 'Firefly', topicPrefix: 'home/#' }, valid: false },
  { what: 'an unknown accessory type', config: { platform: 'Firefly', accessoryType: 'speaker' }, valid: false },
  { what: 'lightbulbs and speaker tiles', config: { platform: 'Firefly', mqttUrl: 'hub.local', accessoryType: 'lightbulb', smartSpeaker: true, television: true }, valid: true },
  { what: 'a per-group override', config: { platform: 'Firefly', groups: [{ group: 'Kitchen', accessoryType: 'none' }, { group: '3', smartSpeaker: true }] }, valid: true },
  { what: 'a per-group override without the group', config: { platform: 'Firefly', groups: [{ accessoryType: 'switch' }] }, valid: false },
  { what: 'a boolean as a string', config: { platform: 'Firefly', smartSpeaker: 'yes' }, valid: false },
  { what: 'an empty name', config: { platform: 'Firefly', name: '' }, valid: false },
  { what: 'a child bridge block', config: { platform: 'Firefly', _bridge: { username: '0E:00:00:00:00:01', port: 51900 } }, valid: true },
];

describe('Homebridge settings: config.schema.json and the plugin agree', () => {
  it('names the registered platform, is singular, and package.json follows Homebridge\'s rules', () => {
    assert.equal(form.pluginAlias, PLATFORM_NAME);
    assert.equal(form.pluginType, 'platform');
    assert.equal(form.singular, true);
    assert.equal(pkg.name, PLUGIN_NAME);
    assert.equal(pkg.main, 'dist/src/homebridge/index.js');
    assert.equal((pkg.engines as Record<string, string>).homebridge, '^1.8.0 || ^2.0.0');
    assert.ok(!(pkg.dependencies as Record<string, string>).homebridge && !(pkg.dependencies as Record<string, string>)['@homebridge/hap-nodejs'], 'homebridge only as a devDependency');
    assert.ok((pkg.devDependencies as Record<string, string>).homebridge);
    const scripts = pkg.scripts as Record<string, string>;
    for (const s of ['preinstall', 'install', 'postinstall', 'prepare']) assert.equal(scripts[s], undefined, `no ${s} script`);
    assert.ok((pkg.keywords as unknown as string[]).includes('homebridge-plugin'));
  });

  it('compiles under AJV 8 (strict), with object-level required arrays only', () => {
    compile();
    const walk = (s: JsonSchema, path: string) => {
      if (s.required !== undefined) assert.ok(Array.isArray(s.required), `${path}: "required" must be an array on the object, not a flag on the field`);
      for (const [k, v] of Object.entries(s.properties ?? {})) walk(v, `${path}.${k}`);
      if (s.items) walk(s.items, `${path}[]`);
    };
    walk(form.schema, 'schema');
  });

  for (const c of CASES) {
    it(`${c.valid ? 'accepts' : 'refuses'} ${c.what}, under AJV and zod alike`, () => {
      const validate = compile();
      const ajvOk = validate(structuredClone(c.config));
      const zod = checkPluginConfig(structuredClone(c.config));
      assert.equal(ajvOk, c.valid, `AJV: ${JSON.stringify(validate.errors)}`);
      assert.equal(zod.ok, c.valid, `zod: ${zod.ok ? 'accepted' : zod.problems.join('; ')}`);
      if (!zod.ok) for (const p of zod.problems) assert.match(p, /^setting \S+/, 'each problem names the setting');
    });
  }

  it('has the same settings and defaults in both', () => {
    const zodKeys = Object.keys(pluginConfigSchema.def.shape ?? {}).filter((k) => k !== 'platform').sort();
    const jsonKeys = Object.keys(form.schema.properties!).sort();
    assert.deepEqual(jsonKeys, zodKeys);
    const defaults = pluginConfigSchema.parse({});
    for (const [k, prop] of Object.entries(form.schema.properties!)) {
      if (prop.default !== undefined) assert.deepEqual((defaults as Record<string, unknown>)[k], prop.default, `default of ${k}`);
    }
    const embedded = pluginConfigSchema.parse({ mode: 'embedded', embedded: { library: ['/m'] } }).embedded!;
    for (const [k, prop] of Object.entries(form.schema.properties!.embedded.properties!)) {
      if (prop.default !== undefined) assert.deepEqual((embedded as Record<string, unknown>)[k], prop.default, `default of embedded.${k}`);
    }
    assert.equal(form.schema.properties!.mqttUrl.pattern, BROKER_ADDRESS_PATTERN);
    assert.equal(form.schema.properties!.topicPrefix.pattern, TOPIC_PREFIX_PATTERN);
  });

  it('lays out only settings that exist, in sections', () => {
    const keys: string[] = [];
    const walk = (item: unknown) => {
      if (typeof item === 'string') keys.push(item);
      else if (item && typeof item === 'object') {
        const o = item as { key?: string; items?: unknown[]; title?: string; type?: string };
        if (o.key) keys.push(o.key);
        for (const i of o.items ?? []) walk(i);
      }
    };
    form.layout.forEach(walk);
    const titles = form.layout.filter((i): i is { title: string } => typeof i === 'object' && i !== null && 'title' in i).map((i) => i.title);
    assert.deepEqual(titles, ['Connection', 'Embedded hub', 'Accessories']);
    for (const key of keys) {
      const parts = key.replace(/\[\]/g, '').split('.');
      let s: JsonSchema | undefined = form.schema;
      for (const p of parts) s = s?.properties?.[p] ?? s?.items?.properties?.[p];
      assert.ok(s, `layout names ${key}, which the schema does not have`);
    }
    for (const k of Object.keys(form.schema.properties!)) assert.ok(keys.some((x) => x === k || x.startsWith(`${k}.`) || x.startsWith(`${k}[`)), `${k} is not in the layout`);
  });

  it('warns about unknown top-level keys instead of refusing them (Homebridge adds its own)', () => {
    const r = checkPluginConfig({ platform: 'Firefly', mqtUrl: 'x' });
    assert.ok(r.ok);
    assert.deepEqual(r.unknownKeys, ['mqtUrl']);
  });

  it('picks per-group settings by id or name', () => {
    const c = pluginConfigSchema.parse({ accessoryType: 'lightbulb', groups: [{ group: 'kitchen', accessoryType: 'switch', smartSpeaker: true }, { group: '7', accessoryType: 'none' }] });
    assert.deepEqual(exposureOf(c, { groupId: 1, name: 'Kitchen' }), { accessoryType: 'switch', smartSpeaker: true, television: false });
    assert.deepEqual(exposureOf(c, { groupId: 7, name: 'Attic' }), { accessoryType: 'none', smartSpeaker: false, television: false });
    assert.deepEqual(exposureOf(c, { groupId: 2, name: 'Den' }), { accessoryType: 'lightbulb', smartSpeaker: false, television: false });
  });

  it('makes names HomeKit accepts', () => {
    const valid = /^[\p{L}\p{N}][\p{L}\p{N}\p{Zs}\u2019'&!._:;()/,-]*[\p{L}\p{N}]$/u;
    for (const [name, expected] of [
      ['Kitchen + Den!', 'Kitchen Den'],
      ['  Living room  ', 'Living room'],
      ['Küche', 'Küche'],
      ["Kid's room", "Kid's room"],
      ['🎵 Bar 🎵', 'Bar'],
      ['+++', 'Group 4'],
      ['A', 'A'],
    ] as const) {
      const got = homeKitName(name, 'Group 4');
      assert.equal(got, expected);
      assert.match(got, got.length === 1 ? /^[\p{L}\p{N}]$/u : valid);
    }
  });

  it('never logs a password written into the broker address', () => {
    assert.equal(redactUrl('mqtt://ha:s3cret@192.168.1.20:1883'), 'mqtt://ha:***@192.168.1.20:1883');
    assert.equal(redactUrl('mqtt://192.168.1.20:1883'), 'mqtt://192.168.1.20:1883');
    assert.equal(redactUrl('hub.local'), 'hub.local');
  });
});
