// The `dtype` load option (diffusers' torch_dtype): the transformer in bfloat16 and float16
// tracks diffusers' transformer in the same dtype: within 3/4 of diffusers' own distance from float32.
import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors } from '@ditcache/cuda-runtime';

import { LtxVideoTransformer } from '../src/index.js';
import { forwardInputs, goldens, relativeL2 } from './helpers.js';

describe.each(['ltx-tiny', 'ltx-095-tiny'])('LtxVideoTransformer in 16 bits on %s', (set) => {
  const ref = loadSafetensors(`${goldens}/${set}/transformer_forward.safetensors`);
  const ref16 = loadSafetensors(`${goldens}/${set}/transformer_forward_16bit.safetensors`);
  afterAll(() => {
    for (const t of [...Object.values(ref), ...Object.values(ref16)]) t.dispose();
  });

  it.each([
    ['bfloat16', 'sample_bf16'],
    ['float16', 'sample_fp16'],
  ] as const)('%s: closer to diffusers in that dtype than diffusers is to float32', (dtype, name) => {
    using transformer = LtxVideoTransformer.load(`${goldens}/${set}/transformer`, { dtype });
    using sample = transformer.forward(forwardInputs(ref));
    expect(sample.dtype).toBe(dtype);
    using sample32 = sample.cast('float32');
    const theirs = relativeL2(ref16[name], ref.sample);
    expect(relativeL2(sample32, ref16[name])).toBeLessThan(0.75 * theirs);
    expect(relativeL2(sample32, ref.sample)).toBeLessThan(1.5 * theirs);
  });
});
