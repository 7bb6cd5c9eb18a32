import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats } from '@ditcache/cuda-runtime';

import { AutoencoderKLLtxVideoDecoder } from '../src/index.js';
import { goldens, relativeL2 } from './helpers.js';

describe.each(['ltx-tiny', 'ltx-095-tiny'])('AutoencoderKLLtxVideoDecoder on %s', (set) => {
  const ref = loadSafetensors(`${goldens}/${set}/vae_decode.safetensors`);
  afterAll(() => {
    for (const t of Object.values(ref)) t.dispose();
  });

  it('decodes as diffusers vae.decode does (with the timestep where the decoder is conditioned)', () => {
    using vae = AutoencoderKLLtxVideoDecoder.load(`${goldens}/${set}/vae`);
    const before = memoryStats();
    const sample = vae.decode(ref.z, ref.temb ? ref.temb.toFloat32Array() : null);
    expect(sample.shape).toEqual(ref.sample.shape);
    expect(relativeL2(sample, ref.sample)).toBeLessThan(1e-5);
    sample.dispose();
    expect(memoryStats()).toEqual(before);
  });
});
