// The `fastercache` cache policy on Wan (video, cond and uncond calls per step) against diffusers'
// FasterCache (float32, wan-tiny and its Wan 2.2 set; made by
// tools/cache-references-fastercache/fastercache.py with a loop that batches [uncond, cond] in one
// call, as diffusers' denoiser hook needs). ditcache skips the uncond call on the steps where
// diffusers runs only the cond half, rebuilding it from the same step's cond output, and forecasts
// the cond call's self-attention (attn1) where diffusers forecasts it: the same steps, the same
// attention calls, and the run ends at diffusers' latents. Wan 2.2's experts each keep their own
// state and count their own steps, as diffusers' hooks on each transformer do.
import { describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary, type ContextStats } from '@ditcache/core';
import { memoryStats, type Tensor } from '@ditcache/cuda-runtime';

import type { WanPipeline } from '../src/index.js';
import { relativeL2 } from './helpers.js';
import { wanTinyTraces } from './policy-traces.js';

interface FasterCacheTrace {
  config: Record<string, unknown>;
  /** Per transformer ('transformer', 'transformer_2'), the pipeline steps whose uncond half was skipped. */
  uncond_skipped_steps: Record<string, number[]>;
  /** Per attention module, named '<transformer>.<module>', the pipeline steps it was forecast. */
  forecast_attention: Record<string, number[]>;
}
type References = { traces: Record<string, FasterCacheTrace> };

/** The sites with at least one forecast call, and their steps. */
function forecastSteps(sites: Readonly<Record<string, number[]>>): Record<string, number[]> {
  return Object.fromEntries(Object.entries(sites).filter(([, steps]) => steps.length > 0));
}

/** Each context (one per transformer) against diffusers' hooks on that transformer. */
function expectDiffusersDecisions(contexts: readonly ContextStats[], trace: FasterCacheTrace): void {
  expect(contexts.map((c) => c.name.split('.')[0]).sort()).toEqual(Object.keys(trace.uncond_skipped_steps).sort());
  for (const context of contexts) {
    const transformer = context.name.split('.')[0];
    expect(context.callReport?.uncondSkippedSteps, `${transformer} uncond`).toEqual(trace.uncond_skipped_steps[transformer]);
    const sites = (context.callReport?.forecastAttention ?? {}) as Record<string, number[]>;
    const want = Object.fromEntries(Object.entries(trace.forecast_attention).filter(([site]) => site.startsWith(`${transformer}.`)));
    expect(
      forecastSteps(Object.fromEntries(Object.entries(sites).map(([site, steps]) => [`${transformer}.${site}`, steps]))),
      `${transformer} attention`,
    ).toEqual(forecastSteps(want));
  }
}

/** The check of one reference config: decisions, latents, and that the comparison can fail. */
function expectReference(pipe: WanPipeline, latentsOf: () => Tensor, trace: FasterCacheTrace, traces: Record<string, Tensor>, name: string): void {
  const before = memoryStats();
  enableCache(pipe, { policy: 'fastercache', ...trace.config });
  const latents = latentsOf();
  expectDiffusersDecisions(summary(pipe, { print: false }).contexts, trace);
  expect(relativeL2(latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
  // Where diffusers skipped, its latents are far from the uncached ones: the comparison above can fail.
  if (Object.values(trace.uncond_skipped_steps).flat().length > 0) expect(relativeL2(latents, traces['uncached.latents_out'])).toBeGreaterThan(1e-2);
  latents.dispose();
  expect(disableCache(pipe)).toBe(true);
  expect(memoryStats()).toEqual(before);
}

describe('the fastercache policy on Wan (wan-tiny)', () => {
  const { references, traces, pipe, latentsOf } = wanTinyTraces<References>('fastercache');

  it.each(Object.keys(references.traces))("%s: diffusers' skipped uncond steps, forecast self-attention calls and latents", (name) => {
    expectReference(pipe, latentsOf, references.traces[name], traces, name);
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

describe('the fastercache policy on Wan 2.2 (wan-tiny/wan22, two experts)', () => {
  const { references, traces, pipe, latentsOf } = wanTinyTraces<References>('fastercache', 'wan-tiny/wan22');

  it.each(Object.keys(references.traces))("%s: diffusers' decisions per expert, and latents", (name) => {
    expectReference(pipe, latentsOf, references.traces[name], traces, name);
  });
});
