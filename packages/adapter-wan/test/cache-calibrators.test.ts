// The FoCa and DMD calibrators on Wan (video, separate CFG branches, each with its own
// calibrator) against cache-dit's: per config, the steps it cached per CFG branch (cond is its
// non-CFG branch), its diffs and its final latents (tools/cache-references-calibrators/
// calibrators.py made them, float32).
import { describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary } from '@ditcache/core';
import { memoryStats } from '@ditcache/cuda-runtime';

import { relativeL2 } from './helpers.js';
import { wanTinyTraces } from './policy-traces.js';

type Branches<T> = { non_cfg: T; cfg: T };
interface CalibratorTrace {
  cache_config: Record<string, unknown>;
  calibrator_config: Record<string, unknown> & { calibrator_type: 'foca' | 'dmd' };
  cached_steps: Branches<number[]>;
  residual_diffs: Branches<Record<string, number>>;
}

function expectDiffs(got: Readonly<Record<string, number>>, want: Record<string, number>): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const [step, diff] of Object.entries(want)) expect(Math.abs(got[step] - diff)).toBeLessThan(1e-3);
}

describe('the FoCa and DMD calibrators on Wan (wan-tiny)', () => {
  const { references, traces, pipe, latentsOf } = wanTinyTraces<{ traces: Record<string, CalibratorTrace> }>('calibrators');

  it('covers both calibrators', () => {
    const types = new Set(Object.values(references.traces).map((t) => t.calibrator_config.calibrator_type));
    expect([...types].sort()).toEqual(['dmd', 'foca']);
  });

  it.each(Object.keys(references.traces))("%s: cache-dit's cached steps and diffs per CFG branch, and latents", (name) => {
    const trace = references.traces[name];
    const before = memoryStats();
    enableCache(pipe, { cache_config: trace.cache_config, calibrator_config: trace.calibrator_config });
    const latents = latentsOf();
    const [context] = summary(pipe, { print: false }).contexts;
    expect(context.name).toBe('transformer.blocks');
    expect(context.config.calibratorType).toBe(trace.calibrator_config.calibrator_type);
    expect([...context.cachedSteps], 'cond (non-CFG) cached steps').toEqual(trace.cached_steps.non_cfg);
    expect([...context.cfgCachedSteps], 'uncond (CFG) cached steps').toEqual(trace.cached_steps.cfg);
    expectDiffs(context.residualDiffs, trace.residual_diffs.non_cfg);
    expectDiffs(context.cfgResidualDiffs, trace.residual_diffs.cfg);
    expect(relativeL2(latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });
});
