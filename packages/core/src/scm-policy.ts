// cache-dit 1.5's steps computation masks (SCM) as a policy: DBCache whose steps mask comes from
// a named preset (slow / medium / fast / ultra) at the run's step count, exactly the mask
// cache-dit's `steps_mask` gives (scm-masks.ts). On a mask's 0 steps 'static' caches and
// 'dynamic' decides by the diff, as DBCache does with a mask given as a list.
import { oneOf, type KeySpec } from './config-keys.js';
import type { CacheConfig } from './config.js';
import { DBCACHE_KEYS, DBCachePolicyFactory, type DBCacheKey } from './dbcache-policy.js';
import { BranchDecider } from './decision.js';
import { registerPolicy, type CachePolicy, type CachePolicyFactory, type RunInfo, type StepDecider, type Stream } from './policy.js';
import type { ResidualStore } from './residual-store.js';
import { SCM_MASKS, SCM_PRESETS, type ScmPreset } from './scm-masks.js';
import { SCM_TUNING } from './scm-tuning.js';
import type { TensorOps } from './tensor-ops.js';

export const SCM_POLICY = 'scm';

/** DBCache's keys but the explicit mask, which the preset replaces, and the preset itself. */
export const SCM_KEYS: Readonly<Record<Exclude<DBCacheKey, 'stepsComputationMask'> | 'maskPolicy', KeySpec>> = {
  ...(Object.fromEntries(Object.entries(DBCACHE_KEYS).filter(([k]) => k !== 'stepsComputationMask')) as Record<
    Exclude<DBCacheKey, 'stepsComputationMask'>,
    KeySpec
  >),
  maskPolicy: { snake: 'mask_policy', check: oneOf(...SCM_PRESETS) },
};

/** The mask cache-dit's preset gives for a run of `steps` steps, 1 = compute, 0 = may cache. */
export function scmMask(preset: ScmPreset, steps: number): readonly number[] {
  const mask = SCM_MASKS[preset][steps];
  if (mask === undefined) {
    const counts = Object.keys(SCM_MASKS[preset]).map(Number);
    throw new RangeError(`steps computation mask '${preset}': cache-dit's presets cover 4, 6 and ${counts[2]}-${counts.at(-1)} steps, not ${steps}`);
  }
  return [...mask].map(Number);
}

class ScmPolicy implements CachePolicy {
  readonly cachingPossible: boolean;
  private readonly dbcache: CachePolicy;
  /** step count -> the config with its mask, shared by the branches and runs of that length. */
  private readonly masks = new Map<number, CacheConfig>();

  constructor(private readonly config: CacheConfig) {
    this.dbcache = new DBCachePolicyFactory().create(config);
    // Every preset mask has 0 steps, which 'static' caches whatever the threshold.
    this.cachingPossible = config.residualDiffThreshold > 0 || config.stepsComputationPolicy === 'static';
  }

  createDecider(run: RunInfo): StepDecider {
    if (run.numSteps === undefined) {
      throw new Error("cache policy 'scm' needs the run's step count: run the transformer from a pipeline that announces numSteps, or set numInferenceSteps");
    }
    let config = this.masks.get(run.numSteps);
    if (!config) {
      const preset = this.config.policyOptions.maskPolicy as ScmPreset;
      config = Object.freeze({ ...this.config, stepsComputationMask: scmMask(preset, run.numSteps) });
      this.masks.set(run.numSteps, config);
    }
    return new BranchDecider(config);
  }

  createStore<T>(ops: TensorOps<T>, stream: Stream): ResidualStore<T> {
    return this.dbcache.createStore(ops, stream);
  }

  storesResidual(stream: Stream): boolean {
    return this.dbcache.storesResidual(stream);
  }
}

// cache-dit's `steps_mask` defaults to 'medium'.
@registerPolicy({ name: SCM_POLICY, keys: SCM_KEYS, defaults: { maskPolicy: 'medium' }, tuning: SCM_TUNING })
export class ScmPolicyFactory implements CachePolicyFactory {
  create(config: CacheConfig): CachePolicy {
    return new ScmPolicy(config);
  }
}
