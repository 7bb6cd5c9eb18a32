import { describe, expect, it } from 'vitest';

import { BranchDecider, resolveConfig, type CacheSettings } from '../src/index.js';

/** Decides steps 0..n-1 with the given diffs (undefined = no diff expected), returning cached steps and reasons. */
function run(settings: CacheSettings, diffs: (number | undefined)[]) {
  const record = new BranchDecider(resolveConfig(settings));
  const measured: number[] = [];
  let hasReference = false;
  const reasons = diffs.map((diff, step) => {
    const d = record.decide(step, hasReference, () => {
      measured.push(step);
      if (diff === undefined) throw new Error(`diff asked at step ${step}`);
      return diff;
    });
    if (!d.cache) hasReference = true;
    return d.reason;
  });
  return { cached: record.cachedSteps, measured, reasons };
}

const LOW = 0.01;
const HIGH = 0.9;

describe('decision order', () => {
  it('warmup, then the relative L1 diff against the threshold', () => {
    const r = run({ maxWarmupSteps: 2, residualDiffThreshold: 0.1 }, [undefined, undefined, LOW, HIGH, LOW, 0.1]);
    expect(r.cached).toEqual([2, 4]);
    expect(r.reasons).toEqual(['warmup', 'warmup', 'diff-below-threshold', 'diff-above-threshold', 'diff-below-threshold', 'diff-above-threshold']);
  });

  it('the steps mask comes before the caps; a static 0 caches without a diff', () => {
    const mask = [1, 0, 1, 0, 0, 0];
    const dynamic = run({ maxWarmupSteps: 4, residualDiffThreshold: 0.1, stepsComputationMask: mask }, [undefined, LOW, undefined, LOW, HIGH, LOW]);
    // The mask's leading 1s (one step) cut the warmup to step 0.
    expect(dynamic.reasons).toEqual(['warmup', 'diff-below-threshold', 'mask', 'diff-below-threshold', 'diff-above-threshold', 'diff-below-threshold']);
    const fixed = run({ maxWarmupSteps: 1, residualDiffThreshold: 0.1, maxCachedSteps: 1, stepsComputationMask: mask, stepsComputationPolicy: 'static' }, [
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
    expect(fixed.cached).toEqual([1, 3, 4, 5]);
    expect(fixed.measured).toEqual([]);
  });

  it('max cached steps, then the accumulated-diff budget, then threshold 0, then a missing reference', () => {
    expect(run({ maxWarmupSteps: 1, residualDiffThreshold: 0.5, maxCachedSteps: 2 }, [undefined, LOW, LOW, undefined, undefined]).reasons).toEqual([
      'warmup',
      'diff-below-threshold',
      'diff-below-threshold',
      'max-cached',
      'max-cached',
    ]);
    // Diffs add up (0.3 + 0.3 + 0.3 >= 0.8): no caching for the rest of the run.
    const budget = run({ maxWarmupSteps: 1, residualDiffThreshold: 0.5, maxAccumulatedResidualDiffThreshold: 0.8 }, [
      undefined,
      0.3,
      0.3,
      0.3,
      undefined,
      undefined,
    ]);
    expect(budget.cached).toEqual([1, 2, 3]);
    expect(budget.reasons.slice(4)).toEqual(['accumulated-diff', 'accumulated-diff']);
    expect(run({ maxWarmupSteps: 1, residualDiffThreshold: 0 }, [undefined, undefined]).reasons).toEqual(['warmup', 'threshold-off']);
    expect(run({ maxWarmupSteps: 0, residualDiffThreshold: 0.5 }, [undefined, LOW]).reasons).toEqual(['no-reference', 'diff-below-threshold']);
  });

  it('threshold >= 1 caches every allowed step without measuring', () => {
    const r = run({ maxWarmupSteps: 2, residualDiffThreshold: 1 }, Array(5).fill(undefined));
    expect(r.cached).toEqual([2, 3, 4]);
    expect(r.measured).toEqual([]);
  });
});

describe('max continuous cached steps', () => {
  // Steps 1, 2 fall below the threshold, 3 does not, every later step does (warmup: step 0).
  const diffs = [undefined, LOW, LOW, HIGH, LOW, LOW, LOW, LOW, LOW, LOW, LOW, LOW];

  it('counts as cache-dit does by default: its counter survives a computed step, so later runs are shorter than the cap', () => {
    const r = run({ maxWarmupSteps: 1, residualDiffThreshold: 0.1, maxContinuousCachedSteps: 3 }, diffs);
    // counter: 1, 2 | step 3 computed by diff (counter stays 2) | 4: gap, stays 2; 5: 3 | 6 forced, 0 |
    // 7: gap, 0; 8: +2 = 2; 9: 3 | 10 forced | 11: gap, 0
    expect(r.cached).toEqual([1, 2, 4, 5, 7, 8, 9, 11]);
    expect(r.reasons[6]).toBe('max-continuous');
    expect(r.reasons[10]).toBe('max-continuous');
  });

  it("counts plainly with continuousCounting: 'plain': every computed step resets, every run may reach the cap", () => {
    const r = run({ maxWarmupSteps: 1, residualDiffThreshold: 0.1, maxContinuousCachedSteps: 3, continuousCounting: 'plain' }, diffs);
    expect(r.cached).toEqual([1, 2, 4, 5, 6, 8, 9, 10]);
    expect(r.reasons[7]).toBe('max-continuous');
    expect(r.reasons[11]).toBe('max-continuous');
  });

  it('both counts agree for a cap of 2 (the only cap in the goldens), and 0 forbids caching', () => {
    const settings = { maxWarmupSteps: 1, residualDiffThreshold: 0.1, maxContinuousCachedSteps: 2 };
    expect(run(settings, diffs).cached).toEqual(run({ ...settings, continuousCounting: 'plain' }, diffs).cached);
    expect(run({ ...settings, maxContinuousCachedSteps: 0 }, diffs).cached).toEqual([]);
  });
});
