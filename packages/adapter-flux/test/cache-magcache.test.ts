// The `magcache` cache policy on FLUX against diffusers' MagCache (float32, flux-tiny; made by
// tools/cache-references-magcache/magcache.py): the calibration run records diffusers' ratios
// and changes nothing, and each config skips diffusers' steps, accumulates its errors and ends
// at its latents, in one chain (double and single blocks together, as diffusers hooks them) and
// in two.
import { describe, expect, it } from 'vitest';

import { disableCache, enableCache, magCacheCalibration, magCacheConfigFromCalibration, summary } from '@ditcache/core';
import { memoryStats } from '@ditcache/cuda-runtime';

import { fluxBlockAdapter } from '../src/index.js';
import { relativeL2 } from './helpers.js';
import { fluxTinyTraces } from './policy-traces.js';

interface MagCacheTrace {
  config: { threshold: number; max_skip_steps: number; retention_ratio: number; num_inference_steps: number };
  mag_ratios_source: 'calibrated' | 'flux';
  mag_ratios: number[];
  skipped_steps: { cond: number[] };
  compared_errors: { cond: Record<string, number> };
}

describe('the magcache policy on FLUX (flux-tiny)', () => {
  const {
    references: reference,
    traces,
    pipe,
    latentsOf,
  } = fluxTinyTraces<{ calibration: { cond: number[] }; traces: Record<string, MagCacheTrace> }>('magcache');
  const configOf = (trace: MagCacheTrace) => ({
    policy: 'magcache',
    ...trace.config,
    mag_ratios: trace.mag_ratios_source === 'flux' ? 'flux' : trace.mag_ratios,
  });

  it("calibration records diffusers' ratios and computes every step as the uncached run does, bit for bit", () => {
    const before = memoryStats();
    const uncached = latentsOf();
    enableCache(pipe, { policy: 'magcache', calibrate: true });
    const latents = latentsOf();
    const [context] = magCacheCalibration(summary(pipe, { print: false }));
    expect(context.branches.map((b) => b.branch)).toEqual(['cond']);
    const ratios = context.branches[0].magRatios;
    const want = reference.calibration.cond;
    expect(ratios).toHaveLength(want.length);
    ratios.forEach((r, i) => expect(Math.abs(r - want[i]), `step ${i}`).toBeLessThan(1e-4));
    expect(magCacheConfigFromCalibration([context])).toEqual({ policy: 'magcache', mag_ratios: ratios });
    expect(Array.from(latents.toFloat32Array())).toEqual(Array.from(uncached.toFloat32Array()));
    expect(relativeL2(latents, traces['calibrate.latents_out'])).toBeLessThan(1e-4);
    for (const t of [latents, uncached]) t.dispose();
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });

  it.each(Object.keys(reference.traces))("%s: diffusers' skipped steps, errors and latents", (name) => {
    const trace = reference.traces[name];
    const before = memoryStats();
    enableCache(pipe, configOf(trace));
    const latents = latentsOf();
    const [context] = summary(pipe, { print: false }).contexts;
    expect(context.name).toBe('transformer.transformerBlocks+singleTransformerBlocks');
    expect([...context.cachedSteps]).toEqual(trace.skipped_steps.cond);
    const want = trace.compared_errors.cond;
    expect(Object.keys(context.residualDiffs).sort()).toEqual(Object.keys(want).sort());
    for (const [step, error] of Object.entries(want)) expect(Math.abs(context.residualDiffs[step] - error), `step ${step}`).toBeLessThan(1e-5);
    expect(relativeL2(latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });

  it('two chains (double and single blocks in two contexts) skip the same steps; their residuals add up to the whole stack’s', () => {
    const name = Object.keys(reference.traces)[0];
    const trace = reference.traces[name];
    enableCache(fluxBlockAdapter({ pipe, transformer: pipe.transformer }, { layout: 'two-lists' }), configOf(trace));
    const latents = latentsOf();
    const contexts = summary(pipe, { print: false }).contexts;
    expect(contexts.map((c) => c.name)).toEqual(['transformer.transformerBlocks', 'transformer.singleTransformerBlocks']);
    for (const c of contexts) expect([...c.cachedSteps]).toEqual(trace.skipped_steps.cond);
    expect(relativeL2(latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
    latents.dispose();
    disableCache(pipe);
  });
});
