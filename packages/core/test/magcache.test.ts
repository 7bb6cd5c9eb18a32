// The 'magcache' policy (diffusers' MagCache): its decision rule on hand-computed sequences, the
// resampling of ratios to another step count (checked against diffusers' own output), its keys,
// and on the engine: a skipped step adds the whole chain's residual of the last computed step,
// calibration records the norm ratios of that residual, and a run that skips nothing is bit for
// bit the uncached run. The FLUX and Wan adapters' tests compare it with diffusers end to end.
import { describe, expect, it } from 'vitest';

import {
  BlockAdapter,
  CacheConfigError,
  disableCache,
  enableCache,
  FLUX_MAG_RATIOS,
  ForwardPattern,
  MagCacheDecider,
  magCacheCalibration,
  magCacheConfigFromCalibration,
  magCacheRetentionSteps,
  magRatiosForSteps,
  parseCacheConfig,
  resolveConfig,
  strify,
  summary,
  type MagCacheRule,
} from '../src/index.js';
import { PlainTensorOps } from '../src/testing.js';
import { AdditiveBlock, toyPipeline } from './toy-models.js';

/** Runs a decider over `steps` steps; a reference exists once a step was computed. */
function decideAll(rule: MagCacheRule, steps: number) {
  const decider = new MagCacheDecider(rule);
  let hasReference = false;
  const decisions = Array.from({ length: steps }, (_, step) => {
    const d = decider.decide(step, hasReference);
    if (!d.cache) hasReference = true;
    return d;
  });
  return { decider, decisions };
}

describe('the MagCache decision rule', () => {
  it('skips while the accumulated error is within the threshold and at most max_skip_steps were counted', () => {
    const rule = { ratios: [1, 1.1, 1.0, 0.9, 1.0, 1.05], retentionSteps: 1, threshold: 0.25, maxSkipSteps: 2 };
    const { decider, decisions } = decideAll(rule, 7);
    expect(decisions.map((d) => d.reason)).toEqual([
      'retention',
      'error-within-threshold', // ratio 1.1, error 0.1
      'error-within-threshold', // ratio 1.1, error 0.2
      'max-skip-steps', // ratio 0.99, error 0.21 <= 0.25, but a third step: reset
      'error-within-threshold', // ratio 1.0, error 0
      'error-within-threshold', // ratio 1.05, error 0.05
      'max-skip-steps', // past the list: ratio 1.05 * 1, error 0.1, a third step
    ]);
    expect(decider.cachedSteps).toEqual([1, 2, 4, 5]);
    const expected = [0.1, 0.2, 0.21, 0, 0.05, 0.1];
    expect([...decider.residualDiffs.keys()]).toEqual([1, 2, 3, 4, 5, 6]);
    [...decider.residualDiffs.values()].forEach((e, i) => expect(e).toBeCloseTo(expected[i], 12));
    expect(decisions[3].diff).toBeCloseTo(0.21, 12);
  });

  it('computes without a reference and above the threshold, resetting; an error equal to the threshold skips', () => {
    const above = decideAll({ ratios: [1, 1.3, 1.3, 1.3], retentionSteps: 0, threshold: 0.2, maxSkipSteps: 5 }, 4);
    expect(above.decisions.map((d) => d.reason)).toEqual(['no-reference', 'error-above-threshold', 'error-above-threshold', 'error-above-threshold']);
    // Each reset starts over: the error at steps 1-3 is |1 - 1.3| alone.
    for (const step of [1, 2, 3]) expect(above.decider.residualDiffs.get(step)).toBeCloseTo(0.3, 12);
    const equal = decideAll({ ratios: [1, 0.5, 1], retentionSteps: 0, threshold: 0.5, maxSkipSteps: 3 }, 3);
    expect(equal.decisions.map((d) => d.cache)).toEqual([false, true, false]);
    expect(equal.decisions[1]).toMatchObject({ cache: true, diff: 0.5 });
    // Step 2: the accumulated ratio stays 0.5, so the error grows to 1.
    expect(equal.decisions[2]).toMatchObject({ cache: false, reason: 'error-above-threshold', diff: 1 });
  });

  it('max_skip_steps 0 never skips; the retention steps are never counted', () => {
    expect(decideAll({ ratios: [1, 1, 1, 1], retentionSteps: 0, threshold: 1, maxSkipSteps: 0 }, 4).decider.cachedSteps).toEqual([]);
    const retained = decideAll({ ratios: [5, 5, 5, 1, 1], retentionSteps: 3, threshold: 0.01, maxSkipSteps: 3 }, 5);
    expect(retained.decider.cachedSteps).toEqual([3, 4]);
    expect([...retained.decider.residualDiffs.keys()]).toEqual([3, 4]);
  });

  it('retains retention_ratio of the steps, rounded half up, as diffusers does', () => {
    expect(magCacheRetentionSteps(0.2, 28)).toBe(6);
    expect(magCacheRetentionSteps(0.2, 20)).toBe(4);
    expect(magCacheRetentionSteps(0.25, 16)).toBe(4);
    expect(magCacheRetentionSteps(0.1, 16)).toBe(2);
    expect(magCacheRetentionSteps(0, 16)).toBe(0);
  });
});

describe('magRatiosForSteps: nearest-neighbour resampling as diffusers does it', () => {
  it("gives diffusers' FLUX ratios at 20 steps (nearest_interp of FLUX_MAG_RATIOS)", () => {
    // diffusers.hooks.mag_cache.nearest_interp(FLUX_MAG_RATIOS, 20), float32.
    const diffusers = [
      1.0, 1.2109400033950806, 1.0781199932098389, 1.0625, 1.03125, 1.0390599966049194, 1.03125, 1.0234400033950806, 0.9804700016975403, 1.0078099966049194,
      1.0, 1.0, 1.0078099966049194, 1.0, 0.9960899949073792, 0.9960899949073792, 0.9882799983024597, 0.9648399949073792, 0.9335899949073792, 0.8906199932098389,
    ];
    const ours = magRatiosForSteps(FLUX_MAG_RATIOS, 20);
    expect(ours).toHaveLength(20);
    ours.forEach((r, i) => expect(r).toBeCloseTo(diffusers[i], 6));
  });

  it('rounds exact halves to even (28 -> 55 steps), keeps a list of the right length, and takes the last for one step', () => {
    const indices = Array.from({ length: 28 }, (_, i) => i);
    // diffusers: nearest_interp(torch.arange(28.), 55)
    expect(magRatiosForSteps(indices, 55).slice(0, 12)).toEqual([0, 0, 1, 2, 2, 2, 3, 4, 4, 4, 5, 6]);
    expect(magRatiosForSteps(indices, 55).at(-1)).toBe(27);
    expect(magRatiosForSteps([1, 2, 3], 3)).toEqual([1, 2, 3]);
    expect(magRatiosForSteps([1, 2, 3], 1)).toEqual([3]);
    // i * 0.5 = 0, 0.5, 1, 1.5, 2: the halves go to 0 and 2.
    expect(magRatiosForSteps([1, 2, 3], 5)).toEqual([1, 1, 2, 3, 3]);
    expect(() => magRatiosForSteps([], 5)).toThrow(/no ratios/);
  });
});

describe("the 'magcache' policy's keys", () => {
  it("takes diffusers' names and defaults, and sets Fn and Bn to 0: the whole chain", () => {
    expect(resolveConfig(parseCacheConfig({ policy: 'magcache', mag_ratios: 'flux' }).base)).toMatchObject({
      policy: 'magcache',
      fnComputeBlocks: 0,
      bnComputeBlocks: 0,
      policyOptions: { threshold: 0.06, maxSkipSteps: 3, retentionRatio: 0.2, magRatios: 'flux', calibrate: false },
    });
    const camel = resolveConfig(parseCacheConfig({ policy: 'magcache', magRatios: [1, 1.1], maxSkipSteps: 2, retentionRatio: 0.5, Fn_compute_blocks: 1 }).base);
    expect(camel).toMatchObject({ fnComputeBlocks: 1, policyOptions: { magRatios: [1, 1.1], maxSkipSteps: 2, retentionRatio: 0.5 } });
    // DBCache keeps its own defaults and its Fn >= 1.
    expect(resolveConfig(parseCacheConfig({}).base).fnComputeBlocks).toBe(8);
    expect(() => parseCacheConfig({ Fn_compute_blocks: 0 })).toThrow(/Fn_compute_blocks must be an integer >= 1/);
  });

  it('refuses unknown keys with the valid ones, and bad values', () => {
    expect(() => parseCacheConfig({ policy: 'magcache', residual_diff_threshold: 0.1 })).toThrow(
      /unknown key "residual_diff_threshold".*Valid keys with policy 'magcache'.*threshold, maxSkipSteps \(max_skip_steps\), retentionRatio \(retention_ratio\), magRatios \(mag_ratios\), calibrate;/s,
    );
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ retention_ratio: 1.5 }, /retention_ratio must be a number from 0 to 1, got 1.5/],
      [{ mag_ratios: [] }, /mag_ratios must be a non-empty list of finite numbers >= 0 \(one per step\), or a preset: 'flux' or null, got \[\]/],
      [{ mag_ratios: [1, -1] }, /mag_ratios must be a non-empty list/],
      [{ mag_ratios: 'sdxl' }, /mag_ratios must be .*'flux'.*got "sdxl"/],
      [{ threshold: -0.1 }, /threshold must be a finite number >= 0/],
      [{ max_skip_steps: 1.5 }, /max_skip_steps must be an integer >= 0/],
      [{ calibrate: 'yes' }, /calibrate must be true or false/],
    ];
    for (const [settings, message] of bad) expect(() => parseCacheConfig({ policy: 'magcache', ...settings })).toThrow(message);
  });

  it('needs mag_ratios unless it calibrates', () => {
    const ops = new PlainTensorOps();
    const transformer = { blocks: [1, 2].map((c) => new AdditiveBlock(ops, c, (s) => s)) };
    const adapter = new BlockAdapter({ transformer, blocks: 'blocks', forwardPattern: ForwardPattern.Pattern_3, ops });
    expect(() => enableCache(adapter, { policy: 'magcache' })).toThrow(CacheConfigError);
    expect(() => enableCache(adapter, { policy: 'magcache' })).toThrow(/policy 'magcache' needs mag_ratios .* or calibrate: true/);
  });

  it("needs the run's step count to decide, and TensorOps.rowNorms to calibrate", () => {
    const ops = new PlainTensorOps();
    const transformer = { blocks: [1, 2].map((c) => new AdditiveBlock(ops, c, (s) => s)) };
    const x = ops.tensor([1, 2]);
    enableCache(new BlockAdapter({ transformer, blocks: 'blocks', forwardPattern: ForwardPattern.Pattern_3, ops }), { policy: 'magcache', mag_ratios: 'flux' });
    expect(() => transformer.blocks[0].forward(x, 0)).toThrow(/cache policy 'magcache' needs the run's step count.*numInferenceSteps/);
    disableCache(transformer);
    const withoutNorms = Object.assign(Object.create(ops) as PlainTensorOps, { rowNorms: undefined });
    enableCache(new BlockAdapter({ transformer, blocks: 'blocks', forwardPattern: ForwardPattern.Pattern_3, ops: withoutNorms }), {
      policy: 'magcache',
      calibrate: true,
    });
    expect(() => transformer.blocks[0].forward(x, 0)).toThrow(/calibrate needs TensorOps.rowNorms/);
    disableCache(transformer);
    x.dispose();
    expect(ops.liveCount).toBe(0);
  });

  it('strify names the policy and its options', () => {
    expect(strify({ policy: 'magcache', mag_ratios: 'flux', threshold: 0.1 })).toBe(
      'magcache_F0B0_threshold-0.1_maxSkipSteps-3_retentionRatio-0.2_magRatios-flux_calibrate-false',
    );
    // A list of ratios becomes its length and a digest: short, and different for another list.
    const tag = strify({ policy: 'magcache', mag_ratios: FLUX_MAG_RATIOS });
    expect(tag).toMatch(/^magcache_F0B0_threshold-0\.06_maxSkipSteps-3_retentionRatio-0\.2_magRatios-28x[0-9a-f]{8}_calibrate-false$/);
    expect(strify({ policy: 'magcache', mag_ratios: [...FLUX_MAG_RATIOS.slice(0, 27), 0.9] })).not.toBe(tag);
  });
});

/** Blocks adding c * f(step) * (1 + 0.1 i): the chain's residual at a step is C f(step) (1 + 0.1 i), C the sum of the c. */
function additiveRun(config: Record<string, unknown>, steps: number) {
  const ops = new PlainTensorOps();
  const f = (step: number) => 1 + step * step;
  const coefficients = [0.5, 1, 2, 0.25];
  const transformer = { blocks: coefficients.map((c) => new AdditiveBlock(ops, c, f)) };
  enableCache(new BlockAdapter({ transformer, blocks: 'blocks', forwardPattern: ForwardPattern.Pattern_3, ops }), { numInferenceSteps: steps, ...config });
  const x = ops.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
  const outputs = Array.from({ length: steps }, (_, step) => {
    const out = transformer.blocks[0].forward(x, step);
    const values = Array.from(out.values());
    out.dispose();
    return values;
  });
  const stats = summary(transformer, { print: false });
  disableCache(transformer);
  x.dispose();
  const C = coefficients.reduce((a, b) => a + b, 0);
  // The whole chain's output with its residual from step `computedAt`.
  const expected = (computedAt: number) => [1, 2, 3, 4, 5, 6].map((v, i) => v + C * f(computedAt) * (1 + 0.1 * i));
  return { outputs, stats, expected, f, liveAfter: ops.liveCount };
}

describe("the 'magcache' policy on the engine", () => {
  it('a skipped step adds the whole chain’s residual of the last computed step to its input', () => {
    // 8 steps, retention 0.25 -> steps 0 and 1; then errors 0.05, 0.1525 (skip, skip),
    // 0.58575 (compute), 0, 0 (skip, skip), and a third step past max_skip_steps 2 (compute).
    const ratios = [1, 1, 1.05, 1.05, 1.3, 1, 1, 1];
    const { outputs, stats, expected, liveAfter } = additiveRun(
      { policy: 'magcache', mag_ratios: ratios, threshold: 0.2, max_skip_steps: 2, retention_ratio: 0.25 },
      8,
    );
    const [context] = stats.contexts;
    expect(context.cachedSteps).toEqual([2, 3, 5, 6]);
    expect(context.decisions.map((d) => d.reason)).toEqual([
      'retention',
      'retention',
      'error-within-threshold',
      'error-within-threshold',
      'error-above-threshold',
      'error-within-threshold',
      'error-within-threshold',
      'max-skip-steps',
    ]);
    const computedAt = [0, 1, 1, 1, 4, 4, 4, 7];
    outputs.forEach((out, step) => expected(computedAt[step]).forEach((v, i) => expect(out[i]).toBeCloseTo(v, 10)));
    expect(context.computedBlocks).toBe(4 * 4);
    expect(liveAfter).toBe(0);
  });

  it('calibration computes every step and records the mean ratio of the tokens’ residual norms', () => {
    const { outputs, stats, expected, f, liveAfter } = additiveRun({ policy: 'magcache', calibrate: true }, 6);
    outputs.forEach((out, step) => expected(step).forEach((v, i) => expect(out[i]).toBeCloseTo(v, 10)));
    const [branch] = stats.contexts[0].branches;
    expect(stats.contexts[0].cachedSteps).toEqual([]);
    const ratios = branch.report?.magRatios as number[];
    expect(ratios).toHaveLength(6);
    expect(ratios[0]).toBe(1);
    for (let s = 1; s < 6; s++) expect(ratios[s]).toBeCloseTo(f(s) / f(s - 1), 7);
    const calibration = magCacheCalibration(stats);
    expect(calibration).toEqual([{ name: 'transformer.blocks', branches: [{ branch: 'main', magRatios: ratios }] }]);
    const config = magCacheConfigFromCalibration(calibration);
    expect(config).toEqual({ policy: 'magcache', mag_ratios: ratios });
    expect(resolveConfig(parseCacheConfig(config).base).policyOptions.magRatios).toEqual(ratios);
    expect(liveAfter).toBe(0);
    expect(() => magCacheCalibration(additiveRun({ policy: 'magcache', mag_ratios: 'flux' }, 4).stats)).toThrow(/no MagCache calibration in this summary/);
  });

  it('rowNorms: one L2 norm per vector of the last dimension', () => {
    const ops = new PlainTensorOps();
    const t = ops.tensor([3, 4, 0, 1, 2, 2], [3, 2]);
    expect([...ops.rowNorms(t)]).toEqual([5, 1, Math.sqrt(8)]);
    t.dispose();
  });

  const chains = { transformerBlocks: 3, singleTransformerBlocks: 3 };
  const run = (config: Record<string, unknown> | undefined, blocks: 'one-chain' | 'two-lists') => {
    const pipe = toyPipeline(ForwardPattern.Pattern_1, chains);
    const lists = Object.keys(chains);
    if (config) {
      enableCache(
        new BlockAdapter({
          pipe,
          transformer: pipe.transformer,
          blocks: blocks === 'one-chain' ? { chain: lists } : lists,
          forwardPattern: pipe.transformer.pattern,
          ops: pipe.ops,
        }),
        config,
      );
    }
    const out = pipe.generate({ steps: 10, guidance: 3, announce: true });
    const stats = config ? summary(pipe, { print: false }) : undefined;
    if (config) disableCache(pipe);
    return { out, stats, live: pipe.ops.liveCount };
  };

  it('a run that skips nothing is bit for bit the uncached run (calibrating, or an error always above the threshold)', () => {
    const uncached = run(undefined, 'one-chain');
    for (const config of [
      { policy: 'magcache', calibrate: true },
      { policy: 'magcache', mag_ratios: [1.5], threshold: 0, retention_ratio: 0 },
    ]) {
      const cached = run(config, 'one-chain');
      expect(cached.out).toEqual(uncached.out);
      expect(cached.stats?.cachedSteps).toBe(0);
      expect(cached.live).toBe(0);
    }
  });

  it('keeps state per CFG branch, and two lists as two contexts decide and compute as one chain', () => {
    const config = { policy: 'magcache', mag_ratios: [1, 1.02, 0.97, 1.01, 1.03, 0.985, 1.0, 1.02, 0.98, 1.01], threshold: 0.05, retention_ratio: 0.2 };
    const one = run(config, 'one-chain');
    const two = run(config, 'two-lists');
    const [context] = one.stats?.contexts ?? [];
    expect(context.branches.map((b) => b.announcedAs)).toEqual(['cond', 'uncond']);
    // Steps 0-1 retained; then errors 0.03 (skip), 0.0503 (compute), 0.03, 0.0446 (skip, skip),
    // 0.0891 (compute), 0.02, 0.0204, 0.03 (skip three: max_skip_steps 3).
    expect(context.cachedSteps).toEqual([2, 4, 5, 7, 8, 9]);
    expect(context.cfgCachedSteps).toEqual(context.cachedSteps);
    for (const c of two.stats?.contexts ?? []) {
      expect(c.cachedSteps).toEqual(context.cachedSteps);
      expect(c.cfgCachedSteps).toEqual(context.cachedSteps);
    }
    two.out.forEach((v, i) => expect(v).toBeCloseTo(one.out[i], 12));
    expect(one.live + two.live).toBe(0);
    const calibrated = run({ policy: 'magcache', calibrate: true }, 'one-chain');
    const branches = magCacheCalibration(calibrated.stats as NonNullable<typeof calibrated.stats>)[0].branches;
    expect(branches.map((b) => [b.branch, b.magRatios.length])).toEqual([
      ['cond', 10],
      ['uncond', 10],
    ]);
    expect(branches[0].magRatios).not.toEqual(branches[1].magRatios);
  });
});
