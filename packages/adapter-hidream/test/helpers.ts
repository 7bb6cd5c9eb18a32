import { expect } from 'vitest';

import { relativeL2Values, tensor, type Tensor } from '@ditcache/cuda-runtime';

import { HiDreamPipeline, type HiDreamGenerateOptions, type HiDreamRotary, type HiDreamTransformerInputs } from '../src/index.js';

export const goldens = new URL('../../../testdata/goldens/', import.meta.url).pathname;

/** This package's own reference data (tools/make_16bit_references.py wrote it; goldens/README.md describes it). */
export const localGoldens = new URL('./goldens/', import.meta.url).pathname;

export { relativeL2, relativeL2Values } from '@ditcache/cuda-runtime';

/** The golden folder's pipeline, with the default_sample_size its diffusers run used (meta.json). */
export function loadGoldenPipeline(dir: string, meta: Record<string, number>): HiDreamPipeline {
  const pipe = HiDreamPipeline.fromPretrained(dir);
  pipe.defaultSampleSize = meta['pipe.default_sample_size'];
  return pipe;
}

/** The goldens' pipeline call as a request: pipeline.safetensors' embeddings and initial latents, meta.json's settings, undecoded. */
export function goldenRequest(ref: Record<string, Tensor>, meta: Record<string, number>, extra: Partial<HiDreamGenerateOptions> = {}): HiDreamGenerateOptions {
  return {
    promptEmbedsT5: ref.prompt_embeds_t5,
    promptEmbedsLlama3: ref.prompt_embeds_llama3,
    pooledPromptEmbeds: ref.pooled_prompt_embeds,
    negativePromptEmbedsT5: ref.negative_prompt_embeds_t5,
    negativePromptEmbedsLlama3: ref.negative_prompt_embeds_llama3,
    negativePooledPromptEmbeds: ref.negative_pooled_prompt_embeds,
    latents: ref.latents_in,
    height: meta.height,
    width: meta.width,
    numInferenceSteps: meta.num_inference_steps,
    guidanceScale: meta.guidance_scale,
    decode: false,
    ...extra,
  };
}

/** A tensor's shape and values copied to the host, to outlive the scope that made it. */
export interface Snapshot {
  shape: number[];
  values: Float32Array;
}

export function snapshot(t: Tensor): Snapshot {
  return { shape: [...t.shape], values: t.toFloat32Array() };
}

/** relativeL2 of a snapshot against a reference tensor. */
export function snapshotError(actual: Snapshot, expected: Tensor): number {
  expect(actual.shape).toEqual([...expected.shape]);
  return relativeL2Values(actual.values, expected.toFloat32Array());
}

/**
 * The rotary tables in diffusers' pe_embedder layout (B, tokens, 1, width / 2, 2, 2): per
 * frequency the matrix [[cos, -sin], [sin, cos]].
 */
export function rotaryMatrices(rotary: HiDreamRotary, batch: number): Tensor {
  const [tokens, width] = rotary.cos.shape;
  const cos = rotary.cos.toFloat32Array();
  const sin = rotary.sin.toFloat32Array();
  const one = new Float32Array(tokens * width * 2);
  for (let s = 0; s < tokens; ++s) {
    for (let i = 0; i < width / 2; ++i) {
      const at = s * width + 2 * i;
      one.set([cos[at], -sin[at], sin[at], cos[at]], 2 * at);
    }
  }
  const all = new Float32Array(batch * one.length);
  for (let b = 0; b < batch; ++b) all.set(one, b * one.length);
  return tensor(all, [batch, tokens, 1, width / 2, 2, 2]);
}

/** The transformer inputs of a transformer_forward golden. */
export function goldenInputs(ref: Record<string, Tensor>): HiDreamTransformerInputs {
  return {
    hiddenStates: ref.hidden_states,
    timesteps: ref.timesteps,
    encoderHiddenStatesT5: ref.encoder_hidden_states_t5,
    encoderHiddenStatesLlama3: ref.encoder_hidden_states_llama3,
    pooledEmbeds: ref.pooled_embeds,
  };
}
