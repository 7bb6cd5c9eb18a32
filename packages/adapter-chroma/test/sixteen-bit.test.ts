// ChromaTransformer and ChromaPipeline computing in bfloat16 and float16 (`dtype`, diffusers'
// torch_dtype) against diffusers in the same dtype (test/goldens, tools/make_16bit_references.py):
// the transformer block by block, the pipeline's final latents; and against the float32 goldens:
// our 16-bit error must stay within 1.5x of diffusers' own.
//
// Tolerance against diffusers' run: 3 units of roundoff of the dtype (u = 2^-8 for bfloat16,
// 2^-11 for float16), as for FLUX: both sides round the same ops at the same places, and what is
// left is float32 accumulation in another order tipping single roundings the other way.
import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, type Tensor } from '@ditcache/cuda-runtime';

import { ChromaPipeline, ChromaTransformer, type ChromaDoubleBlock, type ChromaSingleBlock } from '../src/index.js';
import { SETS, goldens, relativeL2 } from './helpers.js';

const DTYPES = [
  { dtype: 'bfloat16', tag: 'bf16', roundoff: 2 ** -8 },
  { dtype: 'float16', tag: 'fp16', roundoff: 2 ** -11 },
] as const;
const CASES = SETS.flatMap((set) => DTYPES.map((d) => ({ set, ...d })));
/** The bound on our 16-bit error against float32, relative to diffusers' own. */
const ACCURACY_RATIO = 1.5;

describe.each(CASES)('ChromaTransformer in $dtype on $set', ({ set, dtype, tag, roundoff }) => {
  it("tracks diffusers' run in the same dtype block by block, and is as close to float32 as it", () => {
    const float32 = loadSafetensors(`${goldens}/${set}/transformer_forward.safetensors`);
    const ref = loadSafetensors(`${goldens}/${set}/transformer_forward_${tag}.safetensors`);
    using transformer = ChromaTransformer.load(`${goldens}/${set}/transformer`, { dtype });
    expect(transformer.dtype).toBe(dtype);
    const outputs = new Map<string, Tensor>();
    const keep = (name: string, t: Tensor): void => {
      outputs.set(name, t.clone().keep());
    };
    transformer.transformerBlocks = transformer.transformerBlocks.map(
      (block, i): ChromaDoubleBlock => ({
        forward(hidden, encoder, temb, context) {
          const [e, h] = block.forward(hidden, encoder, temb, context);
          keep(`transformer_blocks.${i}.out0`, e);
          keep(`transformer_blocks.${i}.out1`, h);
          return [e, h];
        },
      }),
    );
    transformer.singleTransformerBlocks = transformer.singleTransformerBlocks.map(
      (block, i): ChromaSingleBlock => ({
        forward(joint, temb, context) {
          const out = block.forward(joint, temb, context);
          keep(`single_transformer_blocks.${i}.out0`, out);
          return out;
        },
      }),
    );
    const before = memoryStats();
    const sample = transformer.forward({
      hiddenStates: float32.hidden_states,
      encoderHiddenStates: float32.encoder_hidden_states,
      timestep: float32.timestep,
      imgIds: float32.img_ids,
      txtIds: float32.txt_ids,
      attentionMask: float32.attention_mask,
    });
    expect(sample.dtype).toBe(dtype);
    for (const [name, t] of [...outputs, ['sample', sample] as const]) expect(relativeL2(t, ref[name]), name).toBeLessThan(3 * roundoff);
    expect(outputs.size).toBe(2 * transformer.config.num_layers + transformer.config.num_single_layers);
    expect(relativeL2(sample, float32.sample)).toBeLessThan(ACCURACY_RATIO * relativeL2(ref.sample, float32.sample));
    sample.dispose();
    for (const t of outputs.values()) t.dispose();
    expect(memoryStats()).toEqual(before);
    for (const t of [...Object.values(float32), ...Object.values(ref)]) t.dispose();
  });
});

describe.each(CASES)('ChromaPipeline in $dtype on $set', ({ set, dtype, tag, roundoff }) => {
  it("tracks diffusers' pipeline in the same dtype, and is as close to float32 as it", () => {
    const meta = JSON.parse(readFileSync(`${goldens}/${set}/meta.json`, 'utf-8')) as Record<string, number>;
    const float32 = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
    const ref = loadSafetensors(`${goldens}/${set}/pipeline_${tag}.safetensors`);
    using pipe = ChromaPipeline.fromPretrained(`${goldens}/${set}`, { dtype });
    const before = memoryStats();
    // The float32 goldens' inputs: the pipeline rounds latents and embeddings to its dtype.
    const { latents } = pipe.generate({
      promptEmbeds: float32.prompt_embeds,
      promptAttentionMask: float32.prompt_attention_mask,
      negativePromptEmbeds: float32.negative_prompt_embeds,
      negativePromptAttentionMask: float32.negative_prompt_attention_mask,
      latents: float32.latents_in,
      height: meta.height,
      width: meta.width,
      numInferenceSteps: meta.num_inference_steps,
      guidanceScale: meta.guidance_scale,
      decode: false,
    });
    expect(latents.dtype).toBe(dtype);
    expect(relativeL2(latents, ref.latents_out)).toBeLessThan(3 * roundoff);
    expect(relativeL2(latents, float32.latents_out)).toBeLessThan(ACCURACY_RATIO * relativeL2(ref.latents_out, float32.latents_out));
    latents.dispose();
    expect(memoryStats()).toEqual(before);
    for (const t of [...Object.values(float32), ...Object.values(ref)]) t.dispose();
  });
});
