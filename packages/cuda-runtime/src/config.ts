// Model configs (config.json, scheduler_config.json, ...) checked against the class that reads
// them, the way diffusers reads them: the class name must fit, known keys must have the type of
// their default, unknown keys are ignored (and listed).

/** A config that is missing, unreadable, of another class, or of the wrong types. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const kind = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

/**
 * `raw` (the config read from `where`) checked against a class: `_class_name` must be one of
 * `classNames`; each key of `defaults` takes the raw value (of the default's type, or null) or
 * else the default. Keys the defaults do not know are listed in `ignoredKeys`.
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
    if (value !== null && want !== 'null' && kind(value) !== want)
      throw new ConfigError(`${where}: '${key}' should be a ${want}, got ${JSON.stringify(value)}`);
    out[key] = value;
  }
  return { ...(out as T), ignoredKeys };
}
