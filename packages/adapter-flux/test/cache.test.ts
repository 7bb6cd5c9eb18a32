// The engine on the real model: cache-dit's traces for every config of the goldens, and the
// invariants (threshold 0 changes nothing; disableCache restores the model exactly).
import { readFileSync } from 'node:fs';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { cacheHandleOf, disableCache, enableCache, summary } from '@ditcache/core';
import { loadSafetensors, memoryStats, tidy, type Tensor } from '@ditcache/cuda-runtime';

import { FluxPipeline, fluxBlockAdapter, type FluxGenerateOptions } from '../src/index.js';
import { goldens, relativeL2 } from './helpers.js';

interface Trace {
  config: Record<string, number>;
  taylorseer_order: number | null;
  stats: { cached_steps: number[]; residual_diffs: Record<string, number> }[];
}

describe.each(['flux-tiny', 'flux-tiny-guidance'])('caching FLUX on %s', (set) => {
  const meta = JSON.parse(readFileSync(`${goldens}/${set}/meta.json`, 'utf-8')) as Record<string, unknown> & { cache_traces: Record<string, Trace> };
  let pipe: FluxPipeline;
  let ref: Record<string, Tensor>;
  let traces: Record<string, Tensor>;
  let request: FluxGenerateOptions;
  beforeAll(() => {
    pipe = FluxPipeline.fromPretrained(`${goldens}/${set}`);
    ref = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
    traces = loadSafetensors(`${goldens}/${set}/cache_traces.safetensors`);
    request = {
      promptEmbeds: ref.prompt_embeds,
      pooledPromptEmbeds: ref.pooled_prompt_embeds,
      latents: ref.latents_in,
      height: meta.height as number,
      width: meta.width as number,
      numInferenceSteps: meta.num_inference_steps as number,
      guidanceScale: meta.guidance_scale as number,
      decode: false,
    };
  });
  afterAll(() => {
    pipe.dispose();
    for (const t of [...Object.values(ref), ...Object.values(traces)]) t.dispose();
  });

  const latentsOf = (): Tensor => pipe.generate(request).latents;

  it.each(Object.keys(meta.cache_traces))("%s: cache-dit's cached steps, diffs and latents", (name) => {
    const trace = meta.cache_traces[name];
    const before = memoryStats();
    enableCache(pipe, { ...trace.config, ...(trace.taylorseer_order ? { taylorseer_order: trace.taylorseer_order } : {}) });
    const latents = latentsOf();
    const stats = summary(pipe, { print: false }).contexts;
    expect(stats).toHaveLength(1);
    expect(stats[0].name).toBe('transformer.transformerBlocks+singleTransformerBlocks');
    expect([...stats[0].cachedSteps]).toEqual(trace.stats[0].cached_steps);
    const want = trace.stats[0].residual_diffs;
    expect(Object.keys(stats[0].residualDiffs).sort()).toEqual(Object.keys(want).sort());
    for (const [step, diff] of Object.entries(want)) expect(Math.abs(stats[0].residualDiffs[step] - diff)).toBeLessThan(1e-3);
    expect(relativeL2(latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });

  it('threshold 0 gives bit-identical latents, and disableCache restores the model exactly', () => {
    const plain = latentsOf();
    const blocks = [pipe.transformer.transformerBlocks, pipe.transformer.singleTransformerBlocks];
    enableCache(pipe, { residual_diff_threshold: 0, Fn_compute_blocks: 1, max_warmup_steps: 0 });
    expect(pipe.transformer.singleTransformerBlocks).toHaveLength(0);
    const cachedZero = latentsOf();
    expect(Buffer.compare(cachedZero.toBytes(), plain.toBytes())).toBe(0);
    expect(summary(pipe, { print: false }).cachedSteps).toBe(0);
    disableCache(pipe);
    expect(pipe.transformer.transformerBlocks).toBe(blocks[0]);
    expect(pipe.transformer.singleTransformerBlocks).toBe(blocks[1]);
    const after = latentsOf();
    expect(Buffer.compare(after.toBytes(), plain.toBytes())).toBe(0);
    for (const t of [plain, cachedZero, after]) t.dispose();
  });

  it('threshold >= 1 computes only the warmup steps, and reports the FLOPs it skipped', () => {
    enableCache(pipe, { residual_diff_threshold: 1, Fn_compute_blocks: 1, Bn_compute_blocks: 1, max_warmup_steps: 3 });
    pipe.generate(request).latents.dispose();
    const s = summary(pipe, { print: false });
    const steps = request.numInferenceSteps!;
    expect([...s.contexts[0].cachedSteps]).toEqual([...Array(steps - 3).keys()].map((i) => i + 3));
    const blocks = pipe.transformer.config.num_layers + pipe.transformer.config.num_single_layers;
    expect(s.computedBlocks).toBe(3 * blocks + (steps - 3) * 2);
    expect(s.totalBlocks).toBe(steps * blocks);
    expect(s.flopsSkippedFraction).toBeGreaterThan(0);
    expect(s.flopsSkippedFraction).toBeLessThan(1);
    disableCache(pipe);
  });

  it('the two-list layout caches double and single blocks in separate contexts', () => {
    enableCache(fluxBlockAdapter({ pipe, transformer: pipe.transformer }, { layout: 'two-lists' }), {
      Fn_compute_blocks: 1,
      max_warmup_steps: 2,
      residual_diff_threshold: 0.5,
    });
    expect(cacheHandleOf(pipe)).toBeDefined();
    pipe.generate(request).latents.dispose();
    const names = summary(pipe, { print: false }).contexts.map((c) => c.name);
    expect(names).toEqual(['transformer.transformerBlocks', 'transformer.singleTransformerBlocks']);
    disableCache(pipe);
  });
});

describe('caching FLUX in bfloat16 on flux-tiny', () => {
  const set = 'flux-tiny';
  const meta = JSON.parse(readFileSync(`${goldens}/${set}/meta.json`, 'utf-8')) as Record<string, unknown> & { cache_traces: Record<string, Trace> };

  it('threshold 0 changes nothing, disableCache restores the model, and cached steps keep the dtype', () => {
    using pipe = FluxPipeline.fromPretrained(`${goldens}/${set}`, { dtype: 'bfloat16' });
    const ref = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
    const request: FluxGenerateOptions = {
      promptEmbeds: ref.prompt_embeds,
      pooledPromptEmbeds: ref.pooled_prompt_embeds,
      latents: ref.latents_in,
      height: meta.height as number,
      width: meta.width as number,
      numInferenceSteps: meta.num_inference_steps as number,
      decode: false,
    };
    const before = memoryStats();
    const plain = pipe.generate(request).latents;
    enableCache(pipe, { residual_diff_threshold: 0, Fn_compute_blocks: 1, max_warmup_steps: 0 });
    const cachedZero = pipe.generate(request).latents;
    expect(cachedZero.dtype).toBe('bfloat16');
    expect(Buffer.compare(cachedZero.toBytes(), plain.toBytes())).toBe(0);
    disableCache(pipe);

    // A trace's config, with TaylorSeer: steps are cached, their residuals and forecasts stay bf16.
    // (That they are the steps cache-dit's bf16 run caches is cache-16bit.test.ts, against cache-dit
    // references in bf16: a bf16 run's diffs differ from float32's by several percent.)
    const trace = Object.values(meta.cache_traces).find((t) => t.taylorseer_order)!;
    enableCache(pipe, { ...trace.config, taylorseer_order: trace.taylorseer_order! });
    const cached = pipe.generate(request).latents;
    expect(cached.dtype).toBe('bfloat16');
    expect(summary(pipe, { print: false }).cachedSteps).toBeGreaterThan(0);
    expect(tidy(() => relativeL2(cached.cast('float32'), plain.cast('float32')))).toBeLessThan(0.2);
    disableCache(pipe);
    const after = pipe.generate(request).latents;
    expect(Buffer.compare(after.toBytes(), plain.toBytes())).toBe(0);
    for (const t of [plain, cachedZero, cached, after]) t.dispose();
    expect(memoryStats()).toEqual(before);
    for (const t of Object.values(ref)) t.dispose();
  });
});
