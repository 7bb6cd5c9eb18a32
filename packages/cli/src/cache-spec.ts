// --cache SPEC: a preset name, a JSON / YAML file, or inline JSON / YAML text; checked for keys
// and types, and against the model's block chains, before the model loads.
import { existsSync } from 'node:fs';
import { readFileSync } from 'node:fs';

import { CACHE_PRESETS, cachePreset, parseCacheConfig, resolveConfig, type CacheConfigInput } from '@ditcache/core';
import type { CliCacheChain } from '@ditcache/diffusion/cli';

import { UsageError } from './errors.js';

/** A config error as one line: the problem, then the valid keys the core's message lists below it. */
function configUsageError(e: unknown): UsageError {
  return new UsageError(`--cache: ${(e as Error).message.split('\n').join(' ')}`);
}

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
    throw configUsageError(e);
  }
  return text;
}

/**
 * Checks a resolved --cache config against the block chains of the model (from its config.json
 * files), as enableCache will: one params_modifiers entry per chain, and Fn + Bn within each.
 */
export function checkCacheFitsModel(spec: CacheConfigInput | string, chains: readonly CliCacheChain[]): void {
  const parsed = parseCacheConfig(spec);
  const names = chains.map((c) => `${c.name} (${c.blocks} blocks)`).join(', ');
  if (parsed.modifiers && parsed.modifiers.length !== chains.length) {
    throw new UsageError(`--cache: params_modifiers has ${parsed.modifiers.length} entries, but this model has ${chains.length} cache contexts: ${names}`);
  }
  chains.forEach((chain, i) => {
    let fn: number, bn: number;
    try {
      ({ fnComputeBlocks: fn, bnComputeBlocks: bn } = resolveConfig(parsed.base, parsed.modifiers?.[i] ?? {}));
    } catch (e) {
      throw configUsageError(e);
    }
    if (fn + bn > chain.blocks) {
      const where = parsed.modifiers ? ` (with params_modifiers[${i}])` : '';
      throw new UsageError(
        `--cache: Fn_compute_blocks (${fn}) + Bn_compute_blocks (${bn})${where} exceeds the ${chain.blocks} blocks of ${chain.name}; this model's cache contexts: ${names}`,
      );
    }
  });
}
