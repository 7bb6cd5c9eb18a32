// The engine on SD3 through the registered adapter: cache-dit's traces for every config of the
// goldens, every option at its default (TaylorSeer included, where cache-dit's own default
// fails), and the invariants (threshold 0 changes nothing; disableCache restores the model).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { cacheHandleOf, disableCache, enableCache, summary, supportedPipelines, type CacheConfigInput } from '@ditcache/core';
import { loadSafetensors, memoryStats, type Tensor } from '@ditcache/cuda-runtime';

import { SD3CacheAdapterFactory, StableDiffusion3Pipeline, type SD3GenerateOptions } from '../src/index.js';
import { SETS, goldenRequest, goldens, metaOf, relativeL2, type Trace } from './helpers.js';

/** The config of a trace in ditcache's terms: the same cache-dit keys. */
function configOf(trace: Trace): CacheConfigInput {
  if (!trace.taylorseer_order) return trace.config;
  return { ...trace.config, taylorseer_order: trace.taylorseer_order, enable_encoder_calibrator: trace.enable_encoder_calibrator ?? true };
}

describe.each(SETS)('caching SD3 on %s', (set) => {
  const meta = metaOf(set);
  let pipe: StableDiffusion3Pipeline;
  let ref: Record<string, Tensor>;
  let traces: Record<string, Tensor>;
  let request: SD3GenerateOptions;
  beforeAll(() => {
    pipe = StableDiffusion3Pipeline.fromPretrained(`${goldens}/${set}`);
    ref = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
    traces = loadSafetensors(`${goldens}/${set}/cache_traces.safetensors`);
    request = { ...goldenRequest(ref, meta), decode: false };
  });
  afterAll(() => {
    pipe.dispose();
    for (const t of [...Object.values(ref), ...Object.values(traces)]) t.dispose();
  });

  /** One cached run: its latents (owned by the caller) and the stats of its one context. */
  function cachedRun(config: CacheConfigInput) {
    enableCache(pipe, config);
    const latents = pipe.generate(request).latents;
    const stats = summary(pipe, { print: false }).contexts;
    expect(stats.map((c) => c.name)).toEqual(['transformer.transformerBlocks']);
    expect(disableCache(pipe)).toBe(true);
    return { latents, stats: stats[0] };
  }

  function expectTrace(run: ReturnType<typeof cachedRun>, name: string): void {
    const want = meta.cache_traces[name].stats[0];
    expect([...run.stats.cachedSteps]).toEqual(want.cached_steps);
    expect(Object.keys(run.stats.residualDiffs).sort()).toEqual(Object.keys(want.residual_diffs).sort());
    for (const [step, diff] of Object.entries(want.residual_diffs)) expect(Math.abs(run.stats.residualDiffs[step] - diff) / diff).toBeLessThan(1e-4);
    expect(relativeL2(run.latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
  }

  it.each(Object.keys(meta.cache_traces))("%s: cache-dit's cached steps, diffs and latents, and no tensor left behind", (name) => {
    const before = memoryStats();
    const run = cachedRun(configOf(meta.cache_traces[name]));
    expectTrace(run, name);
    run.latents.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it.each(
    Object.entries(meta.cache_traces)
      .filter(([, t]) => t.taylorseer_order && !t.enable_encoder_calibrator)
      .map(([name]) => name),
  )('%s with the encoder forecast on (the default): the last block ends the encoder stream, so the same steps and bit-identical latents', (name) => {
    const trace = meta.cache_traces[name];
    const withForecast = cachedRun({ ...trace.config, taylorseer_order: trace.taylorseer_order as number });
    const without = cachedRun(configOf(trace));
    expect(withForecast.stats.cachedSteps).toEqual(without.stats.cachedSteps);
    expect(Buffer.compare(withForecast.latents.toBytes(), without.latents.toBytes())).toBe(0);
    withForecast.latents.dispose();
    without.latents.dispose();
  });

  it('threshold 0 gives bit-identical latents, and disableCache restores the model exactly', () => {
    const plain = pipe.generate(request).latents;
    const blocks = pipe.transformer.transformerBlocks;
    enableCache(pipe, { residual_diff_threshold: 0, Fn_compute_blocks: 1, max_warmup_steps: 0 });
    expect(pipe.transformer.transformerBlocks).toHaveLength(1);
    const cachedZero = pipe.generate(request).latents;
    expect(Buffer.compare(cachedZero.toBytes(), plain.toBytes())).toBe(0);
    expect(summary(pipe, { print: false }).cachedSteps).toBe(0);
    disableCache(pipe);
    expect(pipe.transformer.transformerBlocks).toBe(blocks);
    const after = pipe.generate(request).latents;
    expect(Buffer.compare(after.toBytes(), plain.toBytes())).toBe(0);
    for (const t of [plain, cachedZero, after]) t.dispose();
  });
});

describe('every option at its default', () => {
  const set = 'sd3-tiny';
  const meta = metaOf(set);

  it("enableCache(pipe) and enableCache(pipe, { enableTaylorseer: true }) give cache-dit's defaults, where cache-dit's own TaylorSeer default fails", () => {
    // cache-dit forecasts the encoder stream by default and asserts at the first cached step,
    // since the last block (a middle block with Fn 8, Bn 0) returns none; its trace ran without.
    expect(meta.cache_traces.defaults_TS1.cache_dit_with_encoder_calibrator).toMatch(/^AssertionError/);
    using pipe = StableDiffusion3Pipeline.fromPretrained(`${goldens}/${set}`);
    const ref = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
    const traces = loadSafetensors(`${goldens}/${set}/cache_traces.safetensors`);
    const request: SD3GenerateOptions = {
      promptEmbeds: ref.prompt_embeds,
      pooledPromptEmbeds: ref.pooled_prompt_embeds,
      negativePromptEmbeds: ref.negative_prompt_embeds,
      negativePooledPromptEmbeds: ref.negative_pooled_prompt_embeds,
      latents: ref.latents_in,
      height: meta.height,
      width: meta.width,
      guidanceScale: meta.guidance_scale,
      decode: false,
    };
    expect(meta.num_inference_steps).toBe(28);
    for (const [name, config] of [
      ['defaults', undefined],
      ['defaults_TS1', { enableTaylorseer: true }],
    ] as const) {
      const handle = enableCache(pipe, config);
      expect(handle.contexts[0].config).toMatchObject({
        fnComputeBlocks: 8,
        bnComputeBlocks: 0,
        maxWarmupSteps: 8,
        residualDiffThreshold: 0.08,
        enableEncoderTaylorseer: true,
      });
      const latents = pipe.generate(request).latents;
      const stats = summary(pipe, { print: false }).contexts[0];
      expect([...stats.cachedSteps]).toEqual(meta.cache_traces[name].stats[0].cached_steps);
      expect(relativeL2(latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
      latents.dispose();
      disableCache(pipe);
    }
    for (const t of [...Object.values(ref), ...Object.values(traces)]) t.dispose();
  });
});

describe('registration', () => {
  it('importing the package registers its adapter: supportedPipelines() lists it and enableCache(pipe) finds it', () => {
    expect(supportedPipelines()).toContain('StableDiffusion3Pipeline');
    using pipe = StableDiffusion3Pipeline.fromPretrained(`${goldens}/sd35-tiny`);
    const handle = enableCache(pipe, { Fn_compute_blocks: 1 });
    expect(handle.adapter.pipe).toBe(pipe);
    expect(cacheHandleOf(pipe.transformer)).toBe(handle);
    expect(
      new SD3CacheAdapterFactory()
        .createBlockAdapter({ pipe, transformer: pipe.transformer })
        .resolveChains()
        .map((c) => c.blocks.length),
    ).toEqual([1]);
    disableCache(pipe);
  });
});
