import { readFileSync } from 'node:fs';
import { delimiter, resolve } from 'node:path';
import type { z } from 'zod';

/** A setting given outside the config file: where it came from and its raw text. */
export interface Override {
  path: string[];
  value: unknown;
  source: string; // e.g. "FIREFLY_GRPC_PORT" or "--grpc-port"
}

export type ValueKind = 'string' | 'number' | 'boolean' | 'list' | 'bytes' | 'bitrate';

/** Names of environment variables and the setting each one sets. */
export interface EnvBinding {
  env: string;
  path: string[];
  kind: ValueKind;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tb: 1024 ** 4, tib: 1024 ** 4 };

/** Turns the text of an env variable or flag into the value the schema expects. */
export function parseValue(text: string, kind: ValueKind, source: string): unknown {
  switch (kind) {
    case 'string':
      return text;
    case 'list':
      return text.split(delimiter).filter((s) => s.length > 0);
    case 'boolean':
      if (/^(1|true|yes|on)$/i.test(text)) return true;
      if (/^(0|false|no|off)$/i.test(text)) return false;
      throw new ConfigError(`${source}: expected true or false, got ${JSON.stringify(text)}`);
    case 'number': {
      const n = Number(text);
      if (text.trim() === '' || !Number.isFinite(n)) throw new ConfigError(`${source}: expected a number, got ${JSON.stringify(text)}`);
      return n;
    }
    case 'bytes': {
      const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
      const unit = m ? SIZE_UNITS[m[2].toLowerCase()] : undefined;
      if (!m || unit === undefined) throw new ConfigError(`${source}: expected a size such as 500M or 8G, got ${JSON.stringify(text)}`);
      return Math.round(Number(m[1]) * unit);
    }
    case 'bitrate': {
      // Network rates count bits with decimal prefixes (100M = 100 Mbit/s); the setting is in bytes per second.
      const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:bit|bps|bit\/s|b\/s)?\s*$/i.exec(text);
      if (!m) throw new ConfigError(`${source}: expected a rate in bits per second such as 100M, 1.5G or 800k, got ${JSON.stringify(text)}`);
      const scale = { '': 1, k: 1e3, m: 1e6, g: 1e9 }[m[2].toLowerCase()] ?? 1;
      return Math.round((Number(m[1]) * scale) / 8);
    }
  }
}

export function envOverrides(env: NodeJS.ProcessEnv, bindings: readonly EnvBinding[]): Override[] {
  const out: Override[] = [];
  for (const b of bindings) {
    const text = env[b.env];
    if (text === undefined || text === '') continue;
    out.push({ path: b.path, value: parseValue(text, b.kind, b.env), source: b.env });
  }
  return out;
}

export function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`config file ${file} must hold a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]] = value;
}

/**
 * Layers the config file, then the environment, then flags (later wins) and validates
 * the result. A bad value is refused with the setting's name, where it came from and why.
 */
export function resolveConfig<S extends z.ZodType>(
  schema: S,
  options: { file?: Record<string, unknown>; fileName?: string; overrides: Override[] },
): z.infer<S> {
  const raw: Record<string, unknown> = structuredClone(options.file ?? {});
  const sources = new Map<string, string>();
  for (const o of options.overrides) {
    setPath(raw, o.path, o.value);
    sources.set(o.path.join('.'), o.source);
  }
  const result = schema.safeParse(raw);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const name = issue.path.join('.') || '(top level)';
    const from = sources.get(name) ?? (options.fileName ? `config file ${options.fileName}` : 'defaults');
    return `setting ${name} (from ${from}): ${issue.message}`;
  });
  throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
}

/** Library folders and data folders are taken relative to where the command was started. */
export function absolutePaths(paths: string[], base = process.cwd()): string[] {
  return paths.map((p) => resolve(base, p));
}
