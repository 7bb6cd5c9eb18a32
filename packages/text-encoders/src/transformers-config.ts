// transformers' config.json of a model folder: the architecture named in `architectures` and
// the hyper-parameters, type-checked, with transformers' defaults for keys a file omits.
import { join } from 'node:path';

import { ConfigError } from '@ditcache/diffusion';

type Json = Record<string, unknown>;

export class TransformersConfig {
  readonly architecture: string;

  /** `raw` is the parsed config.json of `dir`; its architecture must be one of `architectures`. */
  constructor(
    private readonly raw: Json,
    readonly dir: string,
    architectures: readonly string[],
  ) {
    const named = Array.isArray(raw.architectures) ? (raw.architectures as unknown[]) : [];
    const found = named.find((a): a is string => typeof a === 'string' && architectures.includes(a));
    if (!found) {
      throw new ConfigError(`${this.where} describes ${named.length ? named.join(', ') : 'no architectures'}, not a ${architectures.join(' or a ')}`);
    }
    this.architecture = found;
  }

  get where(): string {
    return join(this.dir, 'config.json');
  }

  number(key: string, fallback?: number): number {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(`${this.where}: '${key}' should be a number, got ${JSON.stringify(this.raw[key])}`);
    return v;
  }

  integer(key: string, fallback?: number): number {
    const v = this.number(key, fallback);
    if (!Number.isInteger(v) || v < 0) throw new ConfigError(`${this.where}: '${key}' should be a non-negative integer, got ${v}`);
    return v;
  }

  boolean(key: string, fallback?: boolean): boolean {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== 'boolean') throw new ConfigError(`${this.where}: '${key}' should be true or false, got ${JSON.stringify(this.raw[key])}`);
    return v;
  }

  /** An object-valued key (e.g. rope_parameters), or null when the file omits it or gives null. */
  object(key: string): Json | null {
    const v = this.raw[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(`${this.where}: '${key}' should be an object, got ${JSON.stringify(v)}`);
    return v as Json;
  }

  string(key: string, fallback?: string): string {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== 'string') throw new ConfigError(`${this.where}: '${key}' should be a string, got ${JSON.stringify(this.raw[key])}`);
    return v;
  }
}
