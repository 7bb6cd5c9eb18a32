// The HunyuanVideo VAE decoder against diffusers' AutoencoderKLHunyuanVideo.decode
// (tools/make_references.py): 3 latent frames in one piece, and 6, which diffusers decodes in
// blended temporal tiles.
import { afterAll, describe, expect, it } from 'vitest';

import { memoryStats, type Tensor } from '@ditcache/cuda-runtime';

import { AutoencoderKLHunyuanVideoDecoder } from '../src/index.js';
import { goldens, references, relativeL2 } from './helpers.js';

describe('AutoencoderKLHunyuanVideoDecoder', () => {
  const short = references('vae');
  const long = references('vae_long');
  afterAll(() => {
    for (const t of [...Object.values(short), ...Object.values(long)]) t.dispose();
  });

  it('decodes 3 latent frames to 9 frames as diffusers does (within 1e-5)', () => {
    using vae = AutoencoderKLHunyuanVideoDecoder.load(`${goldens}/hv-tiny/vae`);
    expect([vae.scaleFactorSpatial, vae.scaleFactorTemporal]).toEqual([8, 4]);
    const before = memoryStats();
    const sample = vae.decode(short.z);
    expect(sample.shape).toEqual([1, 3, 9, 16, 24]);
    expect(relativeL2(sample, short.sample)).toBeLessThan(1e-5);
    sample.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it('decodes 6 latent frames in blended temporal tiles, as diffusers framewise decoding does (within 1e-5)', () => {
    using vae = AutoencoderKLHunyuanVideoDecoder.load(`${goldens}/hv-cfg/vae`);
    const sample: Tensor = vae.decode(long.z);
    expect(sample.shape).toEqual([1, 3, 21, 16, 16]);
    expect(relativeL2(sample, long.sample)).toBeLessThan(1e-5);
    sample.dispose();
  });

  it('refuses latents of the wrong channel count, naming the expected shape', () => {
    using vae = AutoencoderKLHunyuanVideoDecoder.load(`${goldens}/hv-tiny/vae`);
    expect(() => vae.decode(short.post_quant_conv.narrow(1, 0, 3))).toThrow(/latents must be \(B, 4, frames, h, w\), got \(1, 3, 3, 2, 3\)/);
  });
});
