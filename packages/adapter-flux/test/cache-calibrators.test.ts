// The FoCa and DMD calibrators on FLUX against cache-dit's: per config, the steps it cached, its
// diffs and its final latents (tools/cache-references-calibrators/calibrators.py made them,
// float32). FLUX's encoder stream is forecast too where the config says so.
import { describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary } from '@ditcache/core';
import { memoryStats } from '@ditcache/cuda-runtime';

import { relativeL2 } from './helpers.js';
import { fluxTinyTraces } from './policy-traces.js';

interface CalibratorTrace {
  cache_config: Record<string, unknown>;
  calibrator_config: Record<string, unknown> & { calibrator_type: 'foca' | 'dmd' };
  cached_steps: { non_cfg: number[] };
  residual_diffs: { non_cfg: Record<string, number> };
}

describe('the FoCa and DMD calibrators on FLUX (flux-tiny)', () => {
  const { references, traces, pipe, latentsOf } = fluxTinyTraces<{ traces: Record<string, CalibratorTrace> }>('calibrators');

  it('covers both calibrators', () => {
    const types = new Set(Object.values(references.traces).map((t) => t.calibrator_config.calibrator_type));
    expect([...types].sort()).toEqual(['dmd', 'foca']);
  });

  it.each(Object.keys(references.traces))("%s: cache-dit's cached steps, diffs and latents", (name) => {
    const trace = references.traces[name];
    const before = memoryStats();
    // cache-dit's two sections, as its summary dumps them, are a config ditcache reads as they are.
    enableCache(pipe, { cache_config: trace.cache_config, calibrator_config: trace.calibrator_config });
    const latents = latentsOf();
    const [context] = summary(pipe, { print: false }).contexts;
    expect(context.config.calibratorType).toBe(trace.calibrator_config.calibrator_type);
    expect([...context.cachedSteps]).toEqual(trace.cached_steps.non_cfg);
    const want = trace.residual_diffs.non_cfg;
    expect(Object.keys(context.residualDiffs).sort()).toEqual(Object.keys(want).sort());
    for (const [step, diff] of Object.entries(want)) expect(Math.abs(context.residualDiffs[step] - diff)).toBeLessThan(1e-3);
    expect(relativeL2(latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });
});
