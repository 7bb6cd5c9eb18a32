// Cache configuration: cache-dit's DBCache and TaylorSeer settings under camelCase names, with
// cache-dit's snake_case names accepted as they are, from objects, JSON or YAML. Inputs are
// read, never modified; everything is validated before a model is touched.
import { readFileSync } from 'node:fs';

import { parse as parseYaml } from 'yaml';

/** How `maxContinuousCachedSteps` counts a run of cached steps (see the README). */
export type ContinuousCounting = 'cache-dit' | 'plain';
export type StepsComputationPolicy = 'dynamic' | 'static';
export type TaylorSeerCacheType = 'residual' | 'hidden_states';
/** 'cache-dit': its Taylor series over backward differences; 'newton': exact divided differences. */
export type TaylorSeerExpansion = 'cache-dit' | 'newton';

export interface DBCacheConfig {
  /** Blocks always computed first; their residual decides whether to cache. */
  fnComputeBlocks: number;
  /** Blocks always computed last, after the cached or computed middle blocks. */
  bnComputeBlocks: number;
  /** A step is cached when the relative L1 change of the Fn residual is below this. */
  residualDiffThreshold: number;
  /** Stop caching for the rest of the run once the recorded diffs add up to this (null: off). */
  maxAccumulatedResidualDiffThreshold: number | null;
  /** Steps 0, I, 2I, ... below this are computed (I = warmupInterval). */
  maxWarmupSteps: number;
  warmupInterval: number;
  /** At most this many cached steps per branch and run (-1: no limit). */
  maxCachedSteps: number;
  /** Force a computed step once the continuous-cache counter reaches this (-1: no limit). */
  maxContinuousCachedSteps: number;
  continuousCounting: ContinuousCounting;
  /** Per step, 1 = always compute, 0 = may cache (null: no mask). */
  stepsComputationMask: readonly number[] | null;
  /** On a 0 of the mask: 'dynamic' decides by the diff, 'static' caches. */
  stepsComputationPolicy: StepsComputationPolicy;
  /** Separate state for the CFG branch when calls are not announced (null: the adapter decides). */
  enableSeparateCfg: boolean | null;
  /** Unannounced calls: the first call of each step is the CFG branch. */
  cfgComputeFirst: boolean;
  /** false: the CFG branch reuses the other branch's diff of the same step. */
  cfgDiffComputeSeparate: boolean;
  /** Transformer-only use: a call past this many steps starts a new run. */
  numInferenceSteps: number | null;
}

export interface TaylorSeerConfig {
  /** Forecast the cached residual with a Taylor series instead of reusing it. */
  enableTaylorseer: boolean;
  /** Forecast the encoder stream's residual too (patterns that return one). */
  enableEncoderTaylorseer: boolean;
  taylorseerCacheType: TaylorSeerCacheType;
  /** 1, 2 or 3. */
  taylorseerOrder: number;
  taylorseerExpansion: TaylorSeerExpansion;
}

export interface CacheConfig extends DBCacheConfig, TaylorSeerConfig {}

/** Settings given explicitly; defaults and derived values are filled in by `resolveConfig`. */
export type CacheSettings = Partial<CacheConfig>;

/**
 * What users pass: camelCase or cache-dit snake_case keys, flat or in cache-dit's YAML layout
 * (`cache_config:` section), optionally with `paramsModifiers` (one partial config per cache
 * context, in the adapter's order).
 */
export type CacheConfigInput = (CacheSettings & { paramsModifiers?: readonly CacheConfigInput[]; cacheType?: 'DBCache' }) | Readonly<Record<string, unknown>>;

export const DEFAULT_CACHE_CONFIG: Readonly<CacheConfig> = Object.freeze({
  fnComputeBlocks: 8,
  bnComputeBlocks: 0,
  residualDiffThreshold: 0.08,
  maxAccumulatedResidualDiffThreshold: null,
  maxWarmupSteps: 8,
  warmupInterval: 1,
  maxCachedSteps: -1,
  maxContinuousCachedSteps: -1,
  continuousCounting: 'cache-dit',
  stepsComputationMask: null,
  stepsComputationPolicy: 'dynamic',
  enableSeparateCfg: null,
  cfgComputeFirst: false,
  cfgDiffComputeSeparate: true,
  numInferenceSteps: null,
  enableTaylorseer: false,
  enableEncoderTaylorseer: true,
  taylorseerCacheType: 'residual',
  taylorseerOrder: 1,
  taylorseerExpansion: 'cache-dit',
});

type Check = (v: unknown) => string | undefined;
const integer =
  (min: number): Check =>
  (v) =>
    Number.isInteger(v) && (v as number) >= min ? undefined : `an integer >= ${min}`;
const nonNegative: Check = (v) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? undefined : 'a finite number >= 0');
const boolean: Check = (v) => (typeof v === 'boolean' ? undefined : 'true or false');
const oneOf =
  (...allowed: string[]): Check =>
  (v) =>
    allowed.includes(v as string) ? undefined : `one of ${allowed.map((a) => `'${a}'`).join(', ')}`;
const nullable =
  (check: Check): Check =>
  (v) =>
    v === null ? undefined : check(v) && `${check(v)} or null`;
const mask: Check = (v) =>
  Array.isArray(v) && v.length > 0 && v.every((m) => m === 0 || m === 1)
    ? undefined
    : 'a non-empty list of 0 (may cache) and 1 (compute) per step (named cache-dit mask policies are not supported)';

interface FieldSpec {
  snake: string;
  /** Further cache-dit spellings (its calibrator config's names). */
  aliases?: readonly string[];
  check: Check;
}

const FIELDS: { readonly [K in keyof CacheConfig]: FieldSpec } = {
  fnComputeBlocks: { snake: 'Fn_compute_blocks', check: integer(1) },
  bnComputeBlocks: { snake: 'Bn_compute_blocks', check: integer(0) },
  residualDiffThreshold: { snake: 'residual_diff_threshold', check: nonNegative },
  maxAccumulatedResidualDiffThreshold: { snake: 'max_accumulated_residual_diff_threshold', check: nullable(nonNegative) },
  maxWarmupSteps: { snake: 'max_warmup_steps', check: integer(0) },
  warmupInterval: { snake: 'warmup_interval', check: integer(1) },
  maxCachedSteps: { snake: 'max_cached_steps', check: integer(-1) },
  maxContinuousCachedSteps: { snake: 'max_continuous_cached_steps', check: integer(-1) },
  continuousCounting: { snake: 'continuous_counting', check: oneOf('cache-dit', 'plain') },
  stepsComputationMask: { snake: 'steps_computation_mask', check: nullable(mask) },
  stepsComputationPolicy: { snake: 'steps_computation_policy', check: oneOf('dynamic', 'static') },
  enableSeparateCfg: { snake: 'enable_separate_cfg', check: nullable(boolean) },
  cfgComputeFirst: { snake: 'cfg_compute_first', check: boolean },
  cfgDiffComputeSeparate: { snake: 'cfg_diff_compute_separate', check: boolean },
  numInferenceSteps: { snake: 'num_inference_steps', check: nullable(integer(1)) },
  enableTaylorseer: { snake: 'enable_taylorseer', aliases: ['enable_calibrator', 'enableCalibrator'], check: boolean },
  enableEncoderTaylorseer: {
    snake: 'enable_encoder_taylorseer',
    aliases: ['enable_encoder_calibrator', 'enableEncoderCalibrator'],
    check: boolean,
  },
  taylorseerCacheType: {
    snake: 'taylorseer_cache_type',
    aliases: ['calibrator_cache_type', 'calibratorCacheType'],
    check: oneOf('residual', 'hidden_states'),
  },
  taylorseerOrder: { snake: 'taylorseer_order', check: integer(0) },
  taylorseerExpansion: { snake: 'taylorseer_expansion', check: oneOf('cache-dit', 'newton') },
};

/**
 * cache-dit keys read for compatibility with a fixed meaning: a config dumped by cache-dit
 * carries them, and they must say what ditcache does anyway.
 */
const FIXED_KEYS: Readonly<Record<string, { allowed: (v: unknown) => boolean; meaning: string }>> = {
  cache_type: { allowed: (v) => v === 'DBCache', meaning: "'DBCache' (the only cache type)" },
  cacheType: { allowed: (v) => v === 'DBCache', meaning: "'DBCache' (the only cache type)" },
  calibrator_type: { allowed: (v) => v === 'taylorseer', meaning: "'taylorseer' (the only calibrator)" },
  calibratorType: { allowed: (v) => v === 'taylorseer', meaning: "'taylorseer' (the only calibrator)" },
  calibrator_kwargs: { allowed: (v) => isPlainObject(v) && Object.keys(v).length === 0, meaning: '{} (no calibrator options)' },
  force_refresh_step_hint: { allowed: (v) => v === null, meaning: 'null (forced mid-run refreshes are not supported)' },
  force_refresh_step_policy: { allowed: (v) => v === 'once', meaning: "'once'" },
};

/** Sections of a cache-dit YAML file that configure other things than caching. */
const FOREIGN_SECTIONS = ['parallelism_config', 'quantize_config', 'attention_backend'];

const MODIFIERS_KEYS = ['paramsModifiers', 'params_modifiers'];
const CACHE_SECTION_KEYS = ['cacheConfig', 'cache_config'];
const CALIBRATOR_SECTION_KEYS = ['calibratorConfig', 'calibrator_config'];

/** Every accepted spelling -> the field it sets. */
const NAME_TO_FIELD = new Map<string, keyof CacheConfig>();
for (const [field, spec] of Object.entries(FIELDS) as [keyof CacheConfig, FieldSpec][]) {
  for (const name of [field, spec.snake, ...(spec.aliases ?? [])]) NAME_TO_FIELD.set(name, field);
}

function validKeysText(): string {
  const fields = (Object.entries(FIELDS) as [string, FieldSpec][]).map(([k, s]) => `${k} (${s.snake})`);
  return `Valid keys (camelCase, or cache-dit's snake_case in parentheses): ${fields.join(', ')}; also paramsModifiers (params_modifiers), and cache-dit's cache_config / calibrator_config sections.`;
}

/** A configuration problem; the message names the key and lists every valid key. */
export class CacheConfigError extends Error {
  constructor(
    readonly problem: string,
    readonly key?: string,
  ) {
    super(`Invalid cache config: ${problem}\n${validKeysText()}`);
    this.name = 'CacheConfigError';
  }
}

/** A config split into the base settings and the optional per-context modifiers. */
export interface ParsedCacheConfig {
  readonly base: CacheSettings;
  readonly modifiers: readonly CacheSettings[] | null;
}

/** Reads a config given as an object or as JSON / YAML text. */
export function parseCacheConfig(input: CacheConfigInput | string | undefined | null): ParsedCacheConfig {
  if (input === undefined || input === null) return { base: {}, modifiers: null };
  const raw = typeof input === 'string' ? parseText(input) : input;
  if (!isPlainObject(raw)) throw new CacheConfigError(`expected a mapping of settings, got ${describe(raw)}`);

  let modifiers: CacheSettings[] | null = null;
  const rest: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (!MODIFIERS_KEYS.includes(key)) {
      rest[key] = value;
      continue;
    }
    if (modifiers) throw new CacheConfigError('paramsModifiers given twice (camelCase and snake_case)', key);
    if (!Array.isArray(value)) throw new CacheConfigError(`${key} must be a list with one partial config per cache context`, key);
    modifiers = value.map((m, i) => settingsOf(m, `${key}[${i}]`));
  }
  return { base: settingsOf(rest, ''), modifiers };
}

/** Reads a JSON or YAML config file (cache-dit's YAML files load unchanged). */
export function readCacheConfig(path: string): ParsedCacheConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new CacheConfigError(`cannot read config file ${path}: ${(e as Error).message}`);
  }
  try {
    return parseCacheConfig(text);
  } catch (e) {
    if (e instanceof CacheConfigError) throw new CacheConfigError(`${path}: ${e.problem}`, e.key);
    throw e;
  }
}

/**
 * Reads settings without defaults, in either layout: flat keys, or cache-dit's sections
 * (`cache_config`, `calibrator_config`, and sections for other features, which are skipped
 * with a warning).
 */
export function settingsOf(input: unknown, where: string): CacheSettings {
  if (!isPlainObject(input)) throw new CacheConfigError(`${where || 'config'} must be a mapping of settings, got ${describe(input)}`);
  const at = (key: string) => (where ? `${where}.${key}` : key);
  const hasSections = Object.keys(input).some((k) => CACHE_SECTION_KEYS.includes(k) || CALIBRATOR_SECTION_KEYS.includes(k));
  if (!hasSections) return flatSettings(input, where);

  const merged: CacheSettings = {};
  for (const [key, value] of Object.entries(input)) {
    if (CACHE_SECTION_KEYS.includes(key) || CALIBRATOR_SECTION_KEYS.includes(key)) {
      const section = flatSettings(value, at(key));
      for (const [field, v] of Object.entries(section) as [keyof CacheConfig, unknown][]) {
        if (field in merged && merged[field] !== v) throw new CacheConfigError(`${at(key)}: ${field} is set differently in two sections`, at(key));
        (merged as Record<string, unknown>)[field] = v;
      }
    } else if (FOREIGN_SECTIONS.includes(key)) {
      process.emitWarning(`ditcache reads only the cache settings of a cache-dit config; '${at(key)}' is ignored`, 'DitcacheConfigWarning');
    } else {
      throw new CacheConfigError(`unknown key "${at(key)}" next to a cache_config section${suggestion(key)}`, at(key));
    }
  }
  return merged;
}

function flatSettings(input: unknown, where: string): CacheSettings {
  if (!isPlainObject(input)) throw new CacheConfigError(`${where || 'config'} must be a mapping of settings, got ${describe(input)}`);
  const at = (key: string) => (where ? `${where}.${key}` : key);
  const out: Record<string, unknown> = {};
  const spelledAs: Record<string, string> = {};
  for (const [key, value] of Object.entries(input)) {
    const fixed = FIXED_KEYS[key];
    if (fixed) {
      if (!fixed.allowed(value)) throw new CacheConfigError(`${at(key)} must be ${fixed.meaning}, got ${describe(value)}`, at(key));
      continue;
    }
    const field = NAME_TO_FIELD.get(key);
    if (!field) {
      if (FOREIGN_SECTIONS.includes(key) || CACHE_SECTION_KEYS.includes(key) || CALIBRATOR_SECTION_KEYS.includes(key)) {
        throw new CacheConfigError(`section "${at(key)}" is not allowed here`, at(key));
      }
      throw new CacheConfigError(`unknown key "${at(key)}"${suggestion(key)}`, at(key));
    }
    const problem = FIELDS[field].check(value);
    if (problem) throw new CacheConfigError(`${at(key)} must be ${problem}, got ${describe(value)}`, at(key));
    if (field in out && !sameValue(out[field], value)) {
      throw new CacheConfigError(`${at(key)} and ${at(spelledAs[field])} both set ${field}, to different values`, at(key));
    }
    out[field] = Array.isArray(value) ? Object.freeze([...value]) : value;
    spelledAs[field] = key;
  }
  // cache-dit's flat loader leaves the encoder forecast off unless its own key turns it on,
  // while its calibrator config (and a bare taylorseer_order) turns both streams on.
  if ('enable_taylorseer' in input && !('enableEncoderTaylorseer' in out)) out.enableEncoderTaylorseer = false;
  return out as CacheSettings;
}

/** Defaults filled in under the settings (later ones win), then cross-field checks. */
export function resolveConfig(...layers: readonly CacheSettings[]): CacheConfig {
  const given: CacheSettings = Object.assign({}, ...layers);
  const config: CacheConfig = { ...DEFAULT_CACHE_CONFIG, ...given };
  config.enableTaylorseer = given.enableTaylorseer ?? (given.taylorseerOrder !== undefined && given.taylorseerOrder > 0);
  if (config.enableTaylorseer && (config.taylorseerOrder < 1 || config.taylorseerOrder > 3)) {
    throw new CacheConfigError(`taylorseerOrder must be 1, 2 or 3 while TaylorSeer is on, got ${config.taylorseerOrder}`, 'taylorseerOrder');
  }
  return Object.freeze(config);
}

/** Checks that a resolved config fits a chain of `blocks` blocks. */
export function checkConfigForChain(config: CacheConfig, blocks: number, chain: string): void {
  if (config.fnComputeBlocks + config.bnComputeBlocks > blocks) {
    throw new CacheConfigError(
      `fnComputeBlocks (${config.fnComputeBlocks}) + bnComputeBlocks (${config.bnComputeBlocks}) exceeds the ${blocks} blocks of ${chain}`,
      'fnComputeBlocks',
    );
  }
}

function parseText(text: string): unknown {
  try {
    return parseYaml(text);
  } catch (e) {
    throw new CacheConfigError(`not valid JSON or YAML: ${(e as Error).message.split('\n')[0]}`);
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(describe).join(', ')}]`;
  if (v === null || typeof v !== 'object') return String(v);
  return 'an object';
}

function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function suggestion(key: string): string {
  const k = key.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const name of [...NAME_TO_FIELD.keys(), ...MODIFIERS_KEYS]) {
    const n = name.toLowerCase();
    // A name that contains the key (or the reverse) is a likely truncation: rank it first.
    const d = k.length >= 4 && (n.includes(k) || k.includes(n)) ? 0.5 : editDistance(k, n);
    if (d < bestDistance) [best, bestDistance] = [name, d];
  }
  return best !== undefined && bestDistance <= 3 ? ` (did you mean "${best}"?)` : '';
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length];
}
