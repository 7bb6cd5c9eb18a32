// The `scm` cache policy on Wan (video, separate CFG branches) against cache-dit 1.5's steps
// computation masks: for every preset, 'static' and 'dynamic', the mask cache-dit's steps_mask
// gave, the steps it cached per CFG branch (cond is its non-CFG branch), its diffs and its final
// latents (tools/cache-references-scm/scm.py made them, float32).
import { describe, expect, it } from 'vitest';

import { disableCache, enableCache, scmMask, summary, type ScmPreset } from '@ditcache/core';
import { memoryStats } from '@ditcache/cuda-runtime';

import { relativeL2 } from './helpers.js';
import { wanTinyTraces } from './policy-traces.js';

type Branches<T> = { non_cfg: T; cfg: T };
interface ScmTrace {
  config: Record<string, unknown> & { mask_policy: ScmPreset };
  taylorseer_order: number | null;
  mask: string;
  cached_steps: Branches<number[]>;
  residual_diffs: Branches<Record<string, number>>;
}

function expectDiffs(got: Readonly<Record<string, number>>, want: Record<string, number>): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const [step, diff] of Object.entries(want)) expect(Math.abs(got[step] - diff)).toBeLessThan(1e-3);
}

describe('the scm policy on Wan (wan-tiny)', () => {
  const { meta, references: scm, traces, pipe, latentsOf } = wanTinyTraces<{ traces: Record<string, ScmTrace> }>('scm');

  it.each(Object.keys(scm.traces))("%s: cache-dit's mask, cached steps and diffs per CFG branch, and latents", (name) => {
    const trace = scm.traces[name];
    expect(scmMask(trace.config.mask_policy, meta.num_inference_steps).join('')).toBe(trace.mask);
    const before = memoryStats();
    enableCache(pipe, { policy: 'scm', ...trace.config, ...(trace.taylorseer_order ? { taylorseer_order: trace.taylorseer_order } : {}) });
    const latents = latentsOf();
    const [context] = summary(pipe, { print: false }).contexts;
    expect(context.name).toBe('transformer.blocks');
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
