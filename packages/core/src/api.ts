// The one-line API.
import { resolveConfig, parseCacheConfig, type CacheConfig, type CacheConfigInput } from './config.js';
import { DBCACHE_POLICY } from './dbcache-policy.js';
import { delegateOf, type CacheDelegating } from './delegate.js';
import type { CacheHandle } from './handle.js';
import { CacheManager } from './manager.js';
import { policyRegistry } from './policy.js';
import { ditcacheContainer } from './registry.js';
import { SCM_POLICY } from './scm-policy.js';
import { summarize, type CacheSummary } from './stats.js';
import type { TransformerCallInfo } from './transformer-call.js';

ditcacheContainer.registerSingleton(CacheManager);

function manager(): CacheManager {
  return ditcacheContainer.resolve(CacheManager);
}

/**
 * Turns caching on for a pipeline or transformer instance (through its registered adapter) or
 * for a BlockAdapter. `config` is an object (camelCase or cache-dit snake_case keys) or JSON /
 * YAML text. Enabling an already cached target replaces its cache. A pipeline running in a
 * worker (a CacheDelegating target) gets the config checked here and applied where it runs,
 * before its next generate call; there is no local handle then.
 */
export function enableCache(target: CacheDelegating, config?: CacheConfigInput | string): void;
export function enableCache<T = unknown>(target: object, config?: CacheConfigInput | string): CacheHandle<T>;
export function enableCache<T = unknown>(target: object, config?: CacheConfigInput | string): CacheHandle<T> | void {
  const delegate = delegateOf(target);
  if (delegate) {
    if (config !== undefined) parseCacheConfig(config);
    delegate.enableCache(config);
    return;
  }
  return manager().enable<T>(target, config);
}

/** Restores the model exactly as it was; false when the target had no cache. */
export function disableCache(target: object): boolean {
  const delegate = delegateOf(target);
  return delegate ? delegate.disableCache() : manager().disable(target);
}

/** The cache of a pipeline, one of its transformers, or a BlockAdapter, if enabled. */
export function cacheHandleOf<T = unknown>(target: object): CacheHandle<T> | undefined {
  return manager().handleOf(target);
}

/**
 * Runs one transformer call of a pipeline: `forward` makes the call, and the cache enabled on
 * `transformer` (if any) learns from `call` which step and CFG branch it computes; without a
 * cache it just runs `forward`. Returns what `forward` returns. The pipeline's own loop, in
 * diffusers terms: `with cache_context(...)` around the call.
 */
export function runTransformerCall<R>(transformer: object, call: TransformerCallInfo, forward: () => R): R {
  const handle = manager().handleOf(transformer);
  return handle ? handle.runCall(call, forward, transformer) : forward();
}

/** Starts fresh state by hand, optionally under a new config. */
export function refreshContext(target: object, config?: CacheConfigInput | string): void {
  const handle = manager().handleOf(target);
  if (!handle) throw new TypeError('refreshContext: caching is not enabled on this object');
  handle.refresh(config);
}

export interface SummaryOptions {
  /** Add a table of every step's decision per context. */
  details?: boolean;
  /** Print the markdown (default console.log); false prints nothing. */
  print?: boolean | ((markdown: string) => void);
}

/** Statistics of the current (or last) run, printed as markdown and returned. */
export function summary(target: object, options: SummaryOptions = {}): CacheSummary {
  const delegate = delegateOf(target);
  const handle = delegate ? undefined : manager().handleOf(target);
  const details = options.details ?? false;
  const result = (delegate ? delegate.cacheSummary(details) : handle?.summary(details)) ?? summarize([], false);
  const print = options.print ?? true;
  if (print) (typeof print === 'function' ? print : console.log)(result.markdown);
  return result;
}

/**
 * A compact tag of the config (and of the result, `_S<cached steps>`, for a cached target),
 * for file names: e.g. DBCache_F1B0_W2I1M0MC2_R0.7_T1O1_S7.
 */
export function strify(target: object | string): string {
  const delegate = typeof target === 'object' ? delegateOf(target) : undefined;
  if (delegate) {
    const config = delegate.cacheConfig();
    if (config === undefined) throw new TypeError('strify: caching is not enabled on this pipeline');
    const run = delegate.cacheSummary(false);
    const tag = configTag(resolveConfig(parseCacheConfig(config).base));
    return run ? `${tag}_S${run.cachedSteps}` : tag;
  }
  const handle = typeof target === 'object' ? manager().handleOf(target) : undefined;
  const isConfig = typeof target === 'string' || [Object.prototype, null].includes(Object.getPrototypeOf(target));
  if (!handle && !isConfig) throw new TypeError('strify: caching is not enabled on this object (pass a cached target or a config)');
  const config = handle ? handle.baseConfig : resolveConfig(parseCacheConfig(target as CacheConfigInput | string).base);
  const tag = configTag(config);
  return handle ? `${tag}_S${handle.summary().cachedSteps}` : tag;
}

/** The calibrator's part of the tag, as cache-dit's calibrator configs write it. */
function calibratorTag(c: CacheConfig): string {
  if (!c.enableTaylorseer) return 'T0O0';
  if (c.calibratorType === 'foca') return 'FoCa';
  if (c.calibratorType === 'dmd') return `DMDH${c.dmdHistory}${c.dmdSvdPrecision === 'medium' ? '' : c.dmdSvdPrecision[0]}`;
  return `T1O${c.taylorseerOrder}`;
}

/**
 * DBCache's tag as cache-dit writes it. Another policy's name leads, DBCache's parts follow only
 * when the policy takes DBCache's keys, then its own options.
 */
function configTag(c: CacheConfig): string {
  const parts = [c.policy === DBCACHE_POLICY ? 'DBCache' : c.policy, `F${c.fnComputeBlocks}B${c.bnComputeBlocks}`];
  if ('residualDiffThreshold' in (policyRegistry().get(c.policy)?.keys ?? {})) {
    parts.push(
      `W${c.maxWarmupSteps}I${c.warmupInterval}M${Math.max(0, c.maxCachedSteps)}MC${Math.max(0, c.maxContinuousCachedSteps)}`,
      `R${c.residualDiffThreshold}`,
      calibratorTag(c),
    );
    if (c.stepsComputationMask) parts.push(`SCM${c.stepsComputationMask.join('')}`, c.stepsComputationPolicy);
    if (c.continuousCounting === 'plain') parts.push('CCplain');
    if (c.taylorseerExpansion === 'newton' && c.enableTaylorseer) parts.push('newton');
  }
  if (c.policy === SCM_POLICY) parts.push(c.stepsComputationPolicy);
  for (const [key, value] of Object.entries(c.policyOptions)) parts.push(`${key}-${Array.isArray(value) ? listTag(value) : value}`);
  return parts.join('_');
}

/**
 * A list option (MagCache's ratios) in a tag: its length and a digest of its values, so tags
 * (and the file names made from them) stay short and tell different lists apart.
 */
function listTag(values: readonly unknown[]): string {
  let hash = 0x811c9dc5;
  for (const ch of JSON.stringify(values)) hash = Math.imul(hash ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return `${values.length}x${hash.toString(16).padStart(8, '0')}`;
}
