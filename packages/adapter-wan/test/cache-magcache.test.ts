// The `magcache` cache policy on Wan (video, cond and uncond calls per step) against diffusers'
// MagCache (float32, wan-tiny; made by tools/cache-references-magcache/magcache.py). diffusers
// keeps one MagCache state per cache context ('cond', 'uncond'); ditcache keeps one per announced
// branch: each branch records its own calibration, counts its own steps and skips diffusers'
// steps, and the run ends at diffusers' latents.
import { describe, expect, it } from 'vitest';

import { disableCache, enableCache, magCacheCalibration, magCacheConfigFromCalibration, summary } from '@ditcache/core';
import { memoryStats } from '@ditcache/cuda-runtime';

import { relativeL2 } from './helpers.js';
import { wanTinyTraces } from './policy-traces.js';

type Branches<T> = { cond: T; uncond: T };
interface MagCacheTrace {
  config: { threshold: number; max_skip_steps: number; retention_ratio: number; num_inference_steps: number };
  mag_ratios_source: 'calibrated' | 'flux';
  mag_ratios: number[];
  skipped_steps: Branches<number[]>;
  compared_errors: Branches<Record<string, number>>;
}

function expectErrors(got: Readonly<Record<string, number>>, want: Record<string, number>): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const [step, error] of Object.entries(want)) expect(Math.abs(got[step] - error), `step ${step}`).toBeLessThan(1e-5);
}

describe('the magcache policy on Wan (wan-tiny)', () => {
  const {
    references: reference,
    traces,
    pipe,
    latentsOf,
  } = wanTinyTraces<{ calibration: Branches<number[]>; traces: Record<string, MagCacheTrace> }>('magcache');

  it("calibration records diffusers' ratios per CFG branch and computes every step as the uncached run does, bit for bit", () => {
    const before = memoryStats();
    const uncached = latentsOf();
    enableCache(pipe, { policy: 'magcache', calibrate: true });
    const latents = latentsOf();
    const [context] = magCacheCalibration(summary(pipe, { print: false }));
    expect(context.name).toBe('transformer.blocks');
    expect(context.branches.map((b) => b.branch)).toEqual(['cond', 'uncond']);
    for (const { branch, magRatios } of context.branches) {
      const want = reference.calibration[branch as keyof Branches<unknown>];
      expect(magRatios).toHaveLength(want.length);
      magRatios.forEach((r, i) => expect(Math.abs(r - want[i]), `${branch} step ${i}`).toBeLessThan(1e-4));
    }
    // As diffusers advises for sequential CFG: the conditional branch's ratios.
    expect(magCacheConfigFromCalibration([context])).toEqual({ policy: 'magcache', mag_ratios: context.branches[0].magRatios });
    expect(Array.from(latents.toFloat32Array())).toEqual(Array.from(uncached.toFloat32Array()));
    expect(relativeL2(latents, traces['calibrate.latents_out'])).toBeLessThan(1e-4);
    for (const t of [latents, uncached]) t.dispose();
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });

  it.each(Object.keys(reference.traces))("%s: diffusers' skipped steps and errors per CFG branch, and latents", (name) => {
    const trace = reference.traces[name];
    const before = memoryStats();
    enableCache(pipe, { policy: 'magcache', ...trace.config, mag_ratios: trace.mag_ratios_source === 'flux' ? 'flux' : trace.mag_ratios });
    const latents = latentsOf();
    const [context] = summary(pipe, { print: false }).contexts;
    expect(context.branches.map((b) => b.announcedAs)).toEqual(['cond', 'uncond']);
    expect([...context.cachedSteps], 'cond cached steps').toEqual(trace.skipped_steps.cond);
    expect([...context.cfgCachedSteps], 'uncond cached steps').toEqual(trace.skipped_steps.uncond);
    expectErrors(context.residualDiffs, trace.compared_errors.cond);
    expectErrors(context.cfgResidualDiffs, trace.compared_errors.uncond);
    expect(relativeL2(latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });
});
