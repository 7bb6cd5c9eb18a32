// The 'dbprune' policy (cache-dit's Dynamic Block Prune): its threshold and non-prunable blocks,
// its per-block gates on hand-made sequences (including cache-dit's mid-step limits and the CFG
// branch's threshold following the main branch's diffs), its keys, and on the engine: a pruned
// block adds the residual it left at its last computed step, a run that prunes nothing is bit for
// bit the uncached run, and every tensor is freed. The FLUX and Wan adapters' tests compare it
// with cache-dit end to end.
import { describe, expect, it } from 'vitest';

import {
  BlockAdapter,
  CacheConfigError,
  DBCACHE_TUNING,
  DBPRUNE_TUNING,
  DBPruneDecider,
  disableCache,
  enableCache,
  ForwardPattern,
  nonPrunableBlocks,
  parseCacheConfig,
  pruneThreshold,
  resolveConfig,
  summary,
  type DBPruneRuleConfig,
} from '../src/index.js';
import { PlainTensorOps, type PlainTensor } from '../src/testing.js';
import { AdditiveBlock, toyPipeline } from './toy-models.js';

const PATTERNS = [0, 1, 2, 3, 4, 5] as ForwardPattern[];

const RULE: DBPruneRuleConfig = {
  fnComputeBlocks: 1,
  bnComputeBlocks: 0,
  residualDiffThreshold: 0.12,
  maxWarmupSteps: 1,
  warmupInterval: 1,
  maxCachedSteps: -1,
  maxContinuousCachedSteps: -1,
  enableDynamicPruneThreshold: false,
  maxDynamicPruneThreshold: null,
  dynamicPruneThresholdRelaxRatio: 1.25,
  nonPruneBlockIds: [],
};

/** Decides blocks 1..diffs.length of one step, block i measuring diffs[i - 1]; returns the pruned ones. */
function decideStep(decider: DBPruneDecider, step: number, diffs: (number | undefined)[], main?: DBPruneDecider): number[] {
  decider.enterStep(step);
  return diffs.flatMap((d, i) => (decider.pruneBlock(step, i + 1, true, () => d, main) ? [i + 1] : []));
}

describe('the dbprune decision rule', () => {
  it('the dynamic threshold: the mean of the first five positive diffs times the relax ratio, used between the threshold and its cap', () => {
    const dynamic = { ...RULE, enableDynamicPruneThreshold: true };
    // First five: 0.1, 0.2, -1 (a marker, left out), 0.3, 0.05 -> mean 0.1625, relaxed 0.203125 < cap 0.24.
    expect(pruneThreshold(dynamic, [0.1, 0.2, -1, 0.3, 0.05, 0.9])).toBeCloseTo(0.203125, 12);
    expect(pruneThreshold(RULE, [0.1, 0.2, -1, 0.3, 0.05, 0.9])).toBe(0.12);
    expect(pruneThreshold({ ...dynamic, maxDynamicPruneThreshold: 0.2 }, [0.1, 0.2, -1, 0.3, 0.05])).toBe(0.12);
    expect(pruneThreshold({ ...dynamic, residualDiffThreshold: 0.1 }, [0.1, 0.2, -1, 0.3, 0.05])).toBe(0.1); // 0.203 >= 2 x 0.1
    expect(pruneThreshold(dynamic, [0.01])).toBe(0.12); // never below the threshold
    expect(pruneThreshold(dynamic, [-1, -2])).toBe(0.12);
    expect(pruneThreshold(dynamic, undefined)).toBe(0.12);
  });

  it('never prunes the Fn and Bn blocks and the listed ids (those past the chain ignored)', () => {
    expect([...nonPrunableBlocks({ ...RULE, fnComputeBlocks: 2, bnComputeBlocks: 1, nonPruneBlockIds: [3, 9] }, 6)].sort()).toEqual([0, 1, 3, 5]);
    expect([...nonPrunableBlocks({ ...RULE, fnComputeBlocks: 8 }, 4)].sort()).toEqual([0, 1, 2, 3]);
    const decider = new DBPruneDecider({ ...RULE, nonPruneBlockIds: [2] });
    expect([0, 1, 2, 3].map((b) => decider.prunable(b, 4))).toEqual([false, true, false, true]);
  });

  it('prunes a block below the threshold after warmup, with a reference, recording every diff', () => {
    const decider = new DBPruneDecider({ ...RULE, maxWarmupSteps: 2 });
    const never = () => {
      throw new Error('measured in warmup');
    };
    decider.enterStep(0);
    expect(decider.pruneBlock(0, 1, true, never, undefined)).toBe(false);
    expect(decideStep(decider, 2, [0.05, 0.2, 0.119, 0.121])).toEqual([1, 3]);
    decider.enterStep(3);
    expect(decider.pruneBlock(3, 1, false, never, undefined)).toBe(false); // no reference: nothing measured
    expect(decider.pruneBlock(3, 2, true, () => undefined, undefined)).toBe(false); // shape changed: -2
    expect(decider.cachedSteps).toEqual([2]);
    expect(Object.fromEntries(decider.prunedBlocks)).toEqual({ 0: [], 2: [1, 3], 3: [] });
    expect(decider.report().blockDiffs).toEqual({ 2: [0.05, 0.2, 0.119, 0.121], 3: [-2] });
  });

  it('a threshold of 1 or more prunes without measuring, recording -1', () => {
    const decider = new DBPruneDecider({ ...RULE, residualDiffThreshold: 1 });
    expect(decideStep(decider, 1, [5, 7])).toEqual([1, 2]);
    expect(decider.report().blockDiffs).toEqual({ 1: [-1, -1] });
  });

  it('max cached steps counts steps with a pruned block, and stops pruning mid-step once reached', () => {
    const decider = new DBPruneDecider({ ...RULE, maxCachedSteps: 2 });
    expect(decideStep(decider, 1, [0.01, 0.01, 0.01])).toEqual([1, 2, 3]);
    // The second pruned step reaches the limit at its first pruned block.
    expect(decideStep(decider, 2, [0.5, 0.01, 0.01])).toEqual([2]);
    expect(decideStep(decider, 3, [0.01, 0.01, 0.01])).toEqual([]);
    expect(decider.cachedSteps).toEqual([1, 2]);
  });

  it("max continuous cached steps: reaching it computes that block and resets cache-dit's counter, so later blocks of the step may prune", () => {
    const decider = new DBPruneDecider({ ...RULE, maxContinuousCachedSteps: 1 });
    expect(decideStep(decider, 1, [0.01, 0.01, 0.01])).toEqual([1, 3]);
    // Step 2 follows a pruned step: the counter goes 0 -> 2, so block 2 computes and resets it.
    expect(decideStep(decider, 2, [0.01, 0.01, 0.01])).toEqual([1, 3]);
    expect(decider.cachedSteps).toEqual([1, 2]);
  });

  it("the CFG branch's dynamic threshold follows the main branch's diffs of the step, as cache-dit's", () => {
    const dynamic = { ...RULE, enableDynamicPruneThreshold: true };
    const main = new DBPruneDecider(dynamic);
    const cfg = new DBPruneDecider(dynamic);
    // Main: 0.16 -> threshold 0.2 for its block 2, which prunes at 0.19.
    expect(decideStep(main, 1, [0.16, 0.19])).toEqual([2]);
    // CFG: main's 0.16 and 0.19 give 0.21875 for both its blocks; its own diffs would give 0.12, then 0.1625.
    expect(decideStep(cfg, 1, [0.13, 0.2], main)).toEqual([1, 2]);
    expect(decideStep(new DBPruneDecider(dynamic), 1, [0.13, 0.2])).toEqual([]);
  });
});

describe('the dbprune keys', () => {
  it("takes cache-dit's DBPruneConfig keys, snake_case or camelCase, with its defaults", () => {
    const snake = resolveConfig(
      parseCacheConfig({
        policy: 'dbprune',
        residual_diff_threshold: 0.1,
        enable_dynamic_prune_threshold: true,
        max_dynamic_prune_threshold: 0.3,
        non_prune_block_ids: [2, 5],
      }).base,
    );
    const camel = resolveConfig(
      parseCacheConfig({
        policy: 'dbprune',
        residualDiffThreshold: 0.1,
        enableDynamicPruneThreshold: true,
        maxDynamicPruneThreshold: 0.3,
        nonPruneBlockIds: [2, 5],
      }).base,
    );
    expect(camel).toEqual(snake);
    expect(snake.residualDiffThreshold).toBe(0.1);
    expect(snake.policyOptions).toEqual({
      enableDynamicPruneThreshold: true,
      maxDynamicPruneThreshold: 0.3,
      dynamicPruneThresholdRelaxRatio: 1.25,
      nonPruneBlockIds: [2, 5],
    });
    expect(resolveConfig(parseCacheConfig({ policy: 'dbprune' }).base).policyOptions).toEqual({
      enableDynamicPruneThreshold: false,
      maxDynamicPruneThreshold: null,
      dynamicPruneThresholdRelaxRatio: 1.25,
      nonPruneBlockIds: [],
    });
  });

  it("reads cache-dit's cache_type: DBPrune as the policy, flat or in a cache_config section", () => {
    const keys = { Fn_compute_blocks: 2, residual_diff_threshold: 0.1, non_prune_block_ids: [3] };
    const named = resolveConfig(parseCacheConfig({ policy: 'dbprune', ...keys }).base);
    expect(resolveConfig(parseCacheConfig({ cache_type: 'DBPrune', ...keys }).base)).toEqual(named);
    expect(resolveConfig(parseCacheConfig({ cache_config: { cache_type: 'DBPrune', ...keys } }).base)).toEqual(named);
    expect(
      resolveConfig(
        parseCacheConfig(`cache_config:\n  cache_type: DBPrune\n  Fn_compute_blocks: 2\n  residual_diff_threshold: 0.1\n  non_prune_block_ids: [3]\n`).base,
      ),
    ).toEqual(named);
    expect(named.policy).toBe('dbprune');
    expect(named.policyOptions.nonPruneBlockIds).toEqual([3]);
  });

  it('refuses what DBPrune does not take, naming the key and listing the valid ones', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ steps_computation_mask: [1, 0] }, /unknown key "steps_computation_mask".*\n.*non_prune_block_ids/],
      [{ enable_taylorseer: true }, /unknown key "enable_taylorseer"/],
      [{ non_prune_block_ids: [-1] }, /non_prune_block_ids must be a list of block indices/],
      [{ dynamic_prune_threshold_relax_ratio: 'high' }, /dynamic_prune_threshold_relax_ratio must be a finite number >= 0/],
      [{ max_dynamic_prune_threshold: -1 }, /max_dynamic_prune_threshold must be a finite number >= 0 or null/],
    ];
    for (const [settings, message] of bad) expect(() => parseCacheConfig({ policy: 'dbprune', ...settings })).toThrow(message);
  });

  it('refuses a CFG branch that would reuse the main branch diffs', () => {
    const ops = new PlainTensorOps();
    const transformer = { blocks: [1, 2].map((c) => new AdditiveBlock(ops, c, (s) => s)) };
    const adapter = new BlockAdapter({ transformer, blocks: 'blocks', forwardPattern: ForwardPattern.Pattern_3, ops });
    expect(() => enableCache(adapter, { policy: 'dbprune', cfg_diff_compute_separate: false })).toThrow(CacheConfigError);
  });
});

describe('the dbprune tuning hints', () => {
  it("bisect the threshold in three structures, each a valid dbprune config at both ends of the knob, with dbcache's warmup", () => {
    const variants = DBPRUNE_TUNING.variants({ steps: 28 });
    const warmup = DBCACHE_TUNING.variants({ steps: 28 })[0].config.max_warmup_steps;
    expect(variants.map((v) => v.name)).toEqual(['F1B0', 'F1B1', 'F1B0-dynamic']);
    for (const variant of variants) {
      expect(variant.knob).toEqual({ key: 'residual_diff_threshold', range: [0.02, 1], scale: 'log' });
      for (const threshold of [0.02, 1]) {
        const config = resolveConfig(parseCacheConfig({ ...variant.config, residual_diff_threshold: threshold }).base);
        expect(config.policy).toBe('dbprune');
        expect(config.residualDiffThreshold).toBe(threshold);
        expect(config.maxWarmupSteps).toBe(warmup);
      }
    }
    const dynamic = resolveConfig(parseCacheConfig(variants[2].config).base);
    expect(dynamic.policyOptions.enableDynamicPruneThreshold).toBe(true);
  });

  it('hand cache-dit the config with cache_type: DBPrune, which ditcache reads back as the same config', () => {
    const config = { ...DBPRUNE_TUNING.variants({ steps: 28 })[2].config, residual_diff_threshold: 0.15 };
    const cacheDit = DBPRUNE_TUNING.cacheDitForm!(config, { steps: 28 });
    expect(cacheDit).toEqual({ cache_type: 'DBPrune', ...config, policy: undefined });
    expect(cacheDit).not.toHaveProperty('policy');
    expect(resolveConfig(parseCacheConfig(cacheDit).base)).toEqual(resolveConfig(parseCacheConfig(config).base));
  });
});

describe('dbprune on the engine', () => {
  it('a pruned block adds the residual it left at its last computed step; Fn and Bn blocks always run', () => {
    const ops = new PlainTensorOps();
    const f = (step: number) => 1 + step * step;
    const coefficients = [0.5, 1, 2, 0.25];
    const transformer = { blocks: coefficients.map((c) => new AdditiveBlock(ops, c, f)) };
    // Threshold 1: every prunable block (1 and 2) is pruned once computed, for at most 2 steps.
    const config = { policy: 'dbprune', Fn_compute_blocks: 1, Bn_compute_blocks: 1, max_warmup_steps: 1, residual_diff_threshold: 1, max_cached_steps: 2 };
    enableCache(new BlockAdapter({ transformer, blocks: 'blocks', forwardPattern: ForwardPattern.Pattern_3, ops }), { numInferenceSteps: 5, ...config });
    const x = ops.tensor([1, 2, 3], [1, 3]);
    const outputs = Array.from({ length: 5 }, (_, step) => {
      const out = transformer.blocks[0].forward(x, step);
      const values = Array.from(out.values());
      out.dispose();
      return values;
    });
    const stats = summary(transformer, { print: false });
    disableCache(transformer);
    x.dispose();
    expect(ops.liveCount).toBe(0);
    // Blocks 1 and 2 (coefficients 1 and 2) computed at step 0 and pruned at step 1; at step 2,
    // block 1's pruning makes it the second pruned step, which stops pruning mid-step (cache-dit's
    // limit is checked per block), so block 2 computes; both compute after.
    const residualStep = { 1: [0, 0, 0, 3, 4], 2: [0, 0, 2, 3, 4] };
    outputs.forEach((values, step) => {
      const scale = (0.5 + 0.25) * f(step) + 1 * f(residualStep[1][step]) + 2 * f(residualStep[2][step]);
      values.forEach((v, i) => expect(v).toBeCloseTo(x.data[i] + scale * (1 + 0.1 * i), 12));
    });
    const [context] = stats.contexts;
    expect(context.branches[0].prunedBlocks).toEqual({ 0: [], 1: [1, 2], 2: [1], 3: [], 4: [] });
    expect([...context.cachedSteps]).toEqual([1, 2]);
    expect(stats.computedBlocks).toBe(5 * 4 - 3);
    expect(stats.markdown).toContain('Pruned blocks per step, transformer.blocks main: 1: 1 2; 2: 1');
  });

  it('keeps a block that returns its input unchanged apart from the block before it, and frees everything', () => {
    const ops = new PlainTensorOps();
    const f = (step: number) => 1 + step;
    const identity = { forward: (h: unknown) => h };
    const transformer = { blocks: [new AdditiveBlock(ops, 1, f), identity, identity, new AdditiveBlock(ops, 2, f)] };
    const config = { policy: 'dbprune', Fn_compute_blocks: 1, max_warmup_steps: 1, residual_diff_threshold: 0.2, max_continuous_cached_steps: 1 };
    enableCache(new BlockAdapter({ transformer, blocks: 'blocks', forwardPattern: ForwardPattern.Pattern_3, ops }), { numInferenceSteps: 6, ...config });
    const x = ops.tensor([1, 2, 3], [1, 3]);
    for (let step = 0; step < 6; step++) {
      const out = transformer.blocks[0].forward(x, step) as PlainTensor;
      // The identity blocks change nothing, pruned or not; block 3 adds 2 f(step) or its residual of an earlier step.
      expect(out.values()[0]).toBeGreaterThan(1 + f(step));
      out.dispose();
    }
    const pruned = Object.values(summary(transformer, { print: false }).contexts[0].branches[0].prunedBlocks ?? {}).flat();
    disableCache(transformer);
    x.dispose();
    expect(pruned).toEqual(expect.arrayContaining([1, 2]));
    expect(ops.liveCount).toBe(0);
  });

  it.each(PATTERNS)('Pattern_%i: a run that prunes nothing is bit-identical to the uncached one (threshold 0, or warmup over the run)', (pattern) => {
    for (const settings of [{ residual_diff_threshold: 0 }, { residual_diff_threshold: 0.5, max_warmup_steps: 10 }]) {
      const { reference, out, stats, live } = prunedRun(pattern, { Fn_compute_blocks: 1, ...settings });
      expect(out).toEqual(reference);
      expect(stats.computedBlocks).toBe(stats.totalBlocks);
      expect(live).toBe(0);
    }
  });

  it.each(PATTERNS)(
    'Pattern_%i: pruning in both CFG branches changes the output, counts the pruned blocks as not computed and frees every tensor',
    (pattern) => {
      const { reference, out, stats, live } = prunedRun(pattern, {
        Fn_compute_blocks: 1,
        Bn_compute_blocks: 1,
        max_warmup_steps: 2,
        residual_diff_threshold: 0.5,
      });
      expect(out).not.toEqual(reference);
      const branches = stats.contexts[0].branches;
      expect(branches.map((b) => b.role)).toEqual(['main', 'cfg']);
      const pruned = branches.reduce((n, b) => n + Object.values(b.prunedBlocks ?? {}).flat().length, 0);
      expect(pruned).toBeGreaterThan(0);
      for (const b of branches)
        expect(
          Object.values(b.prunedBlocks ?? {})
            .flat()
            .every((block) => block >= 1 && block <= 4),
        ).toBe(true);
      expect(stats.computedBlocks).toBe(stats.totalBlocks - pruned);
      expect(live).toBe(0);
    },
  );
});

/** A toy pipeline with guidance (two announced branches), uncached then under dbprune. */
function prunedRun(pattern: ForwardPattern, settings: Record<string, unknown>) {
  const pipe = toyPipeline(pattern);
  const run = () => pipe.generate({ steps: 10, guidance: 3, announce: true });
  const reference = run();
  enableCache(new BlockAdapter({ pipe, transformer: pipe.transformer, blocks: 'transformerBlocks', forwardPattern: pattern, ops: pipe.ops }), {
    policy: 'dbprune',
    ...settings,
  });
  const out = run();
  const stats = summary(pipe, { print: false });
  disableCache(pipe);
  return { reference, out, stats, live: pipe.ops.liveCount };
}
