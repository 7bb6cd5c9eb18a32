// The engine's bookkeeping must not read tensors to the host (a device sync per call on CUDA): a FluxPipeline tells it each call.
import { readFileSync } from 'node:fs';

import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';

import { disableCache, enableCache, summary, type CacheConfigInput } from '@ditcache/core';
import { loadSafetensors, Tensor, type Tensor as RuntimeTensor } from '@ditcache/cuda-runtime';

import { FluxPipeline, type FluxGenerateOptions } from '../src/index.js';
import { goldens } from './helpers.js';

const set = 'flux-tiny';

/** Every way a tensor's values reach the host (item() goes through toFloat32Array). */
const HOST_READS = ['toFloat32Array', 'toInt32Array', 'toBytes'] as const;

/** How many times `fn` reads a tensor to the host. */
function hostReads(fn: () => void): number {
  const spies = HOST_READS.map((name) => vi.spyOn(Tensor.prototype, name));
  try {
    fn();
    return spies.reduce((n, spy) => n + spy.mock.calls.length, 0);
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
}

describe('host reads of a cached FLUX pipeline', () => {
  const meta = JSON.parse(readFileSync(`${goldens}/${set}/meta.json`, 'utf-8')) as Record<string, number>;
  let pipe: FluxPipeline;
  let ref: Record<string, RuntimeTensor>;
  let request: FluxGenerateOptions;
  beforeAll(() => {
    pipe = FluxPipeline.fromPretrained(`${goldens}/${set}`);
    ref = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
    request = {
      promptEmbeds: ref.prompt_embeds,
      pooledPromptEmbeds: ref.pooled_prompt_embeds,
      latents: ref.latents_in,
      height: meta.height,
      width: meta.width,
      numInferenceSteps: meta.num_inference_steps,
      trueCfgScale: 1,
      decode: false,
    };
  });
  afterEach(() => {
    disableCache(pipe);
    disableCache(pipe.transformer);
  });
  afterAll(() => {
    pipe.dispose();
    for (const t of Object.values(ref)) t.dispose();
  });

  const generate = (): void => pipe.generate(request).latents.dispose();

  it.each<[string, CacheConfigInput]>([
    ['threshold 0', { residual_diff_threshold: 0, Fn_compute_blocks: 1 }],
    ['diffs measured, some steps cached', { residual_diff_threshold: 0.5, Fn_compute_blocks: 1, max_warmup_steps: 2 }],
    ['every step after warmup cached, TaylorSeer', { residual_diff_threshold: 1, Fn_compute_blocks: 1, max_warmup_steps: 2, taylorseer_order: 2 }],
  ])('%s: a generate call reads exactly what the uncached one reads', (_name, config) => {
    const uncached = hostReads(generate);
    expect(uncached).toBeGreaterThan(0); // the model's own reads (the timestep for its sinusoidal features)
    enableCache(pipe, config);
    expect(hostReads(generate)).toBe(uncached);
    const stats = summary(pipe, { print: false }).contexts[0];
    expect(stats.steps).toBe(request.numInferenceSteps);
    expect(stats.pipelineSteps).toEqual([...Array(request.numInferenceSteps).keys()]);
  });

  it('uncached, the position ids reach the host once per generate call, the timestep once per step', () => {
    // The rotary tables are made once from the ids (FluxTransformer.rotaryEmbedding), not per step;
    // the timestep's sinusoidal features are computed on the host from its value.
    expect(hostReads(generate)).toBe(request.numInferenceSteps! + 1);
  });

  it('a bare transformer call, with no pipeline to say which call it is, reads its timestep once for the engine', () => {
    const inputs = loadSafetensors(`${goldens}/${set}/transformer_forward.safetensors`);
    try {
      const forward = (): void =>
        pipe.transformer
          .forward({
            hiddenStates: inputs.hidden_states,
            encoderHiddenStates: inputs.encoder_hidden_states,
            pooledProjections: inputs.pooled_projections,
            timestep: inputs.timestep,
            imgIds: inputs.img_ids,
            txtIds: inputs.txt_ids,
            guidance: inputs.guidance,
          })
          .dispose();
      const uncached = hostReads(forward);
      enableCache(pipe.transformer, { residual_diff_threshold: 0.5, Fn_compute_blocks: 1 });
      expect(hostReads(forward)).toBe(uncached + 1);
    } finally {
      for (const t of Object.values(inputs)) t.dispose();
    }
  });
});
