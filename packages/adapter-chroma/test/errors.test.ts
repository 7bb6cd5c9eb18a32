// Bad input gets a clear error before any work: it names the input, the shape or key it needs,
// and what to give instead.
import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, tensor, zeros } from '@ditcache/cuda-runtime';

import { ChromaPipeline, ChromaTransformer } from '../src/index.js';
import { goldens } from './helpers.js';

const set = `${goldens}/chroma-tiny`;
const ref = loadSafetensors(`${set}/pipeline.safetensors`);
const forwardRef = loadSafetensors(`${set}/transformer_forward.safetensors`);
const pipe = ChromaPipeline.fromPretrained(set);
afterAll(() => {
  pipe.dispose();
  for (const t of [...Object.values(ref), ...Object.values(forwardRef)]) t.dispose();
});
const base = {
  promptEmbeds: ref.prompt_embeds,
  promptAttentionMask: ref.prompt_attention_mask,
  latents: ref.latents_in,
  height: 12,
  width: 20,
  numInferenceSteps: 2,
  guidanceScale: 1,
};

describe('ChromaPipeline refuses', () => {
  it('embeddings without their mask, and a mask of another shape', () => {
    expect(() => pipe.generate({ ...base, promptAttentionMask: undefined })).toThrow(/give a prompt, or both promptEmbeds and promptAttentionMask/);
    using short = zeros([1, 3]);
    expect(() => pipe.generate({ ...base, promptAttentionMask: short })).toThrow(/promptAttentionMask must be \(1, 8\) like promptEmbeds, got \(1, 3\)/);
    expect(() => pipe.generate({ ...base, negativePromptEmbeds: ref.negative_prompt_embeds })).toThrow(
      /give negativePromptEmbeds and negativePromptAttentionMask together/,
    );
  });

  it('CFG without negative embeddings in a folder without T5, and a prompt there', () => {
    expect(() => pipe.generate({ ...base, guidanceScale: 4 })).toThrow(
      /guidanceScale 4 \(above 1\) runs classifier-free guidance, which needs the negative prompt, and it cannot be encoded .* give negativePromptEmbeds and negativePromptAttentionMask, or guidanceScale 1/,
    );
    expect(() => pipe.generate({ ...base, promptEmbeds: undefined, promptAttentionMask: undefined, prompt: 'a cat' })).toThrow(
      /cannot encode a prompt: .* has no tokenizer\/, text_encoder\/; give promptEmbeds and promptAttentionMask instead/,
    );
  });

  it('sizes off the latent grid, latents of another size, and an unknown dtype', () => {
    expect(() => pipe.generate({ ...base, height: 10 })).toThrow(/height must be a positive multiple of 4/);
    expect(() => pipe.generate({ ...base, width: 24 })).toThrow(/latents must be packed \(1, 18, 16\) for this size, got \(1, 15, 16\)/);
    expect(() => ChromaPipeline.fromPretrained(set, { dtype: 'float8' as 'float16' })).toThrow(/unknown dtype 'float8' \(valid: float32, bfloat16, float16\)/);
  });
});

describe('ChromaTransformer.forward refuses', () => {
  const inputs = {
    hiddenStates: forwardRef.hidden_states,
    encoderHiddenStates: forwardRef.encoder_hidden_states,
    timestep: forwardRef.timestep,
    imgIds: forwardRef.img_ids,
    txtIds: forwardRef.txt_ids,
  };
  it('a mask that does not cover text + image tokens, and ids of another length', () => {
    using transformer = ChromaTransformer.load(`${set}/transformer`);
    expect(() => transformer.forward({ ...inputs, attentionMask: forwardRef.attention_mask.narrow(1, 0, 8) })).toThrow(
      /attentionMask must be \(2, 23\) \(text \+ image tokens\), got \(2, 8\)/,
    );
    using ids = tensor(new Float32Array(6), [2, 3]);
    expect(() => transformer.forward({ ...inputs, txtIds: ids })).toThrow(/txtIds must be \(8, 3\), got \(2, 3\)/);
  });
});
