// Qwen-Image computing in bfloat16 and float16 (`dtype`, diffusers' torch_dtype) against diffusers
// in the same dtype (references_16bit.safetensors, from tools/make_16bit_references.py) and
// against the float32 references: our 16-bit error from float32 must stay within 1.5x of
// diffusers' own. Against diffusers' 16-bit run the bound is 3 units of roundoff of the dtype
// (u = 2^-8 for bfloat16, 2^-11 for float16): both sides round the same ops at the same places, so
// what is left is float32 accumulation in another order tipping single roundings the other way.
import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, type Tensor } from '@ditcache/cuda-runtime';

import { QwenImagePipeline, QwenImageTransformer, type QwenImageBlock } from '../src/index.js';
import { goldens, loadReferences, relativeL2, runRequest } from './helpers.js';

const DTYPES = [
  { dtype: 'bfloat16', tag: 'bf16', roundoff: 2 ** -8 },
  { dtype: 'float16', tag: 'fp16', roundoff: 2 ** -11 },
] as const;
/** The bound on our 16-bit error against float32, relative to diffusers' own. */
const ACCURACY_RATIO = 1.5;

const float32 = loadReferences();
const ref = loadSafetensors(`${goldens}/references_16bit.safetensors`);
afterAll(() => {
  for (const t of [...Object.values(float32), ...Object.values(ref)]) t.dispose();
});

describe.each(DTYPES)('Qwen-Image in $dtype', ({ dtype, tag, roundoff }) => {
  it("tracks diffusers' transformer in the same dtype block by block, and is as close to float32 as it", () => {
    using transformer = QwenImageTransformer.load(`${goldens}/qwen-tiny/transformer`, { dtype });
    const outputs = new Map<string, Tensor>();
    transformer.transformerBlocks = transformer.transformerBlocks.map(
      (block, i): QwenImageBlock => ({
        forward(...args) {
          const [e, h] = block.forward(...args);
          outputs.set(`forward.block_${i}.encoder_hidden_states`, e.clone().keep());
          outputs.set(`forward.block_${i}.hidden_states`, h.clone().keep());
          return [e, h];
        },
      }),
    );
    const sample = transformer.forward({
      hiddenStates: float32['forward.hidden_states'],
      encoderHiddenStates: float32['forward.encoder_hidden_states'],
      encoderHiddenStatesMask: float32['forward.encoder_hidden_states_mask'],
      timestep: float32['forward.timestep'],
      imgShapes: [[1, 3, 5]],
    });
    outputs.set('forward.sample', sample);
    expect(outputs.size).toBe(13);
    for (const [name, t] of outputs) {
      expect(t.dtype, name).toBe(dtype);
      expect(relativeL2(t, ref[`${tag}.${name}`]), `${name} vs diffusers ${dtype}`).toBeLessThan(3 * roundoff);
    }
    expect(relativeL2(sample, float32['forward.sample'])).toBeLessThanOrEqual(
      ACCURACY_RATIO * relativeL2(ref[`${tag}.forward.sample`], float32['forward.sample']),
    );
    for (const t of outputs.values()) t.dispose();
  });

  it("generates diffusers' latents and image with true CFG in that dtype (the VAE too), as close to float32 as diffusers'", () => {
    using pipe = QwenImagePipeline.fromPretrained(`${goldens}/qwen-tiny`, { dtype });
    const before = memoryStats();
    const { latents, image } = pipe.generate(runRequest(float32, 'cfg_square', true));
    expect(latents.dtype).toBe(dtype);
    for (const [name, t] of [
      ['latents_out', latents],
      ['image', image as Tensor],
    ] as const) {
      const want = ref[`${tag}.cfg_square.${name}`];
      expect(relativeL2(t, want), `${name} vs diffusers ${dtype}`).toBeLessThan(3 * roundoff);
      expect(relativeL2(t, float32[`cfg_square.${name}`])).toBeLessThanOrEqual(ACCURACY_RATIO * relativeL2(want, float32[`cfg_square.${name}`]));
    }
    latents.dispose();
    image?.dispose();
    expect(memoryStats()).toEqual(before);
  });
});
