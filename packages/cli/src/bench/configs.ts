// The cache configs a benchmark runs: a named list, or a grid expanded into every combination.
import { readFileSync } from 'node:fs';

import { CACHE_PRESETS, cachePreset, parseCacheConfig, resolveConfig, strify } from '@ditcache/core';
import { parse as parseYaml } from 'yaml';

import { UsageError } from '../errors.js';

export interface BenchConfig {
  /** Folder name of the config's cells and its row in the table. */
  readonly name: string;
  readonly cache: Readonly<Record<string, unknown>>;
}

/** The axes of a grid, in cache-dit's names; each key takes a list of values. */
export interface GridSpec {
  Fn_compute_blocks?: number[];
  Bn_compute_blocks?: number[];
  residual_diff_threshold?: number[];
  max_warmup_steps?: number[];
  max_continuous_cached_steps?: number[];
  /** 0 turns TaylorSeer off. */
  taylorseer_order?: number[];
}

/**
 * `--configs grid`: the trade-offs worth looking at on a FLUX-class model at 28 steps. Fn 1 and
 * Bn 0 or 1 (cache-dit's choice for FLUX), thresholds from careful to aggressive, runs of three or
 * five cached steps, and TaylorSeer off, first and second order.
 */
export const DEFAULT_GRID: Readonly<Required<GridSpec>> = Object.freeze({
  Fn_compute_blocks: [1],
  Bn_compute_blocks: [0, 1],
  residual_diff_threshold: [0.08, 0.16, 0.3, 0.5],
  max_warmup_steps: [2],
  max_continuous_cached_steps: [3, 5],
  taylorseer_order: [0, 1, 2],
});

const GRID_KEYS = Object.keys(DEFAULT_GRID);

/** Every combination of the grid's values, in the order of its keys (the last varies fastest). */
export function expandGrid(grid: GridSpec): BenchConfig[] {
  const axes = Object.entries(grid) as [string, unknown][];
  for (const [key, values] of axes) {
    if (!GRID_KEYS.includes(key)) throw new UsageError(`--configs: unknown grid axis '${key}' (axes: ${GRID_KEYS.join(', ')})`);
    if (!Array.isArray(values) || values.length === 0 || !values.every((v) => typeof v === 'number' && Number.isFinite(v))) {
      throw new UsageError(`--configs: grid axis '${key}' must be a non-empty list of numbers`);
    }
  }
  let combos: Record<string, number>[] = [{}];
  for (const [key, values] of axes as [string, number[]][]) combos = combos.flatMap((c) => values.map((v) => ({ ...c, [key]: v })));
  return combos.map((combo) => {
    const { taylorseer_order: order, ...rest } = combo;
    return namedConfig(order ? { ...rest, taylorseer_order: order } : rest);
  });
}

/** A config named by its settings (core's strify tag, e.g. DBCache_F1B0_W3I1M0MC2_R0.16_T1O1). */
function namedConfig(cache: Record<string, unknown>, name?: string): BenchConfig {
  try {
    resolveConfig(parseCacheConfig(cache).base);
    return { name: name ?? strify(cache), cache };
  } catch (e) {
    throw new UsageError(`--configs: ${(e as Error).message}`);
  }
}

/**
 * What `--configs` names: `grid` (DEFAULT_GRID), or a JSON / YAML file holding a list of configs
 * (each optionally with a `name`; a string entry names a preset), a mapping of name -> config,
 * or `{ grid: {...} }`.
 */
export function readBenchConfigs(spec: string): BenchConfig[] {
  if (spec === 'grid') return expandGrid(DEFAULT_GRID);
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(spec, 'utf-8'));
  } catch (e) {
    throw new UsageError(`--configs: ${spec}: ${(e as Error).message.split('\n')[0]}`);
  }
  const configs = configsOf(raw, spec);
  if (configs.length === 0) throw new UsageError(`--configs: ${spec} names no configs`);
  const seen = new Set<string>();
  for (const c of configs) {
    if (c.name === UNCACHED || !/^[\w.+-]+$/.test(c.name))
      throw new UsageError(`--configs: '${c.name}' cannot name a config (letters, digits, . + - _ only; not '${UNCACHED}')`);
    if (seen.has(c.name)) throw new UsageError(`--configs: two configs are named '${c.name}'`);
    seen.add(c.name);
  }
  return configs;
}

/** The name of the baseline every config is compared with. */
export const UNCACHED = 'uncached';

function configsOf(raw: unknown, spec: string): BenchConfig[] {
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (Array.isArray(raw)) {
    return raw.map((entry, i) => {
      if (typeof entry === 'string') {
        const preset = cachePreset(entry);
        if (!preset) throw new UsageError(`--configs: ${spec}: entry ${i} '${entry}' is not a preset (${Object.keys(CACHE_PRESETS).join(', ')})`);
        return namedConfig(preset as Record<string, unknown>, entry);
      }
      if (!isObject(entry)) throw new UsageError(`--configs: ${spec}: entry ${i} is not a config`);
      const { name, ...cache } = entry;
      if (name !== undefined && typeof name !== 'string') throw new UsageError(`--configs: ${spec}: entry ${i}: name must be a string`);
      return namedConfig(cache, name);
    });
  }
  if (isObject(raw)) {
    if ('grid' in raw) {
      if (!isObject(raw.grid)) throw new UsageError(`--configs: ${spec}: grid must map axes to lists of values`);
      return expandGrid(raw.grid as GridSpec);
    }
    return Object.entries(raw).map(([name, cache]) => {
      if (!isObject(cache)) throw new UsageError(`--configs: ${spec}: '${name}' is not a config`);
      return namedConfig(cache, name);
    });
  }
  throw new UsageError(`--configs: ${spec} holds neither a list nor a mapping of configs`);
}

/** Copies a preset into a bench config (the demo's rows). */
export function presetConfig(name: string): BenchConfig {
  const preset = cachePreset(name);
  if (!preset) throw new UsageError(`unknown preset '${name}' (${Object.keys(CACHE_PRESETS).join(', ')})`);
  return { name, cache: preset as Record<string, unknown> };
}
