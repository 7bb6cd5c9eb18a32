// cache-dit's Dynamic Block Prune (DBPrune) as a cache policy: instead of deciding once per step
// for the whole Mn range, every block outside Fn, Bn and the listed ids is decided on its own, by
// how far its input moved since its last computed step (dbprune-rule.ts), and a pruned block adds
// the residuals it left then (pruned-chain.ts). Its keys are cache-dit's DBPruneConfig's.
import { boolean, nonNegative, nullable, type Check, type KeySpec } from './config-keys.js';
import { CacheConfigError, type CacheConfig } from './config.js';
import { DBCACHE_KEYS } from './dbcache-policy.js';
import { DBPRUNE_TUNING } from './dbprune-tuning.js';
import { DBPruneDecider, type DBPruneOptions } from './dbprune-rule.js';
import { registerPolicy, type CachePolicy, type CachePolicyFactory, type Stream } from './policy.js';
import { LastResidualStore, type ResidualStore } from './residual-store.js';
import type { TensorOps } from './tensor-ops.js';

export const DBPRUNE_POLICY = 'dbprune';

const blockIds: Check = (v) => (Array.isArray(v) && v.every((id) => Number.isInteger(id) && id >= 0) ? undefined : 'a list of block indices (integers >= 0)');

/**
 * DBCache's step gates that cache-dit's DBPrune applies per block, and DBPrune's own keys.
 * Left out: the steps mask and the calibrators (DBPrune reuses a block's last residuals as they
 * are), the accumulated-diff budget (DBPrune's record of diffs never accumulates, so it never
 * binds) and the 'plain' continuous counting (cache-dit's counter only).
 */
export const DBPRUNE_KEYS: Readonly<Record<string, KeySpec>> = {
  residualDiffThreshold: DBCACHE_KEYS.residualDiffThreshold,
  maxWarmupSteps: DBCACHE_KEYS.maxWarmupSteps,
  warmupInterval: DBCACHE_KEYS.warmupInterval,
  maxCachedSteps: DBCACHE_KEYS.maxCachedSteps,
  maxContinuousCachedSteps: DBCACHE_KEYS.maxContinuousCachedSteps,
  enableDynamicPruneThreshold: { snake: 'enable_dynamic_prune_threshold', check: boolean },
  maxDynamicPruneThreshold: { snake: 'max_dynamic_prune_threshold', check: nullable(nonNegative) },
  dynamicPruneThresholdRelaxRatio: { snake: 'dynamic_prune_threshold_relax_ratio', check: nonNegative },
  nonPruneBlockIds: { snake: 'non_prune_block_ids', check: blockIds },
};

/** cache-dit's defaults for DBPrune's own keys (the step gates keep DBCache's). */
export const DBPRUNE_DEFAULTS: Readonly<DBPruneOptions> = Object.freeze({
  enableDynamicPruneThreshold: false,
  maxDynamicPruneThreshold: null,
  dynamicPruneThresholdRelaxRatio: 1.25,
  nonPruneBlockIds: Object.freeze([]) as readonly number[],
});

class DBPrunePolicy implements CachePolicy {
  readonly cachingPossible: boolean;

  constructor(private readonly config: CacheConfig) {
    if (!config.cfgDiffComputeSeparate) {
      // cache-dit's DBPrune keeps a list of diffs per step, which its shared-diff path cannot reuse.
      throw new CacheConfigError(
        "policy 'dbprune' measures every block in each CFG branch: cfg_diff_compute_separate must be true",
        'cfgDiffComputeSeparate',
        DBPRUNE_POLICY,
      );
    }
    this.cachingPossible = config.residualDiffThreshold > 0;
  }

  createDecider(): DBPruneDecider {
    return new DBPruneDecider({ ...this.config, ...(this.config.policyOptions as unknown as DBPruneOptions) });
  }

  /** Unused: the chain keeps a pruned block's residuals per block (pruned-chain.ts). */
  createStore<T>(ops: TensorOps<T>): ResidualStore<T> {
    return new LastResidualStore(ops);
  }

  storesResidual(_stream: Stream): boolean {
    return true;
  }
}

@registerPolicy({ name: DBPRUNE_POLICY, keys: DBPRUNE_KEYS, defaults: DBPRUNE_DEFAULTS, tuning: DBPRUNE_TUNING })
export class DBPrunePolicyFactory implements CachePolicyFactory {
  create(config: CacheConfig): CachePolicy {
    return new DBPrunePolicy(config);
  }
}
