// Pipelines whose model lives elsewhere (in a worker thread, another process) cannot be cached
// in place: they take the one-line API through this protocol and forward it to where the model is.
import type { CacheConfigInput } from './config.js';
import type { CacheSummary } from './stats.js';

/** The property under which a remote pipeline exposes its CacheDelegate. */
export const CACHE_DELEGATE: unique symbol = Symbol.for('ditcache.cacheDelegate');

export interface CacheDelegate {
  /** Enables caching where the model is (the config is already checked for keys and types). */
  enableCache(config: CacheConfigInput | string | undefined): void;
  disableCache(): boolean;
  /** The config in effect, or undefined when caching is off. */
  cacheConfig(): CacheConfigInput | string | undefined;
  /** Statistics of the last finished run, or undefined before one. */
  cacheSummary(details: boolean): CacheSummary | undefined;
}

export interface CacheDelegating {
  readonly [CACHE_DELEGATE]: CacheDelegate;
}

export function delegateOf(target: object): CacheDelegate | undefined {
  return (target as Partial<CacheDelegating>)[CACHE_DELEGATE];
}
