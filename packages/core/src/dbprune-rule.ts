// cache-dit's Dynamic Block Prune (DBPrune) decision for one branch of one cache context, free of
// tensors: block by block inside a step, a block whose input moved less than the threshold since
// its last computed step is pruned (its residuals reused). The step gates are DBCache's (warmup,
// max cached steps, max continuous cached steps), applied per block with the counters as they
// stand at that block, so a limit reached mid-step stops the rest of that step's pruning.
import type { CacheConfig } from './config.js';
import type { Decision, MeasureDiff } from './decision.js';
import type { BlockPruningDecider } from './policy.js';

/** DBPrune's own keys (the policy's options). */
export interface DBPruneOptions {
  /** Raise the threshold toward the mean of the step's first diffs (times the relax ratio). */
  readonly enableDynamicPruneThreshold: boolean;
  /** The dynamic threshold is used only below this (null: twice residualDiffThreshold). */
  readonly maxDynamicPruneThreshold: number | null;
  readonly dynamicPruneThresholdRelaxRatio: number;
  /** Blocks never pruned, besides the Fn and Bn blocks. */
  readonly nonPruneBlockIds: readonly number[];
}

export type DBPruneRuleConfig = Pick<
  CacheConfig,
  'fnComputeBlocks' | 'bnComputeBlocks' | 'residualDiffThreshold' | 'maxWarmupSteps' | 'warmupInterval' | 'maxCachedSteps' | 'maxContinuousCachedSteps'
> &
  DBPruneOptions;

/** cache-dit considers the first diffs of a step only, these many, for the dynamic threshold. */
const DYNAMIC_THRESHOLD_DIFFS = 5;

/** Diffs recorded where nothing was measured, as cache-dit records them: threshold >= 1, shape changed. */
const ALWAYS_SIMILAR = -1;
const SHAPE_CHANGED = -2;

/**
 * The threshold a block of a step is compared with: residualDiffThreshold, or with the dynamic
 * threshold on, the mean of the step's first five positive diffs times the relax ratio when that
 * lies between residualDiffThreshold and its cap.
 */
export function pruneThreshold(config: DBPruneRuleConfig, stepDiffs: readonly number[] | undefined): number {
  const base = config.residualDiffThreshold;
  if (!config.enableDynamicPruneThreshold || stepDiffs === undefined) return base;
  const positive = stepDiffs.slice(0, DYNAMIC_THRESHOLD_DIFFS).filter((d) => d > 0);
  if (positive.length === 0) return base;
  const relaxed = (positive.reduce((a, b) => a + b, 0) / positive.length) * config.dynamicPruneThresholdRelaxRatio;
  const cap = config.maxDynamicPruneThreshold ?? 2 * base;
  return relaxed < cap ? Math.max(relaxed, base) : base;
}

/** The blocks DBPrune never prunes in a chain of `blockCount`: the Fn and Bn blocks and the listed ids. */
export function nonPrunableBlocks(config: DBPruneRuleConfig, blockCount: number): Set<number> {
  const fn = Math.min(config.fnComputeBlocks, blockCount);
  const bn = Math.min(config.bnComputeBlocks, blockCount);
  const ids = new Set(config.nonPruneBlockIds.filter((id) => id < blockCount));
  for (let i = 0; i < fn; i++) ids.add(i);
  for (let i = blockCount - bn; i < blockCount; i++) ids.add(i);
  return ids;
}

export class DBPruneDecider implements BlockPruningDecider {
  /** Steps where at least one block was pruned (cache-dit's pruned steps). */
  readonly cachedSteps: number[] = [];
  /** Left empty: DBPrune measures per block, not per step (stepDiffs, shown by `summary` as the report's blockDiffs). */
  readonly residualDiffs = new Map<number, number>();
  /** step -> every diff recorded in it, in block order, cache-dit's markers (-1, -2) included. */
  readonly stepDiffs = new Map<number, number[]>();
  readonly prunedBlocks = new Map<number, number[]>();
  private continuous = 0;
  private nonPrunable: { blockCount: number; ids: Set<number> } | undefined;

  constructor(private readonly config: DBPruneRuleConfig) {}

  /** Runs with nothing to prune compute every block; the chain asks per block otherwise. */
  decide(): Decision {
    return { cache: false, reason: 'threshold-off' };
  }

  enterStep(step: number): void {
    if (!this.prunedBlocks.has(step)) this.prunedBlocks.set(step, []);
  }

  prunable(block: number, blockCount: number): boolean {
    if (this.nonPrunable?.blockCount !== blockCount) this.nonPrunable = { blockCount, ids: nonPrunableBlocks(this.config, blockCount) };
    return !this.nonPrunable.ids.has(block);
  }

  /**
   * In cache-dit's order: warmup, max cached steps, max continuous cached steps (reaching it
   * resets the counter and computes the block), threshold off, no reference, threshold >= 1,
   * changed shape, diff below threshold. The dynamic threshold reads the main branch's diffs of
   * the step, in both branches, as cache-dit does.
   */
  pruneBlock(step: number, block: number, hasReference: boolean, measure: MeasureDiff, main: BlockPruningDecider | undefined): boolean {
    const pruned = this.rule(step, hasReference, measure, main);
    if (pruned) {
      const blocks = this.prunedBlocks.get(step) ?? [];
      blocks.push(block);
      this.prunedBlocks.set(step, blocks);
      if (this.cachedSteps.at(-1) !== step) this.countPrunedStep(step);
    }
    return pruned;
  }

  /** Every diff recorded, per step (cache-dit's per-block residual diffs), shown by `summary` as the branch's report. */
  report(): Readonly<Record<string, unknown>> {
    return { blockDiffs: Object.fromEntries([...this.stepDiffs].map(([step, diffs]) => [String(step), [...diffs]])) };
  }

  /** Diffs of `step` the dynamic threshold reads. */
  diffsOf(step: number): readonly number[] | undefined {
    return this.stepDiffs.get(step);
  }

  private rule(step: number, hasReference: boolean, measure: MeasureDiff, main: BlockPruningDecider | undefined): boolean {
    const c = this.config;
    if (step < c.maxWarmupSteps && step % c.warmupInterval === 0) return false;
    if (c.maxCachedSteps >= 0 && this.cachedSteps.length >= c.maxCachedSteps) return false;
    if (c.maxContinuousCachedSteps >= 0 && this.continuous >= c.maxContinuousCachedSteps) {
      this.continuous = 0;
      return false;
    }
    const source = main instanceof DBPruneDecider ? main : this;
    const threshold = pruneThreshold(c, source.diffsOf(step));
    if (threshold <= 0 || !hasReference) return false;
    if (threshold >= 1) {
      this.record(step, ALWAYS_SIMILAR);
      return true;
    }
    const diff = measure();
    this.record(step, diff ?? SHAPE_CHANGED);
    return diff !== undefined && diff < threshold;
  }

  private record(step: number, diff: number): void {
    const diffs = this.stepDiffs.get(step);
    if (diffs) diffs.push(diff);
    else this.stepDiffs.set(step, [diff]);
  }

  /**
   * cache-dit's continuous counter, as DBCache counts it: 1 at the first pruned step of the run,
   * +1 for a pruned step right after one, +2 when the counter was 0, unchanged after a gap.
   */
  private countPrunedStep(step: number): void {
    const last = this.cachedSteps.at(-1);
    if (last === undefined) this.continuous += 1;
    else if (step - last === 1) this.continuous += this.continuous === 0 ? 2 : 1;
    this.cachedSteps.push(step);
  }
}
