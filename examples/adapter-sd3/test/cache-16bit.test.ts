// The cache engine on SD3 under bfloat16, against cache-dit's DBCache / TaylorSeer on diffusers'
// StableDiffusion3Pipeline loaded in torch_dtype=torch.bfloat16 (test/goldens/{set}/cache_traces_bf16.*,
// from tools/cache-references-16bit/sd3.py at the repository root): the criterion is that our
// bf16 run caches the steps cache-dit's bf16 run caches wherever cache-dit's residual diff is farther
// than 1% from the threshold.
//
// Our diffs reduce in float64 over the bf16 residuals; cache-dit's are bf16 (each mean and their
// ratio rounded to bfloat16). So the band is taken on the float64 diff of cache-dit's own bf16
// residuals, which the tool records beside cache-dit's value, and our diffs are compared with it.
//
// On SD3 the 1% band of the criterion is out of reach of any implementation that does not round
// bit for bit as PyTorch does. A diff is |R_prev - R| over |R_prev|, and SD3's are near 0.05 here,
// so it magnifies a relative error of the residuals about 20 times; our bf16 model and diffusers'
// round a few ops differently (sixteen-bit.test.ts: each block within 0.35 bf16 units of
// diffusers' given its inputs), and that alone moves a diff by several percent. cache-dit's own
// run shows it: moving its initial latents by about one bf16 unit moves its float64 diffs by up to
// 17% on sd3-tiny and 6% on sd35-tiny (the tool records it per config as
// residual_diffs_float64_sensitivity; 0.4% on FLUX, 2% on Wan, 1% on HiDream). So here the band is
// that measured sensitivity, per set: decisions must be equal wherever cache-dit's diff is farther
// than it from the threshold, and our diffs must be within it of cache-dit's.
import { readFileSync } from 'node:fs';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary, type CacheConfigInput } from '@ditcache/core';
import { loadSafetensors, memoryStats, tidy, type Tensor } from '@ditcache/cuda-runtime';

import { StableDiffusion3Pipeline, type SD3GenerateOptions } from '../src/index.js';
import { SETS, goldenRequest, goldens, metaOf, relativeL2 } from './helpers.js';

interface ContextTrace {
  source: string;
  executed_steps: number;
  cached_steps: number[];
  residual_diffs: Record<string, number>;
  residual_diffs_float64: Record<string, number>;
  cfg_cached_steps: number[];
}
interface Trace {
  config: Record<string, number>;
  taylorseer_order: number | null;
  enable_encoder_calibrator: boolean | null;
  float32_trace: string;
  margin: number;
  latents_out_sensitivity: number;
  residual_diffs_float64_sensitivity: number;
  stats: ContextTrace[];
}

/** The band: a decision is asserted where cache-dit's (float64) diff is farther than this (relative) from the threshold. */
const NEAR_THRESHOLD = 0.01;
/** cache-dit's default threshold, for the configs that leave it unset. */
const DEFAULT_THRESHOLD = 0.08;
/**
 * The band and the diff tolerance of a set: the largest relative move of cache-dit's own float64
 * diffs when its initial latents move by about one bf16 unit, over the set's configs (0.168 on
 * sd3-tiny, 0.057 on sd35-tiny), never below the 1%. Measured: our diffs are within 12.2%
 * of cache-dit's float64 diffs on sd3-tiny (2.5% on average) and 3.2% on sd35-tiny (0.9%).
 */
function bandOf(traces: Record<string, Trace>): number {
  return Math.max(NEAR_THRESHOLD, ...Object.values(traces).map((t) => t.residual_diffs_float64_sensitivity));
}
/**
 * Our cached final latents against cache-dit's, relative L2, over our uncached bf16 latents
 * against diffusers' uncached bf16 run (pipeline_bf16.safetensors), over the config's
 * `latents_out_sensitivity` where that is above 1: how much farther cache-dit's own cached run
 * carries a small difference of its inputs than its uncached run (the tool measured it; a
 * TaylorSeer forecast extrapolates finite differences of residuals, which multiplies any
 * difference of them). So caching may carry the 16-bit runs' distance as far as it carries any
 * other, and add nothing of its own. Measured: 0.98-1.25 (our cached latents are 6.6e-3 to 1.2e-2
 * from cache-dit's, the uncached ones 7.2e-3 on sd3-tiny and 6.5e-3 on sd35-tiny).
 */
const LATENTS_RATIO = 1.5;

/** The config of a trace in ditcache's terms: the same cache-dit keys. */
function configOf(trace: Trace): CacheConfigInput {
  if (!trace.taylorseer_order) return trace.config;
  return { ...trace.config, taylorseer_order: trace.taylorseer_order, enable_encoder_calibrator: trace.enable_encoder_calibrator ?? true };
}

/**
 * Walks the steps in order: wherever cache-dit compared a diff farther than `band` from the
 * threshold, or decided without one (warmup, caps), we must decide alike. At a step closer than
 * that a different decision is allowed, and the runs part there (their references differ from
 * then on), so nothing after it is compared. Returns the first such step.
 */
function expectSameDecisions(
  ours: { cachedSteps: readonly number[]; residualDiffs: Readonly<Record<string, number>> },
  theirs: ContextTrace,
  threshold: number,
  band: number,
): number | undefined {
  const oursCached = new Set(ours.cachedSteps);
  const theirsCached = new Set(theirs.cached_steps);
  for (let step = 0; step < theirs.executed_steps; step++) {
    const key = String(step);
    const exact = theirs.residual_diffs_float64[key];
    const near = exact !== undefined && Math.abs(exact - threshold) / threshold <= band;
    if (near && oursCached.has(step) !== theirsCached.has(step)) return step;
    expect(oursCached.has(step), `step ${step}: cached (cache-dit's diff ${exact}, threshold ${threshold})`).toBe(theirsCached.has(step));
    expect(key in ours.residualDiffs, `step ${step}: compared with the threshold`).toBe(exact !== undefined);
  }
  return undefined;
}

describe.each(SETS)('caching SD3 in bfloat16 on %s, against cache-dit in bfloat16', (set) => {
  const meta = metaOf(set);
  const refs = JSON.parse(readFileSync(`${goldens}/${set}/cache_traces_bf16.json`, 'utf-8')) as {
    dtype: string;
    pipeline: Record<string, number>;
    cache_traces: Record<string, Trace>;
  };
  let pipe: StableDiffusion3Pipeline;
  let inputs: Record<string, Tensor>;
  let traces: Record<string, Tensor>;
  let request: SD3GenerateOptions;
  let uncachedDistance: number;
  const band = bandOf(refs.cache_traces);
  beforeAll(() => {
    pipe = StableDiffusion3Pipeline.fromPretrained(`${goldens}/${set}`, { dtype: 'bfloat16' });
    // The float32 goldens' inputs: the pipeline casts them as the tool's bf16 pipeline did.
    inputs = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
    traces = loadSafetensors(`${goldens}/${set}/cache_traces_bf16.safetensors`);
    request = { ...goldenRequest(inputs, meta), decode: false };
    using plain = pipe.generate(request).latents;
    const diffusers = loadSafetensors(`${goldens}/${set}/pipeline_bf16.safetensors`);
    uncachedDistance = tidy(() => relativeL2(plain.cast('float32'), diffusers.latents_out));
    for (const t of Object.values(diffusers)) t.dispose();
  });
  afterAll(() => {
    pipe.dispose();
    for (const t of [...Object.values(inputs), ...Object.values(traces)]) t.dispose();
  });

  it('has references that put every step under the criterion, from bf16 runs that cache', () => {
    expect(refs.dtype).toBe('bfloat16');
    expect(refs.pipeline.num_inference_steps).toBe(meta.num_inference_steps);
    const names = Object.keys(refs.cache_traces);
    expect(names.length).toBe(Object.keys(meta.cache_traces).length);
    for (const name of names) {
      const trace = refs.cache_traces[name];
      const threshold = trace.config.residual_diff_threshold ?? DEFAULT_THRESHOLD;
      expect(trace.margin, name).toBeGreaterThan(2 * NEAR_THRESHOLD);
      expect(trace.latents_out_sensitivity, name).toBeLessThan(2);
      expect(trace.residual_diffs_float64_sensitivity, name).toBeLessThan(set === 'sd3-tiny' ? 0.2 : 0.07);
      expect(trace.stats.map((s) => s.source)).toEqual(['transformer.transformer_blocks']);
      const [context] = trace.stats;
      expect(context.cached_steps.length, name).toBeGreaterThan(0);
      expect(context.cfg_cached_steps, 'CFG is batched').toEqual([]);
      for (const d of Object.values(context.residual_diffs_float64)) expect(Math.abs(d - threshold) / threshold, name).toBeGreaterThan(2 * NEAR_THRESHOLD);
    }
    expect(names.filter((n) => refs.cache_traces[n].taylorseer_order).length).toBeGreaterThanOrEqual(2);
  });

  it.each(Object.keys(refs.cache_traces))("%s: cache-dit's bf16 decisions, its diffs and latents", (name) => {
    const trace = refs.cache_traces[name];
    const threshold = trace.config.residual_diff_threshold ?? DEFAULT_THRESHOLD;
    const before = memoryStats();
    enableCache(pipe, configOf(trace));
    const latents = pipe.generate(request).latents;
    const contexts = summary(pipe, { print: false }).contexts;
    expect(contexts.map((c) => c.name)).toEqual(['transformer.transformerBlocks']);
    expect(latents.dtype).toBe('bfloat16');

    const [got] = contexts;
    const [want] = trace.stats;
    expect(got.steps).toBe(want.executed_steps);
    expect(got.cfgCachedSteps).toEqual([]);
    const parted = expectSameDecisions(got, want, threshold, band);
    const compared = Object.entries(want.residual_diffs_float64).filter(([step]) => parted === undefined || Number(step) <= parted);
    for (const [step, exact] of compared) {
      const diff = got.residualDiffs[step];
      expect(Math.abs(diff - exact) / exact, `step ${step}: ours ${diff}, cache-dit's residuals ${exact}`).toBeLessThan(band);
    }
    if (parted === undefined) {
      expect([...got.cachedSteps]).toEqual(want.cached_steps);
      const distance = tidy(() => relativeL2(latents.cast('float32'), traces[`${name}.latents_out`].cast('float32')));
      expect(distance).toBeLessThan(LATENTS_RATIO * Math.max(1, trace.latents_out_sensitivity) * uncachedDistance);
    } else {
      // Parted within the band: our decision there is the other side of a diff that close to the threshold.
      const exact = want.residual_diffs_float64[String(parted)];
      expect(Math.abs(exact - threshold) / threshold, `parted at step ${parted}`).toBeLessThanOrEqual(band);
    }

    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });
});
