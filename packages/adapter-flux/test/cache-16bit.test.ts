// The cache engine under bfloat16, against cache-dit's DBCache / TaylorSeer on diffusers' FluxPipeline
// loaded with torch_dtype=torch.bfloat16 (test/goldens/{set}/cache_traces_bf16.*, from
// tools/cache-references-16bit/flux.py at the repository root): the criterion is that our
// bf16 run caches the steps cache-dit's bf16 run caches wherever cache-dit's residual diff is farther
// than 1% from the threshold.
//
// Our diffs reduce in float64 over the bf16 residuals widened to float32; cache-dit's are bf16 (each
// mean and their ratio rounded to bfloat16, up to 0.8% from the float64 diff of its own residuals on
// these traces). So the diffs are compared with the float64 diff of cache-dit's own bf16 residuals,
// which the tool records beside cache-dit's value; what is left between them is that our bf16 model
// and diffusers' round a few ops differently (sixteen-bit.test.ts: within 1 bf16 unit), which moves a
// residual by a fraction of a unit and a diff of two residuals far less (DIFF_TOLERANCE below).
import { readFileSync } from 'node:fs';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary } from '@ditcache/core';
import { loadSafetensors, memoryStats, tidy, type Tensor } from '@ditcache/cuda-runtime';

import { FluxPipeline, type FluxGenerateOptions } from '../src/index.js';
import { goldens, localGoldens, relativeL2 } from './helpers.js';
import { NEAR_THRESHOLD, cacheConfigOf, expectBranchMatches, ourBranches, theirBranches, type Trace16 } from '../../../scripts/testing/cache-16bit.js';

/**
 * |our diff - the float64 diff of cache-dit's bf16 residuals| / the latter, at every step both
 * compared. Measured: at most 0.32% on flux-tiny, 0.49% on flux-tiny-guidance (a Fn residual is the
 * difference of two hidden states, so a bf16 unit of those is a larger part of it). A diff taken on
 * other tensors, or a float32 run's, is 5-15% away.
 */
const DIFF_TOLERANCE = 0.01;
/**
 * The same against cache-dit's own diff, which four bf16 roundings (two means, the division, and the
 * elementwise a - b) move by up to 0.8% more. Measured: at most 0.79% on flux-tiny, 0.94% on
 * flux-tiny-guidance.
 */
const BF16_DIFF_TOLERANCE = 0.018;
/**
 * Relative L2 of our final bf16 latents against cache-dit's: the bound of the uncached bf16 pipeline
 * against diffusers' (3 bf16 units, 3 x 2^-8; sixteen-bit.test.ts), since a cached step adds the
 * stored residual or forecast both sides computed alike. Measured: at most 0.0042 on flux-tiny, 0.0038
 * on flux-tiny-guidance (about one unit); caching itself moves these latents 0.008-0.06 away from the
 * uncached ones (not at all for F2B1 on flux-tiny-guidance, whose 3 blocks leave no middle block).
 */
const LATENTS_TOLERANCE = 3 * 2 ** -8;

describe.each(['flux-tiny', 'flux-tiny-guidance'])('caching FLUX in bfloat16 on %s, against cache-dit in bfloat16', (set) => {
  const refs = JSON.parse(readFileSync(`${localGoldens}/${set}/cache_traces_bf16.json`, 'utf-8')) as {
    dtype: string;
    pipeline: Record<string, number>;
    cache_traces: Record<string, Trace16>;
  };
  let pipe: FluxPipeline;
  let inputs: Record<string, Tensor>;
  let traces: Record<string, Tensor>;
  let request: FluxGenerateOptions;
  beforeAll(() => {
    pipe = FluxPipeline.fromPretrained(`${goldens}/${set}`, { dtype: 'bfloat16' });
    // The float32 goldens' inputs: the pipeline rounds them to bf16 as the tool did with .to(bfloat16).
    inputs = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
    traces = loadSafetensors(`${localGoldens}/${set}/cache_traces_bf16.safetensors`);
    const p = refs.pipeline;
    request = {
      promptEmbeds: inputs.prompt_embeds,
      pooledPromptEmbeds: inputs.pooled_prompt_embeds,
      latents: inputs.latents_in,
      height: p.height,
      width: p.width,
      numInferenceSteps: p.num_inference_steps,
      guidanceScale: p.guidance_scale,
      decode: false,
    };
  });
  afterAll(() => {
    pipe.dispose();
    for (const t of [...Object.values(inputs), ...Object.values(traces)]) t.dispose();
  });

  it('has references that put every step under the criterion, from bf16 runs that cache', () => {
    expect(refs.dtype).toBe('bfloat16');
    const names = Object.keys(refs.cache_traces);
    expect(names.length).toBeGreaterThanOrEqual(8);
    for (const name of names) {
      const trace = refs.cache_traces[name];
      expect(trace.margin, name).toBeGreaterThan(2 * NEAR_THRESHOLD);
      expect(traces[`${name}.latents_out`].dtype, name).toBe('bfloat16');
    }
    expect(names.filter((n) => refs.cache_traces[n].stats[0].cached_steps.length > 0).length).toBeGreaterThanOrEqual(7);
    expect(names.filter((n) => refs.cache_traces[n].taylorseer_order).length).toBeGreaterThanOrEqual(2);
  });

  it.each(Object.keys(refs.cache_traces))("%s: cache-dit's bf16 decisions, diffs and latents", (name) => {
    const trace = refs.cache_traces[name];
    const theirs = trace.stats[0];
    const threshold = trace.config.residual_diff_threshold;
    const before = memoryStats();
    enableCache(pipe, cacheConfigOf(trace));
    const latents = pipe.generate(request).latents;
    const stats = summary(pipe, { print: false }).contexts;
    expect(stats).toHaveLength(1);
    const ours = stats[0];
    expect(latents.dtype).toBe('bfloat16');

    const tolerance = { exact: DIFF_TOLERANCE, bf16: BF16_DIFF_TOLERANCE };
    expectBranchMatches(ourBranches(ours, false)[0], theirBranches(theirs, false)[0], threshold, refs.pipeline.num_inference_steps, set, tolerance);
    const distance = tidy(() => relativeL2(latents.cast('float32'), traces[`${name}.latents_out`].cast('float32')));
    expect(distance).toBeLessThan(LATENTS_TOLERANCE);

    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });
});
