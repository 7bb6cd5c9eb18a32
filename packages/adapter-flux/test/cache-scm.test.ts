// The `scm` cache policy on FLUX against cache-dit 1.5's steps computation masks: for every
// preset, 'static' and 'dynamic', the mask cache-dit's steps_mask gave, the steps it cached, its
// diffs and its final latents (tools/cache-references-scm/scm.py made them, float32).
import { describe, expect, it } from 'vitest';

import { disableCache, enableCache, scmMask, summary, type ScmPreset } from '@ditcache/core';
import { memoryStats } from '@ditcache/cuda-runtime';

import { relativeL2 } from './helpers.js';
import { fluxTinyTraces } from './policy-traces.js';

interface ScmTrace {
  config: Record<string, unknown> & { mask_policy: ScmPreset; steps_computation_policy: string };
  taylorseer_order: number | null;
  mask: string;
  cached_steps: { non_cfg: number[] };
  residual_diffs: { non_cfg: Record<string, number> };
}

describe('the scm policy on FLUX (flux-tiny)', () => {
  const { meta, references: scm, traces, pipe, latentsOf } = fluxTinyTraces<{ traces: Record<string, ScmTrace> }>('scm');

  it.each(Object.keys(scm.traces))("%s: cache-dit's mask, cached steps, diffs and latents", (name) => {
    const trace = scm.traces[name];
    expect(scmMask(trace.config.mask_policy, meta.num_inference_steps).join('')).toBe(trace.mask);
    const before = memoryStats();
    enableCache(pipe, { policy: 'scm', ...trace.config, ...(trace.taylorseer_order ? { taylorseer_order: trace.taylorseer_order } : {}) });
    const latents = latentsOf();
    const [context] = summary(pipe, { print: false }).contexts;
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
