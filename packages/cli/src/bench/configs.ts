// The cache configs a benchmark runs: a named list, or a grid (or several) expanded into every
// combination, of any cache policy: DBCache's keys, `policy`, and every registered policy's own.
import { readFileSync } from 'node:fs';

import { CACHE_PRESETS, cachePreset, parseCacheConfig, policyRegistry, resolveConfig, strify } from '@ditcache/core';
import { parse as parseYaml } from 'yaml';

import { UsageError } from '../errors.js';

export interface BenchConfig {
  /** Folder name of the config's cells and its row in the table. */
  readonly name: string;
  readonly cache: Readonly<Record<string, unknown>>;
  /** Keep each cell's cache summary in its record (what a calibration run measured, for the caller to read). */
  readonly keepSummary?: boolean;
}

/** A value of a grid axis: a number, or a name such as a policy's or a preset's. */
export type GridValue = number | string | boolean;

/**
 * The axes of a grid, in cache-dit's names; each key takes a list of values. Besides those
 * named here, `policy` and every registered policy's keys (`mask_policy`,
 * `steps_computation_policy`, ...) are axes.
 */
export interface GridSpec extends Partial<DBCacheGrid> {
  readonly [axis: string]: readonly GridValue[] | undefined;
  /** The cache policy ('dbcache', 'scm', or a plugin's). */
  policy?: string[];
  /** SCM's preset masks ('slow', 'medium', 'fast', 'ultra') and what a mask's 0 means ('static', 'dynamic'). */
  mask_policy?: string[];
  steps_computation_policy?: string[];
}

/** DBCache's axes, the default grid's. */
export interface DBCacheGrid {
  Fn_compute_blocks: number[];
  Bn_compute_blocks: number[];
  residual_diff_threshold: number[];
  max_warmup_steps: number[];
  max_continuous_cached_steps: number[];
  /** 0 turns TaylorSeer off. */
  taylorseer_order: number[];
}

/**
 * `--configs grid`: the trade-offs worth looking at on a FLUX-class model at 28 steps. Fn 1 and
 * Bn 0 or 1 (cache-dit's choice for FLUX), thresholds from careful to aggressive, runs of three or
 * five cached steps, and TaylorSeer off, first and second order.
 */
export const DEFAULT_GRID: Readonly<DBCacheGrid> = Object.freeze({
  Fn_compute_blocks: [1],
  Bn_compute_blocks: [0, 1],
  residual_diff_threshold: [0.08, 0.16, 0.3, 0.5],
  max_warmup_steps: [2],
  max_continuous_cached_steps: [3, 5],
  taylorseer_order: [0, 1, 2],
});

/**
 * The SCM part of `--configs grid`: each of cache-dit's step masks, from the fewest cached steps
 * to the most, with a mask's 0 steps cached outright ('static') or by the diff ('dynamic', at a
 * threshold as loose as the DBCache grid's middle); Fn 1, Bn 0 and warmup 2 as above (the masks
 * compute the first steps themselves), TaylorSeer off or of order 1 (on models/flux-shapes order 1
 * gained 5-8 dB at the same cached steps).
 */
export const DEFAULT_SCM_GRID: Readonly<GridSpec> = Object.freeze({
  policy: ['scm'],
  Fn_compute_blocks: [1],
  Bn_compute_blocks: [0],
  residual_diff_threshold: [0.3],
  max_warmup_steps: [2],
  taylorseer_order: [0, 1],
  mask_policy: ['slow', 'medium', 'fast', 'ultra'],
  steps_computation_policy: ['static', 'dynamic'],
});

/** The grids `--configs grid` runs, one after the other. */
export const DEFAULT_GRIDS: readonly Readonly<GridSpec>[] = Object.freeze([DEFAULT_GRID, DEFAULT_SCM_GRID]);

/** The axes a grid may have: DBCache's above, `policy`, and the keys of every registered policy (by cache-dit's names). */
export function gridAxes(): string[] {
  const registry = policyRegistry();
  const policyKeys = registry.names().flatMap((name) => Object.values(registry.get(name)?.keys ?? {}).map((spec) => spec.snake));
  return [...new Set([...Object.keys(DEFAULT_GRID), 'policy', ...policyKeys])];
}

/** Every combination of the grid's values, in the order of its keys (the last varies fastest). */
export function expandGrid(grid: GridSpec): BenchConfig[] {
  const axes = Object.entries(grid) as [string, unknown][];
  const valid = gridAxes();
  for (const [key, values] of axes) {
    if (!valid.includes(key)) throw new UsageError(`--configs: unknown grid axis '${key}' (axes: ${valid.join(', ')})`);
    const scalar = (v: unknown) => (typeof v === 'number' && Number.isFinite(v)) || typeof v === 'string' || typeof v === 'boolean';
    if (!Array.isArray(values) || values.length === 0 || !values.every(scalar)) {
      throw new UsageError(`--configs: grid axis '${key}' must be a non-empty list of numbers, names or true / false`);
    }
  }
  let combos: Record<string, GridValue>[] = [{}];
  for (const [key, values] of axes as [string, GridValue[]][]) combos = combos.flatMap((c) => values.map((v) => ({ ...c, [key]: v })));
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
    // Core's message lists the valid keys on the lines below its first.
    throw new UsageError(`--configs: ${name === undefined ? '' : `'${name}': `}${(e as Error).message.split('\n').join(' ')}`);
  }
}

/**
 * What `--configs` names: `grid` (DEFAULT_GRIDS), or a JSON / YAML file holding a list of configs
 * (each optionally with a `name`; a string entry names a preset), a mapping of name -> config,
 * or `{ grid: {...} }` (or `{ grid: [{...}, ...] }`, grids run one after the other).
 */
export function readBenchConfigs(spec: string): BenchConfig[] {
  if (spec === 'grid') return DEFAULT_GRIDS.flatMap(expandGrid);
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
      const grids = Array.isArray(raw.grid) ? raw.grid : [raw.grid];
      if (grids.length === 0 || !grids.every(isObject))
        throw new UsageError(`--configs: ${spec}: grid must map axes to lists of values (or be a list of such grids)`);
      return grids.flatMap((grid) => expandGrid(grid as GridSpec));
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
