// --cache SPEC: a preset name, a JSON / YAML file, or inline JSON / YAML text.
import { existsSync } from 'node:fs';
import { readFileSync } from 'node:fs';

import { CACHE_PRESETS, cachePreset, parseCacheConfig, type CacheConfigInput } from '@ditcache/core';

import { UsageError } from './errors.js';

/** The config a --cache value names, checked for keys and types (model-specific checks come at enable time). */
export function resolveCacheSpec(spec: string): CacheConfigInput | string {
  const preset = cachePreset(spec);
  if (preset) return preset;
  const looksLikePath = /\.(json|ya?ml)$/i.test(spec) && !spec.trimStart().startsWith('{');
  let text = spec;
  if (looksLikePath || existsSync(spec)) {
    if (!existsSync(spec)) throw new UsageError(`--cache: no such file ${spec}`);
    text = readFileSync(spec, 'utf-8');
  } else if (!/[{:]/.test(spec)) {
    throw new UsageError(`--cache: '${spec}' is not a preset (${Object.keys(CACHE_PRESETS).join(', ')}), a file, or JSON / YAML text`);
  }
  try {
    parseCacheConfig(text);
  } catch (e) {
    throw new UsageError(`--cache: ${(e as Error).message}`);
  }
  return text;
}
