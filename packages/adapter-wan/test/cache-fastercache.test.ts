// The `fastercache` cache policy on Wan (video, cond and uncond calls per step) against diffusers'
// FasterCache (float32, wan-tiny; made by tools/cache-references-fastercache/fastercache.py with a
// loop that batches [uncond, cond] in one call, as diffusers' denoiser hook needs). ditcache skips
// the uncond call on the steps where diffusers runs only the cond half, rebuilding it from the
// same step's cond output, and forecasts the cond call's self-attention (attn1) where diffusers
// forecasts it: the same steps, the same attention calls, and the run ends at diffusers' latents.
import { describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary } from '@ditcache/core';
import { memoryStats } from '@ditcache/cuda-runtime';

import { relativeL2 } from './helpers.js';
import { wanTinyTraces } from './policy-traces.js';

interface FasterCacheTrace {
  config: Record<string, unknown>;
  uncond_skipped_steps: number[];
  forecast_attention: Record<string, number[]>;
}

/** The sites with at least one forecast call, and their steps. */
function forecastSteps(report: Readonly<Record<string, unknown>> | undefined): Record<string, number[]> {
  const sites = (report?.forecastAttention ?? {}) as Record<string, number[]>;
  return Object.fromEntries(Object.entries(sites).filter(([, steps]) => steps.length > 0));
}

describe('the fastercache policy on Wan (wan-tiny)', () => {
  const { references, traces, pipe, latentsOf } = wanTinyTraces<{ traces: Record<string, FasterCacheTrace> }>('fastercache');

  it.each(Object.keys(references.traces))("%s: diffusers' skipped uncond steps, forecast self-attention calls and latents", (name) => {
    const trace = references.traces[name];
    const before = memoryStats();
    enableCache(pipe, { policy: 'fastercache', ...trace.config });
    const latents = latentsOf();
    const [context] = summary(pipe, { print: false }).contexts;
    expect(context.callReport?.uncondSkippedSteps).toEqual(trace.uncond_skipped_steps);
    expect(forecastSteps(context.callReport)).toEqual(forecastSteps({ forecastAttention: trace.forecast_attention }));
    expect(relativeL2(latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
    // Where diffusers skipped, its latents are far from the uncached ones: the comparison above can fail.
    if (trace.uncond_skipped_steps.length > 0) expect(relativeL2(latents, traces['uncached.latents_out'])).toBeGreaterThan(1e-2);
    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });

  it('a config that never skips is bit for bit the uncached run, and disableCache restores it', () => {
    const before = memoryStats();
    const uncached = latentsOf();
    enableCache(pipe, { policy: 'fastercache', unconditional_batch_skip_range: 1 });
    const never = latentsOf();
    expect(summary(pipe, { print: false }).contexts[0].callReport?.uncondSkippedSteps).toEqual([]);
    expect(disableCache(pipe)).toBe(true);
    const restored = latentsOf();
    expect(Array.from(never.toFloat32Array())).toEqual(Array.from(uncached.toFloat32Array()));
    expect(Array.from(restored.toFloat32Array())).toEqual(Array.from(uncached.toFloat32Array()));
    for (const t of [uncached, never, restored]) t.dispose();
    expect(memoryStats()).toEqual(before);
  });
});
