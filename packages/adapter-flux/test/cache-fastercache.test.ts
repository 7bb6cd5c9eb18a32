// The `fastercache` cache policy on FLUX against diffusers' FasterCache (float32, flux-tiny; made by
// tools/cache-references-fastercache/fastercache.py). FLUX is guidance-distilled there, so only the
// attention part acts (every attention module is self-attention): the same forecast calls per
// module, and diffusers' latents. FLUX's packed token output has no (H, W) planes, so the CFG part is refused
// for true CFG with an error that says what to do.
import { describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary } from '@ditcache/core';
import { memoryStats } from '@ditcache/cuda-runtime';

import { relativeL2 } from './helpers.js';
import { fluxTinyTraces } from './policy-traces.js';

interface FasterCacheTrace {
  config: Record<string, unknown>;
  uncond_skipped_steps: { transformer: number[] };
  /** Per attention module, named 'transformer.<module>', the pipeline steps it was forecast. */
  forecast_attention: Record<string, number[]>;
}

/** diffusers' forecast steps per module, named as the adapter names its sites. */
function siteSteps(trace: FasterCacheTrace): Record<string, number[]> {
  return Object.fromEntries(Object.entries(trace.forecast_attention).map(([site, steps]) => [site.replace(/^transformer\./, ''), steps]));
}

describe('the fastercache policy on FLUX (flux-tiny)', () => {
  const { references, ref, traces, pipe, meta, latentsOf } = fluxTinyTraces<{ traces: Record<string, FasterCacheTrace> }>('fastercache');

  it.each(Object.keys(references.traces))("%s: diffusers' forecast attention calls and latents (guidance-distilled)", (name) => {
    const trace = references.traces[name];
    const before = memoryStats();
    enableCache(pipe, { policy: 'fastercache', ...trace.config, is_guidance_distilled: true });
    const latents = latentsOf();
    const [context] = summary(pipe, { print: false }).contexts;
    expect(trace.uncond_skipped_steps.transformer).toEqual([]);
    expect(context.callReport).toEqual({ uncondSkippedSteps: [], forecastAttention: siteSteps(trace) });
    expect(relativeL2(latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
    // Where diffusers forecast, its latents are far from the uncached ones: the comparison above can fail.
    if (Object.values(trace.forecast_attention).some((steps) => steps.length > 0)) {
      expect(relativeL2(latents, traces['uncached.latents_out'])).toBeGreaterThan(1e-3);
    }
    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });

  it('a config that never forecasts is bit for bit the uncached run, and disableCache restores it', () => {
    const before = memoryStats();
    const uncached = latentsOf();
    enableCache(pipe, { policy: 'fastercache', ...references.traces.never.config, is_guidance_distilled: true });
    const never = latentsOf();
    expect(summary(pipe, { print: false }).contexts[0].callReport).toEqual({
      uncondSkippedSteps: [],
      forecastAttention: siteSteps(references.traces.never),
    });
    expect(disableCache(pipe)).toBe(true);
    const restored = latentsOf();
    expect(Array.from(never.toFloat32Array())).toEqual(Array.from(uncached.toFloat32Array()));
    expect(Array.from(restored.toFloat32Array())).toEqual(Array.from(uncached.toFloat32Array()));
    for (const t of [uncached, never, restored]) t.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it('warns once per config when a run without CFG is not declared guidance-distilled, as nothing can then be skipped', () => {
    const warnings: string[] = [];
    const listen = (w: Error) => warnings.push(w.message);
    process.on('warning', listen);
    enableCache(pipe, { policy: 'fastercache' });
    const latents = latentsOf();
    latentsOf().dispose(); // a second run under the same config does not warn again
    const report = summary(pipe, { print: false }).contexts[0].callReport;
    expect(report?.uncondSkippedSteps).toEqual([]);
    expect(Object.values(report?.forecastAttention as Record<string, number[]>).flat()).toEqual([]);
    latents.dispose();
    disableCache(pipe);
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        process.off('warning', listen);
        expect(warnings.filter((w) => w.includes("'fastercache'"))).toEqual([expect.stringMatching(/step 0 made no uncond call.*is_guidance_distilled: true/)]);
        resolve();
      }),
    );
  });

  it("refuses the CFG part on FLUX's packed tokens with true CFG, naming tensor_format and is_guidance_distilled", () => {
    const before = memoryStats();
    enableCache(pipe, { policy: 'fastercache' });
    expect(() =>
      pipe.generate({
        promptEmbeds: ref.prompt_embeds,
        pooledPromptEmbeds: ref.pooled_prompt_embeds,
        negativePromptEmbeds: ref.prompt_embeds,
        negativePooledPromptEmbeds: ref.pooled_prompt_embeds,
        trueCfgScale: 2,
        latents: ref.latents_in,
        height: meta.height,
        width: meta.width,
        numInferenceSteps: 2,
        decode: false,
      }),
    ).toThrow(/tensor_format 'BCFHW' needs a transformer output of rank 5 .*got shape \[1,64,16\].*is_guidance_distilled: true/);
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });
});
