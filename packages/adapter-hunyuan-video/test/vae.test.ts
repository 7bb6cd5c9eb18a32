// The HunyuanVideo VAE decoder against diffusers' AutoencoderKLHunyuanVideo.decode
// (tools/make_references.py): 3 latent frames in one piece, 6, which diffusers decodes in blended
// temporal tiles, and both with diffusers' spatial tiling (enable_tiling).
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

  it.each([
    ['vae_tiled', 'hv-tiny', [1, 3, 5, 32, 40]],
    ['vae_long_tiled', 'hv-cfg', [1, 3, 21, 32, 24]],
  ] as const)("decodes in spatial tiles as diffusers' enable_tiling does (%s, within 1e-5)", (prefix, set, shape) => {
    const ref = references(prefix);
    using vae = AutoencoderKLHunyuanVideoDecoder.load(`${goldens}/${set}/vae`);
    // meta.json vae_tiling: 24-pixel tiles (3 latent pixels) every 16, blended over 8.
    vae.enableTiling({ tileSampleMinHeight: 24, tileSampleMinWidth: 24, tileSampleStrideHeight: 16, tileSampleStrideWidth: 16 });
    using sample = vae.decode(ref.z);
    expect(sample.shape).toEqual(shape);
    expect(relativeL2(sample, ref.sample)).toBeLessThan(1e-5);
    vae.disableTiling();
    using whole = vae.decode(ref.z);
    expect(relativeL2(whole, ref.sample)).toBeGreaterThan(1e-3);
    for (const t of Object.values(ref)) t.dispose();
  });

  it('refuses tile sizes that are not multiples of the scale factor, or strides above them', () => {
    using vae = AutoencoderKLHunyuanVideoDecoder.load(`${goldens}/hv-tiny/vae`);
    expect(() => vae.enableTiling({ tileSampleMinHeight: 20 })).toThrow(/tileSampleMinHeight must be a positive multiple of 8, got 20/);
    expect(() => vae.enableTiling({ tileSampleStrideWidth: 512 })).toThrow(/strides \(192, 512\) must not exceed the tile sizes \(256, 256\)/);
  });

  it('refuses latents of the wrong channel count, naming the expected shape', () => {
    using vae = AutoencoderKLHunyuanVideoDecoder.load(`${goldens}/hv-tiny/vae`);
    expect(() => vae.decode(short.post_quant_conv.narrow(1, 0, 3))).toThrow(/latents must be \(B, 4, frames, h, w\), got \(1, 3, 3, 2, 3\)/);
  });
});
