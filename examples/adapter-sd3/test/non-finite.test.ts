// NaN or Inf in SD3's inputs or in a step's latents stops the run naming the tensor and the step, instead of a black image.
import { describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, tensor, type Tensor } from '@ditcache/cuda-runtime';
import { NonFiniteError } from '@ditcache/diffusion';

import { StableDiffusion3Pipeline, type SD3GenerateOptions, type SD3TransformerInputs } from '../src/index.js';
import { goldenRequest, goldens, metaOf } from './helpers.js';

const set = 'sd3-tiny';
const meta = metaOf(set);

/** `t` with `value` at element `index` (a new tensor). */
function withValue(t: Tensor, index: number, value: number): Tensor {
  const data = t.toFloat32Array();
  data[index] = value;
  return tensor(data, t.shape);
}

function failure(pipe: StableDiffusion3Pipeline, opts: SD3GenerateOptions): NonFiniteError {
  let caught: unknown;
  try {
    pipe.generate(opts).latents.dispose();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(NonFiniteError);
  return caught as NonFiniteError;
}

describe('StableDiffusion3Pipeline with NaN / Inf', () => {
  it('names pooled_prompt_embeds before the first step, and the step whose transformer output was non-finite', () => {
    const ref = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
    const request = { ...goldenRequest(ref, meta), decode: false };
    using pipe = StableDiffusion3Pipeline.fromPretrained(`${goldens}/${set}`);
    const before = memoryStats();
    const pooled = withValue(ref.pooled_prompt_embeds, 1, NaN);
    const first = failure(pipe, { ...request, pooledPromptEmbeds: pooled });
    expect([first.tensor, first.step, first.when]).toEqual(['pooled_prompt_embeds', 0, 'before']);
    expect(first.message).toMatch(new RegExp(`in pooled_prompt_embeds, an input, before step 1 of ${meta.num_inference_steps}`));
    pooled.dispose();
    expect(memoryStats()).toEqual(before);

    const forward = pipe.transformer.forward.bind(pipe.transformer);
    let calls = 0;
    pipe.transformer.forward = (inputs: SD3TransformerInputs): Tensor => {
      const out = forward(inputs);
      if (calls++ !== 0) return out;
      const bad = withValue(out, 0, Infinity);
      out.dispose();
      return bad;
    };
    const err = failure(pipe, request);
    expect([err.tensor, err.step, err.when]).toEqual(['latents', 0, 'after']);
    expect(err.message).toMatch(/in the latents after step 1 of \d+; the transformer's output/);
    for (const t of Object.values(ref)) t.dispose();
  });
});
