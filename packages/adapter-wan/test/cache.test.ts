// The engine on Wan: cache-dit's traces for every config of the goldens, per CFG branch (cond
// is cache-dit's non-CFG branch unless cfg_compute_first) and, for Wan 2.2, per expert with its
// own step count, buffers and ParamsModifier.
import { readFileSync } from 'node:fs';

import { afterAll, describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary } from '@ditcache/core';
import { full, loadSafetensors, memoryStats, type Tensor } from '@ditcache/cuda-runtime';

import { WanPipeline, WanTransformer, type WanGenerateOptions } from '../src/index.js';
import { goldens, localGoldens, relativeL2 } from './helpers.js';

interface ContextTrace {
  source: string;
  executed_steps: number;
  cached_steps: number[];
  cfg_cached_steps: number[];
  residual_diffs: Record<string, number>;
  cfg_residual_diffs: Record<string, number>;
}
interface Trace {
  config: Record<string, unknown>;
  taylorseer_order: number | null;
  params_modifiers: Record<string, unknown>[] | null;
  stats: ContextTrace[];
}

function expectDiffs(got: Readonly<Record<string, number>>, want: Record<string, number>): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const [step, diff] of Object.entries(want)) expect(Math.abs(got[step] - diff)).toBeLessThan(1e-3);
}

describe.each(['wan-tiny', 'wan-tiny/wan22'])('caching Wan (%s)', (set) => {
  const meta = JSON.parse(readFileSync(`${goldens}/${set}/meta.json`, 'utf-8')) as Record<string, number> & { cache_traces: Record<string, Trace> };
  const ref = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
  const traces = loadSafetensors(`${goldens}/${set}/cache_traces.safetensors`);
  const pipe = WanPipeline.fromPretrained(`${goldens}/${set}`);
  afterAll(() => {
    pipe.dispose();
    for (const t of [...Object.values(ref), ...Object.values(traces)]) t.dispose();
  });
  const request: WanGenerateOptions = {
    promptEmbeds: ref.prompt_embeds,
    negativePromptEmbeds: ref.negative_prompt_embeds,
    latents: ref.latents_in,
    height: meta.height,
    width: meta.width,
    numFrames: meta.num_frames,
    numInferenceSteps: meta.num_inference_steps,
    guidanceScale: meta.guidance_scale,
    guidanceScale2: meta.guidance_scale_2,
    decode: false,
  };
  const latentsOf = (): Tensor => pipe.generate(request).latents;

  it.each(Object.keys(meta.cache_traces))("%s: cache-dit's steps per expert and CFG branch, and its latents", (name) => {
    const trace = meta.cache_traces[name];
    const before = memoryStats();
    enableCache(pipe, {
      ...trace.config,
      ...(trace.taylorseer_order ? { taylorseer_order: trace.taylorseer_order } : {}),
      ...(trace.params_modifiers ? { params_modifiers: trace.params_modifiers } : {}),
    });
    const latents = latentsOf();
    const contexts = summary(pipe, { print: false }).contexts;
    expect(contexts.map((c) => c.name)).toEqual(trace.stats.map((s) => s.source));
    trace.stats.forEach((want, i) => {
      const got = contexts[i];
      expect(got.steps, want.source).toBe(want.executed_steps);
      expect([...got.cachedSteps], `${want.source} cached steps`).toEqual(want.cached_steps);
      expect([...got.cfgCachedSteps], `${want.source} CFG cached steps`).toEqual(want.cfg_cached_steps);
      expectDiffs(got.residualDiffs, want.residual_diffs);
      expectDiffs(got.cfgResidualDiffs, want.cfg_residual_diffs);
    });
    expect(relativeL2(latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });

  it('threshold 0 is bit-identical to the uncached model, and disableCache restores it', () => {
    const lists = [pipe.transformer.blocks, pipe.transformer2?.blocks];
    const plain = latentsOf();
    enableCache(pipe, { residual_diff_threshold: 0, Fn_compute_blocks: 1, max_warmup_steps: 0 });
    const zero = latentsOf();
    expect(Buffer.compare(zero.toBytes(), plain.toBytes())).toBe(0);
    disableCache(pipe);
    expect(pipe.transformer.blocks).toBe(lists[0]);
    expect(pipe.transformer2?.blocks).toBe(lists[1]);
    const after = latentsOf();
    expect(Buffer.compare(after.toBytes(), plain.toBytes())).toBe(0);
    for (const t of [plain, zero, after]) t.dispose();
  });
});

describe('caching an image-to-video Wan transformer on its own', () => {
  const ref = loadSafetensors(`${localGoldens}/wan-i2v-tiny/transformer_forward.safetensors`);
  const transformer = WanTransformer.load(`${localGoldens}/wan-i2v-tiny/transformer`);
  afterAll(() => {
    transformer.dispose();
    for (const t of Object.values(ref)) t.dispose();
  });
  const timesteps = [999, 800, 600, 400, 200, 100];
  /** The outputs of a six-step run on the reference inputs, as bytes. */
  const run = (): Buffer[] =>
    timesteps.map((t) => {
      using timestep = full([2], t);
      using out = transformer.forward({
        hiddenStates: ref.hidden_states,
        timestep,
        encoderHiddenStates: ref.encoder_hidden_states,
        encoderHiddenStatesImage: ref.encoder_hidden_states_image,
      });
      return Buffer.from(out.toBytes());
    });

  it('hands the image tokens to the blocks it computes: threshold 0 is bit-identical, and a high threshold caches the middle blocks', () => {
    const plain = run();
    const base = { Fn_compute_blocks: 1, Bn_compute_blocks: 1, enable_separate_cfg: false, num_inference_steps: timesteps.length };
    enableCache(transformer, { ...base, residual_diff_threshold: 0, max_warmup_steps: 0 });
    expect(run().map((b, i) => Buffer.compare(b, plain[i]))).toEqual(timesteps.map(() => 0));
    disableCache(transformer);
    enableCache(transformer, { ...base, residual_diff_threshold: 10, max_warmup_steps: 2 });
    const cached = run();
    expect(summary(transformer, { print: false }).contexts[0].cachedSteps).toEqual([2, 3, 4, 5]);
    expect(cached.slice(0, 2).map((b, i) => Buffer.compare(b, plain[i]))).toEqual([0, 0]);
    expect(Buffer.compare(cached[2], plain[2])).not.toBe(0);
    disableCache(transformer);
    expect(run().map((b, i) => Buffer.compare(b, plain[i]))).toEqual(timesteps.map(() => 0));
  });
});
