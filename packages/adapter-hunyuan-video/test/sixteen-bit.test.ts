// HunyuanVideo in bfloat16 and float16 (`dtype`) against diffusers loaded with that torch_dtype
// (tools/make_16bit_references.py): within 3 units of the dtype's roundoff (u = 2^-8 for bfloat16,
// 2^-11 for float16), and no further from float32 than diffusers' own 16-bit run, by a factor 1.5.
import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, type Tensor } from '@ditcache/cuda-runtime';

import { HunyuanVideoPipeline, HunyuanVideoTransformer } from '../src/index.js';
import { goldens, references, relativeL2, requestOf } from './helpers.js';

const CASES = [
  { dtype: 'bfloat16', roundoff: 2 ** -8 },
  { dtype: 'float16', roundoff: 2 ** -11 },
] as const;
const ACCURACY_RATIO = 1.5;

describe.each(CASES)('HunyuanVideo in $dtype', ({ dtype, roundoff }) => {
  const ref16 = loadSafetensors(`${goldens}/references_16bit.safetensors`);
  const forward = references('forward');
  const runs = { guided: references('guided'), guided_cfg: references('guided_cfg') };
  afterAll(() => {
    for (const t of [...Object.values(ref16), ...Object.values(forward), ...Object.values(runs).flatMap((r) => Object.values(r))]) t.dispose();
  });

  it("gives diffusers' transformer output in that dtype, as close to float32 as diffusers'", () => {
    using transformer = HunyuanVideoTransformer.load(`${goldens}/hv-tiny/transformer`, { dtype });
    expect(transformer.dtype).toBe(dtype);
    using sample = transformer.forward({
      hiddenStates: forward.hidden_states,
      timestep: forward.timestep,
      encoderHiddenStates: forward.encoder_hidden_states,
      encoderAttentionMask: forward.encoder_attention_mask,
      pooledProjections: forward.pooled_projections,
      guidance: forward.guidance,
    });
    expect(sample.dtype).toBe(dtype);
    using ours = sample.cast('float32');
    const theirs = ref16[`forward_${dtype}.sample`];
    expect(relativeL2(ours, theirs)).toBeLessThan(3 * roundoff);
    expect(relativeL2(ours, forward.sample)).toBeLessThanOrEqual(ACCURACY_RATIO * relativeL2(theirs, forward.sample));
  });

  it.each(['guided', 'guided_cfg'] as const)("generates diffusers' latents in that dtype (%s), as close to float32 as diffusers'", (run) => {
    using pipe = HunyuanVideoPipeline.fromPretrained(`${goldens}/hv-tiny`, { dtype });
    expect(pipe.dtype).toBe(dtype);
    const before = memoryStats();
    const { latents } = pipe.generate({ ...requestOf(run, runs[run]), decode: false });
    const ours: Tensor = latents.cast('float32');
    const theirs = ref16[`${run}_${dtype}.latents_out`];
    expect(relativeL2(ours, theirs)).toBeLessThan(3 * roundoff);
    expect(relativeL2(ours, runs[run].latents_out)).toBeLessThanOrEqual(ACCURACY_RATIO * relativeL2(theirs, runs[run].latents_out));
    for (const t of new Set([latents, ours])) t.dispose();
    expect(memoryStats()).toEqual(before);
  });
});
