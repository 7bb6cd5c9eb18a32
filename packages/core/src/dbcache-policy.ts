// The built-in policy: cache-dit's DBCache decision rules (decision.ts) with its residual reuse
// or a TaylorSeer forecast (residual-store.ts). Its keys stay the cache config's own fields, as
// they were before policies existed, so every existing config keeps its meaning.
import { boolean, integer, mask, nonNegative, nullable, oneOf, type KeySpec } from './config-keys.js';
import type { CacheConfig, CalibratorConfig, DBCacheConfig, TaylorSeerConfig } from './config.js';
import { DBCACHE_TUNING } from './dbcache-tuning.js';
import { BranchDecider } from './decision.js';
import { DmdCalibrator } from './dmd-calibrator.js';
import { FoCaCalibrator } from './foca-calibrator.js';
import { registerPolicy, type CachePolicy, type CachePolicyFactory, type Stream } from './policy.js';
import { LastResidualStore, taylorSeerResidualStore, type ResidualStore } from './residual-store.js';
import type { TensorOps } from './tensor-ops.js';

export const DBCACHE_POLICY = 'dbcache';

/** Keys of the config that the engine reads whatever the policy (block ranges, CFG branches, runs). */
export type EngineKey = 'fnComputeBlocks' | 'bnComputeBlocks' | 'enableSeparateCfg' | 'cfgComputeFirst' | 'cfgDiffComputeSeparate' | 'numInferenceSteps';

export type DBCacheKey = Exclude<keyof (DBCacheConfig & TaylorSeerConfig & CalibratorConfig), EngineKey>;

export const DBCACHE_KEYS: { readonly [K in DBCacheKey]: KeySpec } = {
  residualDiffThreshold: { snake: 'residual_diff_threshold', check: nonNegative },
  maxAccumulatedResidualDiffThreshold: { snake: 'max_accumulated_residual_diff_threshold', check: nullable(nonNegative) },
  maxWarmupSteps: { snake: 'max_warmup_steps', check: integer(0) },
  warmupInterval: { snake: 'warmup_interval', check: integer(1) },
  maxCachedSteps: { snake: 'max_cached_steps', check: integer(-1) },
  maxContinuousCachedSteps: { snake: 'max_continuous_cached_steps', check: integer(-1) },
  continuousCounting: { snake: 'continuous_counting', check: oneOf('cache-dit', 'plain') },
  stepsComputationMask: { snake: 'steps_computation_mask', check: nullable(mask) },
  stepsComputationPolicy: { snake: 'steps_computation_policy', check: oneOf('dynamic', 'static') },
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
  calibratorType: { snake: 'calibrator_type', check: oneOf('taylorseer', 'foca', 'dmd') },
  dmdHistory: { snake: 'dmd_history', check: integer(1) },
  dmdRank: { snake: 'dmd_rank', check: integer(0) },
  dmdRidge: { snake: 'dmd_ridge', check: nonNegative },
  dmdSvdPrecision: { snake: 'dmd_svd_precision', check: oneOf('low', 'medium', 'high') },
};

/** cache-dit's defaults. */
export const DBCACHE_DEFAULTS: Readonly<Pick<CacheConfig, DBCacheKey>> = Object.freeze({
  residualDiffThreshold: 0.08,
  maxAccumulatedResidualDiffThreshold: null,
  maxWarmupSteps: 8,
  warmupInterval: 1,
  maxCachedSteps: -1,
  maxContinuousCachedSteps: -1,
  continuousCounting: 'cache-dit',
  stepsComputationMask: null,
  stepsComputationPolicy: 'dynamic',
  enableTaylorseer: false,
  enableEncoderTaylorseer: true,
  taylorseerCacheType: 'residual',
  taylorseerOrder: 1,
  taylorseerExpansion: 'cache-dit',
  calibratorType: 'taylorseer',
  dmdHistory: 6,
  dmdRank: 0,
  dmdRidge: 1e-8,
  dmdSvdPrecision: 'medium',
});

class DBCachePolicy implements CachePolicy {
  readonly cachingPossible: boolean;

  constructor(private readonly config: CacheConfig) {
    const c = config;
    this.cachingPossible = c.residualDiffThreshold > 0 || (c.stepsComputationPolicy === 'static' && (c.stepsComputationMask?.includes(0) ?? false));
  }

  createDecider(): BranchDecider {
    return new BranchDecider(this.config);
  }

  createStore<T>(ops: TensorOps<T>, stream: Stream): ResidualStore<T> {
    const c = this.config;
    if (!this.forecasts(stream)) return new LastResidualStore(ops);
    if (c.calibratorType === 'foca') return new FoCaCalibrator(ops);
    if (c.calibratorType === 'dmd') return new DmdCalibrator(ops, { history: c.dmdHistory, rank: c.dmdRank, ridge: c.dmdRidge });
    return taylorSeerResidualStore(ops, c.taylorseerOrder, c.taylorseerExpansion);
  }

  /** A calibrator in 'hidden_states' mode forecasts the Mn output rather than its residual. */
  storesResidual(stream: Stream): boolean {
    return !this.forecasts(stream) || this.config.taylorseerCacheType === 'residual';
  }

  private forecasts(stream: Stream): boolean {
    const c = this.config;
    return c.enableTaylorseer && (stream === 'hidden' || c.enableEncoderTaylorseer);
  }
}

@registerPolicy({ name: DBCACHE_POLICY, keys: DBCACHE_KEYS, defaults: DBCACHE_DEFAULTS, tuning: DBCACHE_TUNING })
export class DBCachePolicyFactory implements CachePolicyFactory {
  create(config: CacheConfig): CachePolicy {
    return new DBCachePolicy(config);
  }
}
