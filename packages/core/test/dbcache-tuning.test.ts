// The periodic variants `ditcache tune` searches for dbcache: their cap values at several run
// lengths, checked against the steps core's own decision computes under each cap.
import { describe, expect, it } from 'vitest';

import { BranchDecider, DBCACHE_TUNING, parseCacheConfig, resolveConfig, type TuningSteps, type TuningVariant } from '../src/index.js';

const periodicVariants = (steps: number): TuningVariant[] => DBCACHE_TUNING.variants({ steps }).filter((v) => v.name.includes('periodic'));

/** The steps a run computes under the variant's config with this cap (threshold 1 never asks for a diff). */
function computedSteps(variant: TuningVariant, steps: number, cap: number): number[] {
  const decider = new BranchDecider(resolveConfig(parseCacheConfig({ ...variant.config, max_continuous_cached_steps: cap }).base));
  const computed: number[] = [];
  for (let step = 0; step < steps; ++step) {
    const decision = decider.decide(step, computed.length > 0, () => {
      throw new Error(`diff asked at step ${step}`);
    });
    if (!decision.cache) computed.push(step);
  }
  return computed;
}

describe('the periodic dbcache tuning variants', () => {
  it('compute with threshold 1 and warmup 1 under TaylorSeer 1, 2 or FoCa, searching the cap', () => {
    const variants = periodicVariants(28);
    expect(variants.map((v) => v.name)).toEqual(['F1B0-periodic-T1', 'F1B0-periodic-T2', 'F1B0-periodic-FoCa']);
    const configs = variants.map((v) => resolveConfig(parseCacheConfig({ ...v.config, max_continuous_cached_steps: 5 }).base));
    expect(configs.map((c) => [c.fnComputeBlocks, c.bnComputeBlocks, c.maxWarmupSteps, c.residualDiffThreshold])).toEqual([
      [1, 0, 1, 1],
      [1, 0, 1, 1],
      [1, 0, 1, 1],
    ]);
    expect(configs.map((c) => [c.enableTaylorseer, c.calibratorType, c.taylorseerOrder])).toEqual([
      [true, 'taylorseer', 1],
      [true, 'taylorseer', 2],
      [true, 'foca', 1],
    ]);
    for (const v of variants) expect(v.knob).toEqual({ key: 'max_continuous_cached_steps', values: [1, 3, 4, 5, 6, 9, 13, 27] });
  });

  it('list, for every count of computed steps, the smallest cap giving it, from the most computed to the warmup alone', () => {
    const expected: Record<number, number[]> = {
      2: [1],
      4: [1, 3],
      10: [1, 3, 4, 9],
      28: [1, 3, 4, 5, 6, 9, 13, 27],
      50: [1, 3, 4, 5, 6, 7, 8, 9, 12, 16, 24, 49],
    };
    for (const [steps, caps] of Object.entries(expected).map(([s, c]) => [Number(s), c] as const)) {
      const variant = periodicVariants(steps)[0];
      const values = (variant.knob as TuningSteps).values as number[];
      expect(values).toEqual(caps);
      const counts = values.map((cap) => computedSteps(variant, steps, cap).length);
      // Strictly fewer computed steps (more speed) along the knob, down to the warmup step alone.
      for (let i = 1; i < counts.length; ++i) expect(counts[i]).toBeLessThan(counts[i - 1]);
      expect(counts.at(-1)).toBe(1);
      // No cap between two listed ones computes fewer steps than the smaller one: each is the first of its count.
      for (let cap = 1; cap <= steps - 1; ++cap) {
        const listed = values.filter((v) => v <= cap).at(-1)!;
        expect(computedSteps(variant, steps, cap).length).toBe(computedSteps(variant, steps, listed).length);
      }
    }
  });

  it('spread the computed steps evenly: at 28 steps a cap of 13 computes steps 0 and 14, at 50 a cap of 12 steps 0, 13, 26 and 39', () => {
    expect(computedSteps(periodicVariants(28)[1], 28, 13)).toEqual([0, 14]);
    expect(computedSteps(periodicVariants(50)[1], 50, 12)).toEqual([0, 13, 26, 39]);
    expect(computedSteps(periodicVariants(4)[1], 4, 1)).toEqual([0, 2]);
  });

  it('are left out of a run with no step after the warmup', () => {
    expect(periodicVariants(1)).toEqual([]);
    const dynamic = DBCACHE_TUNING.variants({ steps: 28 }).filter((v) => !v.name.includes('periodic'));
    expect(DBCACHE_TUNING.variants({ steps: 1 }).map((v) => v.name)).toEqual(dynamic.map((v) => v.name));
  });
});
