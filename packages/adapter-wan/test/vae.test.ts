import { describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats } from '@ditcache/cuda-runtime';

import { AutoencoderKLWanDecoder } from '../src/index.js';
import { goldens, relativeL2 } from './helpers.js';

describe('AutoencoderKLWanDecoder on wan-tiny', () => {
  it('denormalizes and decodes like diffusers', () => {
    const ref = loadSafetensors(`${goldens}/wan-tiny/pipeline.safetensors`);
    using vae = AutoencoderKLWanDecoder.load(`${goldens}/wan-tiny/vae`);
    const before = memoryStats();
    const input = vae.denormalize(ref.latents_out);
    const decoded = vae.decode(ref.vae_decode_in);
    const errors = { vae_decode_in: relativeL2(input, ref.vae_decode_in), vae_decode_out: relativeL2(decoded, ref.vae_decode_out) };
    expect(errors.vae_decode_in).toBeLessThan(1e-6);
    expect(errors.vae_decode_out).toBeLessThan(1e-5);
    input.dispose();
    decoded.dispose();
    expect(memoryStats()).toEqual(before);
    for (const t of Object.values(ref)) t.dispose();
  });
});
