// JSON configs that sit beside the weights (scheduler_config.json, model_index.json), read and
// checked the way @ditcache/cuda-runtime's WeightFolder checks a component's config.json.
import { existsSync, readFileSync } from 'node:fs';

/** A config file that is missing, unreadable, of another class, or of the wrong types. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** The JSON object in `path`. */
export function readJsonObject(path: string): Record<string, unknown> {
  if (!existsSync(path)) throw new ConfigError(`${path}: no such file`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf-8'));
  } catch (e) {
    throw new ConfigError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError(`${path}: not a JSON object`);
  return parsed as Record<string, unknown>;
}

const kind = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

/**
 * `raw` checked against a class: `_class_name` must be one of `classNames`; each key of
 * `defaults` takes the raw value (of the default's type, or null) or else the default. Keys the
 * defaults do not know are listed in `ignoredKeys`, as diffusers ignores them.
 */
export function typedConfig<T extends Record<string, unknown>>(
  raw: Record<string, unknown>,
  where: string,
  classNames: readonly string[],
  defaults: T,
): T & { ignoredKeys: string[] } {
  const cls = raw._class_name;
  if (typeof cls !== 'string' || !classNames.includes(cls)) {
    throw new ConfigError(`${where} describes ${typeof cls === 'string' ? `a ${cls}` : 'no _class_name'}, not a ${classNames.join(' or a ')}`);
  }
  const out: Record<string, unknown> = { ...defaults };
  const ignoredKeys: string[] = [];
  for (const [key, value] of Object.entries(raw)) {
    if (key.startsWith('_')) continue;
    if (!(key in defaults)) {
      ignoredKeys.push(key);
      continue;
    }
    const want = kind(defaults[key]);
    if (value !== null && want !== 'null' && kind(value) !== want) {
      throw new ConfigError(`${where}: '${key}' should be a ${want}, got ${JSON.stringify(value)}`);
    }
    out[key] = value;
  }
  return { ...(out as T), ignoredKeys };
}
