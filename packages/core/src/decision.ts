// DBCache's per-step decision for one branch of one cache context, free of tensors: the
// tensor side supplies whether a reference exists and how to measure the diff.
import type { CacheConfig } from './config.js';

/** Why a step was computed in full. */
export type ComputeReason =
  | 'warmup'
  | 'mask'
  | 'max-cached'
  | 'max-continuous'
  | 'accumulated-diff'
  | 'threshold-off'
  | 'no-reference'
  | 'shape-changed'
  | 'diff-above-threshold';
/** Why a step reused the cache. */
export type CacheReason = 'static-mask' | 'threshold-always' | 'diff-below-threshold';

/** A reason of another cache policy, in its own words (shown by `summary`'s details). */
export type PolicyReason = string & {};

export type Decision =
  | { readonly cache: false; readonly reason: ComputeReason | PolicyReason; readonly diff?: number }
  | { readonly cache: true; readonly reason: CacheReason | PolicyReason; readonly diff?: number };

/** The diff of this step against the branch's reference, or undefined when shapes differ. */
export type MeasureDiff = () => number | undefined;

/** Decides the steps of one branch during one run, keeping the counters and history the rules need. */
export class BranchDecider {
  readonly cachedSteps: number[] = [];
  /** step -> relative L1 diff, for exactly the steps compared with the threshold. */
  readonly residualDiffs = new Map<number, number>();
  private continuous = 0;
  private accumulatedDiff = 0;

  constructor(private readonly config: CacheConfig) {}

  /**
   * Decides `step`, in this order: warmup, steps mask, max cached steps, max continuous cached
   * steps, accumulated-diff budget, threshold off, reference present, threshold >= 1, diff.
   */
  decide(step: number, hasReference: boolean, measure: MeasureDiff): Decision {
    const decision = this.rules(step, hasReference, measure);
    if (decision.cache) this.countCached(step);
    else if (this.config.continuousCounting === 'plain') this.continuous = 0;
    return decision;
  }

  private rules(step: number, hasReference: boolean, measure: MeasureDiff): Decision {
    const c = this.config;
    if (this.inWarmup(step)) return { cache: false, reason: 'warmup' };

    const mask = c.stepsComputationMask;
    if (mask && step < mask.length) {
      if (mask[step] === 1) return { cache: false, reason: 'mask' };
      if (c.stepsComputationPolicy === 'static') {
        return hasReference ? { cache: true, reason: 'static-mask' } : { cache: false, reason: 'no-reference' };
      }
    }

    if (c.maxCachedSteps >= 0 && this.cachedSteps.length >= c.maxCachedSteps) return { cache: false, reason: 'max-cached' };
    if (c.maxContinuousCachedSteps >= 0 && this.continuous >= c.maxContinuousCachedSteps) {
      this.continuous = 0;
      return { cache: false, reason: 'max-continuous' };
    }
    const budget = c.maxAccumulatedResidualDiffThreshold;
    if (budget !== null && budget > 0 && this.accumulatedDiff >= budget) return { cache: false, reason: 'accumulated-diff' };
    if (c.residualDiffThreshold <= 0) return { cache: false, reason: 'threshold-off' };
    if (!hasReference) return { cache: false, reason: 'no-reference' };
    if (c.residualDiffThreshold >= 1) return { cache: true, reason: 'threshold-always' };

    const diff = measure();
    if (diff === undefined) return { cache: false, reason: 'shape-changed' };
    this.residualDiffs.set(step, diff);
    if (diff > 0) this.accumulatedDiff += diff;
    return diff < c.residualDiffThreshold ? { cache: true, reason: 'diff-below-threshold', diff } : { cache: false, reason: 'diff-above-threshold', diff };
  }

  private inWarmup(step: number): boolean {
    const c = this.config;
    let warmup = c.maxWarmupSteps;
    // A mask that starts with fewer compute steps than the warmup shortens the warmup.
    if (c.stepsComputationMask) {
      const leadingOnes = c.stepsComputationMask.findIndex((m) => m !== 1);
      warmup = Math.min(warmup, leadingOnes === -1 ? c.stepsComputationMask.length : leadingOnes);
    }
    return step < warmup && step % c.warmupInterval === 0;
  }

  private countCached(step: number): void {
    if (this.config.continuousCounting === 'plain') {
      this.continuous += 1;
    } else {
      // cache-dit's counter: 1 at the first cached step of the run; +1 for a cached step right
      // after a cached step, +2 when the counter was 0 (so after a forced compute only
      // max-1 further steps pass); unchanged by a cached step after a gap.
      const last = this.cachedSteps.at(-1);
      if (last === undefined) this.continuous += 1;
      else if (step - last === 1) this.continuous += this.continuous === 0 ? 2 : 1;
    }
    this.cachedSteps.push(step);
  }
}
