// Cache configuration: the engine's keys, the `policy` that decides the steps, and that
// policy's keys (cache-dit's DBCache and TaylorSeer settings by default) under camelCase names,
// with cache-dit's snake_case names accepted as they are, from objects, JSON or YAML. Inputs
// are read, never modified; everything is validated before a model is touched.
import { readFileSync } from 'node:fs';

import { parse as parseYaml } from 'yaml';

import { boolean, integer, nullable, type Check, type KeySpec } from './config-keys.js';
import { DBCACHE_DEFAULTS, DBCACHE_KEYS, DBCACHE_POLICY, type EngineKey } from './dbcache-policy.js';
import { policyRegistry } from './policy.js';
// Registers the other built-in policies; a plugin's package registers its own when imported.
import './scm-policy.js';
import './magcache-policy.js';
import './dbprune-policy.js';

/** How `maxContinuousCachedSteps` counts a run of cached steps (see the README). */
export type ContinuousCounting = 'cache-dit' | 'plain';
export type StepsComputationPolicy = 'dynamic' | 'static';
export type TaylorSeerCacheType = 'residual' | 'hidden_states';
/** 'cache-dit': its Taylor series over backward differences; 'newton': exact divided differences. */
export type TaylorSeerExpansion = 'cache-dit' | 'newton';
/** Which of cache-dit's calibrators forecasts the cached steps' residual when one is enabled. */
export type CalibratorType = 'taylorseer' | 'foca' | 'dmd';
/** cache-dit's DMD SVD modes; the snapshot matrices here are small, so all three take the exact SVD. */
export type DmdSvdPrecision = 'low' | 'medium' | 'high';

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

/** cache-dit's calibrator_config beyond TaylorSeer: which calibrator, and DMD's settings. */
export interface CalibratorConfig {
  /** The calibrator enableTaylorseer (enable_calibrator) turns on: TaylorSeer, FoCa or DMD. */
  calibratorType: CalibratorType;
  /** DMD: the computed steps it keeps per stream; its exponential fit needs 4 evenly spaced ones. */
  dmdHistory: number;
  /** DMD: the SVD rank of its fit (0: the singular values above 1e-4 of the largest). */
  dmdRank: number;
  /** DMD: added to the singular values it inverts. */
  dmdRidge: number;
  dmdSvdPrecision: DmdSvdPrecision;
}

export interface PolicySelection {
  /** The registered cache policy that decides the steps ('dbcache': DBCache with TaylorSeer). */
  policy: string;
  /**
   * The policy's own keys, camelCase, defaults filled in. DBCache's keys are the config's own
   * fields, for every policy that takes them (and keep their defaults, unused, under another).
   */
  policyOptions: Readonly<Record<string, unknown>>;
}

export interface CacheConfig extends DBCacheConfig, TaylorSeerConfig, CalibratorConfig, PolicySelection {}

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
  enableSeparateCfg: null,
  cfgComputeFirst: false,
  cfgDiffComputeSeparate: true,
  numInferenceSteps: null,
  policy: DBCACHE_POLICY,
  policyOptions: Object.freeze({}),
  ...DBCACHE_DEFAULTS,
});

const policyName: Check = (v) => {
  const names = policyRegistry().names();
  return typeof v === 'string' && names.includes(v) ? undefined : `a registered cache policy: one of ${names.map((n) => `'${n}'`).join(', ')}`;
};

/** The keys every policy shares: block ranges, CFG branches, runs, and the policy's name. */
const ENGINE_FIELDS: { readonly [K in EngineKey | 'policy']: KeySpec } = {
  fnComputeBlocks: { snake: 'Fn_compute_blocks', check: integer(1) },
  bnComputeBlocks: { snake: 'Bn_compute_blocks', check: integer(0) },
  enableSeparateCfg: { snake: 'enable_separate_cfg', check: nullable(boolean) },
  cfgComputeFirst: { snake: 'cfg_compute_first', check: boolean },
  cfgDiffComputeSeparate: { snake: 'cfg_diff_compute_separate', check: boolean },
  numInferenceSteps: { snake: 'num_inference_steps', check: nullable(integer(1)) },
  policy: { snake: 'policy', check: policyName },
};

/** Where an accepted spelling goes: a field of the config, or one of `policyOptions`. */
interface KeyTarget {
  readonly name: string;
  readonly spec: KeySpec;
  readonly option: boolean;
}

/** DBCache's keys are fields of the config for every policy that takes them; other keys are options. */
const isField = (name: string) => name in ENGINE_FIELDS || name in DBCACHE_KEYS;

/** The keys a config for `policy` accepts, each under every spelling, engine keys first. */
function keysOf(policy: string): Map<string, KeyTarget> {
  const out = new Map<string, KeyTarget>();
  for (const [name, spec] of Object.entries({ ...ENGINE_FIELDS, ...policyRegistry().get(policy)?.keys })) {
    for (const spelling of [name, spec.snake, ...(spec.aliases ?? [])]) out.set(spelling, { name, spec, option: !isField(name) });
  }
  return out;
}

/**
 * cache-dit's cache types other than DBCache, each read as the policy that is it: a cache-dit
 * config with `cache_type: DBPrune` selects `policy: dbprune` (DBCache is every other policy's base).
 */
const CACHE_TYPE_POLICIES: Readonly<Record<string, string>> = { DBPrune: 'dbprune' };
const CACHE_TYPE_KEYS = ['cache_type', 'cacheType'];

const policyOfCacheType = (v: unknown): string | undefined =>
  typeof v === 'string' && Object.hasOwn(CACHE_TYPE_POLICIES, v) ? CACHE_TYPE_POLICIES[v] : undefined;
const cacheTypeAllowed = (v: unknown, policy: string) => v === 'DBCache' || policyOfCacheType(v) === policy;
const CACHE_TYPE_MEANING = "'DBCache', or 'DBPrune' (read as policy 'dbprune')";

/**
 * cache-dit keys read for compatibility with a fixed meaning: a config dumped by cache-dit
 * carries them, and they must say what ditcache does anyway.
 */
const FIXED_KEYS: Readonly<Record<string, { allowed: (v: unknown, policy: string) => boolean; meaning: string }>> = {
  cache_type: { allowed: cacheTypeAllowed, meaning: CACHE_TYPE_MEANING },
  cacheType: { allowed: cacheTypeAllowed, meaning: CACHE_TYPE_MEANING },
  calibrator_kwargs: { allowed: (v) => isPlainObject(v) && Object.keys(v).length === 0, meaning: '{} (no calibrator options)' },
  force_refresh_step_hint: { allowed: (v) => v === null, meaning: 'null (forced mid-run refreshes are not supported)' },
  force_refresh_step_policy: { allowed: (v) => v === 'once', meaning: "'once'" },
};

/**
 * cache-dit's flat switches for its other calibrators, read beside enable_taylorseer (at most one
 * of the three true): each turns the calibrator on and names its type; its encoder key turns the
 * encoder stream's forecast on or off, else FoCa leaves it off and DMD turns it on.
 */
const CALIBRATOR_SWITCHES: Readonly<Record<string, { type: CalibratorType; encoderKey: string; encoderDefault: boolean }>> = {
  enable_foca: { type: 'foca', encoderKey: 'enable_encoder_foca', encoderDefault: false },
  enable_dmd: { type: 'dmd', encoderKey: 'enable_encoder_dmd', encoderDefault: true },
};
const SWITCH_ENCODER_KEYS = Object.values(CALIBRATOR_SWITCHES).map((s) => s.encoderKey);

/** Sections of a cache-dit YAML file that configure other things than caching. */
const FOREIGN_SECTIONS = ['parallelism_config', 'quantize_config', 'attention_backend'];

const MODIFIERS_KEYS = ['paramsModifiers', 'params_modifiers'];
const CACHE_SECTION_KEYS = ['cacheConfig', 'cache_config'];
const CALIBRATOR_SECTION_KEYS = ['calibratorConfig', 'calibrator_config'];

function validKeysText(policy: string): string {
  const seen = new Set<string>();
  const fields: string[] = [];
  for (const { name, spec } of keysOf(policy).values()) {
    if (seen.has(name)) continue;
    seen.add(name);
    fields.push(name === spec.snake ? name : `${name} (${spec.snake})`);
  }
  return `Valid keys with policy '${policy}' (camelCase, or cache-dit's snake_case in parentheses): ${fields.join(', ')}; also paramsModifiers (params_modifiers), cache-dit's flat calibrator switches ${Object.keys(CALIBRATOR_SWITCHES).join(', ')} (with ${SWITCH_ENCODER_KEYS.join(', ')}), and cache-dit's cache_config / calibrator_config sections.`;
}

/** A configuration problem; the message names the key and lists every valid key of the policy. */
export class CacheConfigError extends Error {
  constructor(
    readonly problem: string,
    readonly key?: string,
    readonly policy: string = DBCACHE_POLICY,
  ) {
    super(`Invalid cache config: ${problem}\n${validKeysText(policy)}`);
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
    modifiers = value.map((m, i) => settingsOf(m, `${key}[${i}]`, policyNamedIn(rest)));
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
    if (e instanceof CacheConfigError) throw new CacheConfigError(`${path}: ${e.problem}`, e.key, e.policy);
    throw e;
  }
}

/**
 * The policy a mapping names (at its top or in its cache_config section), else `inherited`:
 * a params modifier is read with the keys of its base config's policy.
 */
function policyNamedIn(input: Readonly<Record<string, unknown>>, inherited: string = DBCACHE_POLICY): string {
  const sections = [input, ...CACHE_SECTION_KEYS.map((k) => input[k])].filter(isPlainObject);
  for (const section of sections) if (typeof section.policy === 'string') return section.policy;
  // Without a policy key, a cache-dit cache type that is a policy names it.
  for (const section of sections) {
    for (const key of CACHE_TYPE_KEYS) {
      const policy = policyOfCacheType(section[key]);
      if (policy !== undefined) return policy;
    }
  }
  return inherited;
}

/**
 * Reads settings without defaults, in either layout: flat keys, or cache-dit's sections
 * (`cache_config`, `calibrator_config`, and sections for other features, which are skipped
 * with a warning). The keys accepted are the engine's and those of the policy the settings
 * name, else of `inheritedPolicy`.
 */
export function settingsOf(input: unknown, where: string, inheritedPolicy: string = DBCACHE_POLICY): CacheSettings {
  if (!isPlainObject(input))
    throw new CacheConfigError(`${where || 'config'} must be a mapping of settings, got ${describe(input)}`, undefined, inheritedPolicy);
  const at = (key: string) => (where ? `${where}.${key}` : key);
  const policy = policyNamedIn(input, inheritedPolicy);
  // An unknown policy is reported before its keys, which would all look unknown.
  const problem = ENGINE_FIELDS.policy.check(policy);
  if (problem) throw new CacheConfigError(`${at('policy')} must be ${problem}, got ${describe(policy)}`, at('policy'));
  const hasSections = Object.keys(input).some((k) => CACHE_SECTION_KEYS.includes(k) || CALIBRATOR_SECTION_KEYS.includes(k));
  if (!hasSections) return flatSettings(input, where, policy);

  const merged: Record<string, unknown> = {};
  const options: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(input)) {
    if (CACHE_SECTION_KEYS.includes(key) || CALIBRATOR_SECTION_KEYS.includes(key)) {
      const { policyOptions, ...section } = flatSettings(value, at(key), policy);
      for (const [target, entries] of [
        [merged, section],
        [options, policyOptions ?? {}],
      ] as const) {
        for (const [field, v] of Object.entries(entries)) {
          if (field in target && target[field] !== v) throw new CacheConfigError(`${at(key)}: ${field} is set differently in two sections`, at(key), policy);
          target[field] = v;
        }
      }
    } else if (FOREIGN_SECTIONS.includes(key)) {
      process.emitWarning(`ditcache reads only the cache settings of a cache-dit config; '${at(key)}' is ignored`, 'DitcacheConfigWarning');
    } else {
      throw new CacheConfigError(`unknown key "${at(key)}" next to a cache_config section${suggestion(key, policy)}`, at(key), policy);
    }
  }
  if (Object.keys(options).length > 0) merged.policyOptions = Object.freeze(options);
  return merged as CacheSettings;
}

function flatSettings(input: unknown, where: string, policy: string): CacheSettings {
  if (!isPlainObject(input)) throw new CacheConfigError(`${where || 'config'} must be a mapping of settings, got ${describe(input)}`, undefined, policy);
  const at = (key: string) => (where ? `${where}.${key}` : key);
  const keys = keysOf(policy);
  const options: Record<string, unknown> = {};
  const out: Record<string, unknown> = {};
  const spelledAs: Record<string, string> = {};
  const switches: Record<string, boolean> = {};
  for (const [key, value] of Object.entries(input)) {
    if (key in CALIBRATOR_SWITCHES || SWITCH_ENCODER_KEYS.includes(key)) {
      if (typeof value !== 'boolean') throw new CacheConfigError(`${at(key)} must be true or false, got ${describe(value)}`, at(key), policy);
      switches[key] = value;
      continue;
    }
    const fixed = FIXED_KEYS[key];
    if (fixed) {
      if (!fixed.allowed(value, policy)) throw new CacheConfigError(`${at(key)} must be ${fixed.meaning}, got ${describe(value)}`, at(key), policy);
      // A cache type read as a policy selects it, as a policy key would.
      if (CACHE_TYPE_KEYS.includes(key) && value !== 'DBCache') out.policy = policy;
      continue;
    }
    const target = keys.get(key);
    if (!target) {
      if (FOREIGN_SECTIONS.includes(key) || CACHE_SECTION_KEYS.includes(key) || CALIBRATOR_SECTION_KEYS.includes(key)) {
        throw new CacheConfigError(`section "${at(key)}" is not allowed here`, at(key), policy);
      }
      throw new CacheConfigError(`unknown key "${at(key)}"${suggestion(key, policy)}`, at(key), policy);
    }
    const field = target.name;
    const problem = target.spec.check(value);
    if (problem) throw new CacheConfigError(`${at(key)} must be ${problem}, got ${describe(value)}`, at(key), policy);
    const into = target.option ? options : out;
    if (field in into && !sameValue(into[field], value)) {
      throw new CacheConfigError(`${at(key)} and ${at(spelledAs[field])} both set ${field}, to different values`, at(key), policy);
    }
    into[field] = Array.isArray(value) ? Object.freeze([...value]) : value;
    spelledAs[field] = key;
  }
  if (Object.keys(options).length > 0) out.policyOptions = Object.freeze(options);
  switchCalibrator(switches, input, out, spelledAs, at, policy);
  // cache-dit's flat loader leaves the encoder forecast off unless its own key turns it on,
  // while its calibrator config (and a bare taylorseer_order) turns both streams on.
  if ('enable_taylorseer' in input && !('enableEncoderTaylorseer' in out)) out.enableEncoderTaylorseer = false;
  return out as CacheSettings;
}

/** Applies cache-dit's enable_foca / enable_dmd switches that are on to the settings read so far. */
function switchCalibrator(
  switches: Readonly<Record<string, boolean>>,
  input: Readonly<Record<string, unknown>>,
  out: Record<string, unknown>,
  spelledAs: Record<string, string>,
  at: (key: string) => string,
  policy: string,
): void {
  const on = Object.keys(CALIBRATOR_SWITCHES).filter((key) => switches[key]);
  if (input.enable_taylorseer === true) on.push('enable_taylorseer');
  if (on.length > 1) throw new CacheConfigError(`${on.map(at).join(' and ')} are both true; cache-dit takes one calibrator`, at(on[1]), policy);
  const key = on[0];
  const chosen = CALIBRATOR_SWITCHES[key];
  if (!chosen) return;
  const encoder = switches[chosen.encoderKey] ?? chosen.encoderDefault;
  for (const [field, value] of [
    ['enableTaylorseer', true],
    ['calibratorType', chosen.type],
    ['enableEncoderTaylorseer', encoder],
  ] as const) {
    // enable_taylorseer: false beside a switch is how cache-dit's own files say "not TaylorSeer".
    const overridable = field === 'enableTaylorseer' && spelledAs[field] === 'enable_taylorseer';
    if (field in out && out[field] !== value && !overridable) {
      throw new CacheConfigError(`${at(key)} and ${at(spelledAs[field])} both set ${field}, to different values`, at(key), policy);
    }
    out[field] = value;
    spelledAs[field] ??= key;
  }
}

/** Defaults filled in under the settings (later ones win), then cross-field checks. */
export function resolveConfig(...layers: readonly CacheSettings[]): CacheConfig {
  const given: CacheSettings = Object.assign({}, ...layers);
  const policy = given.policy ?? DBCACHE_POLICY;
  const config: CacheConfig = { ...DEFAULT_CACHE_CONFIG, ...policyFieldDefaults(policy), ...given, policyOptions: policyOptionsOf(policy, layers) };
  config.enableTaylorseer = given.enableTaylorseer ?? (given.taylorseerOrder !== undefined && given.taylorseerOrder > 0);
  if (config.enableTaylorseer && (config.taylorseerOrder < 1 || config.taylorseerOrder > 3)) {
    throw new CacheConfigError(`taylorseerOrder must be 1, 2 or 3 while TaylorSeer is on, got ${config.taylorseerOrder}`, 'taylorseerOrder');
  }
  if (config.enableTaylorseer) checkCalibratorKeys(config.calibratorType, given);
  return Object.freeze(config);
}

/** The keys only one calibrator reads; given with another one on, they would be silently ignored. */
const CALIBRATOR_ONLY_KEYS: Readonly<Record<CalibratorType, readonly (keyof CacheConfig)[]>> = {
  taylorseer: ['taylorseerOrder', 'taylorseerExpansion'],
  foca: [],
  dmd: ['dmdHistory', 'dmdRank', 'dmdRidge', 'dmdSvdPrecision'],
};

function checkCalibratorKeys(type: CalibratorType, given: CacheSettings): void {
  for (const [owner, keys] of Object.entries(CALIBRATOR_ONLY_KEYS)) {
    if (owner === type) continue;
    const key = keys.find((k) => given[k] !== undefined);
    if (key) throw new CacheConfigError(`${key} is a setting of calibratorType '${owner}', but the calibrator on is '${type}'`, key);
  }
}

/** A policy's defaults for the config's own fields (MagCache's Fn and Bn are 0), under what a config gives. */
function policyFieldDefaults(policy: string): Partial<CacheConfig> {
  const defaults = policyRegistry().get(policy)?.defaults ?? {};
  return Object.fromEntries(Object.entries(defaults).filter(([key]) => isField(key)));
}

/** The policy's defaults under every layer's options; options of another policy are refused. */
function policyOptionsOf(policy: string, layers: readonly CacheSettings[]): Readonly<Record<string, unknown>> {
  const registered = policyRegistry().get(policy);
  if (!registered) throw new CacheConfigError(`policy must be ${ENGINE_FIELDS.policy.check(policy)}, got ${describe(policy)}`, 'policy');
  const optionKeys = Object.keys(registered.keys).filter((k) => !isField(k));
  if (optionKeys.length === 0 && layers.every((l) => !l.policyOptions)) return DEFAULT_CACHE_CONFIG.policyOptions;
  const options: Record<string, unknown> = Object.fromEntries(optionKeys.map((k) => [k, registered.defaults[k]]));
  for (const layer of layers) {
    for (const [key, value] of Object.entries(layer.policyOptions ?? {})) {
      if (!(key in registered.keys)) throw new CacheConfigError(`${key} is not a key of policy '${policy}'`, key, policy);
      options[key] = value;
    }
  }
  return Object.freeze(options);
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

function suggestion(key: string, policy: string): string {
  const k = key.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const name of [...keysOf(policy).keys(), ...MODIFIERS_KEYS]) {
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
