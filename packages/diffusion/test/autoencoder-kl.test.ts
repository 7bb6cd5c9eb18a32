import { readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { add, div, loadSafetensors, memoryStats, tidy, zeros } from '@ditcache/cuda-runtime';

import { AutoencoderKLDecoder, WeightMismatchError, toImageRange } from '../src/index.js';
import { goldens, relativeL2 } from './helpers.js';
import { scratchDir } from '../../../scripts/testing/scratch-dir.js';

describe.each(['flux-tiny', 'flux-tiny-guidance'])('AutoencoderKLDecoder on %s', (set) => {
  it("decodes the pipeline's final latents to its image_out", () => {
    const ref = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
    using vae = AutoencoderKLDecoder.load(`${goldens}/${set}/vae`);
    expect(vae.scaleFactor).toBe(2);
    expect(vae.config).toMatchObject({
      latent_channels: 4,
      scaling_factor: 1.5035,
      shift_factor: 0.0609,
      use_post_quant_conv: false,
      block_out_channels: [8, 16],
    });
    const before = memoryStats();
    // FLUX packs 2x2 latent patches as tokens: (1, 64, 16) -> (1, 4, 16, 16).
    const image = tidy(() => {
      const latents = ref.latents_out.reshape(1, 8, 8, 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(1, 4, 16, 16);
      return toImageRange(vae.decode(add(div(latents, vae.config.scaling_factor), vae.config.shift_factor ?? 0)));
    });
    const error = relativeL2(image, ref.image_out);
    expect(error).toBeLessThan(1e-3);
    image.dispose();
    expect(memoryStats()).toEqual(before);
    for (const t of Object.values(ref)) t.dispose();
  });
});

describe('AutoencoderKLDecoder errors', () => {
  it('refuses another class, wrong latents and weights that do not fit the config', () => {
    expect(() => AutoencoderKLDecoder.load(`${goldens}/flux-tiny/transformer`)).toThrow(/describes a FluxTransformer2DModel, not a AutoencoderKL/);
    expect(() => AutoencoderKLDecoder.load(`${goldens}/flux-tiny/missing`)).toThrow(/no such model folder/);
    using vae = AutoencoderKLDecoder.load(`${goldens}/flux-tiny/vae`);
    using wrong = zeros([1, 16, 8, 8]);
    expect(() => vae.decode(wrong)).toThrow(/expected latents \(B, 4, h, w\), got \(1, 16, 8, 8\)/);

    const dir = scratchDir('ditcache-vae-');
    const config = JSON.parse(readFileSync(`${goldens}/flux-tiny/vae/config.json`, 'utf-8')) as Record<string, unknown>;
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, block_out_channels: [8, 32] }));
    symlinkSync(`${goldens}/flux-tiny/vae/diffusion_pytorch_model.safetensors`, join(dir, 'diffusion_pytorch_model.safetensors'));
    const before = memoryStats();
    expect(() => AutoencoderKLDecoder.load(dir)).toThrow(WeightMismatchError);
    expect(() => AutoencoderKLDecoder.load(dir)).toThrow(/weight 'decoder.conv_in.weight' has shape \(16, 4, 3, 3\) but config.json implies \(32, 4, 3, 3\)/);
    expect(memoryStats()).toEqual(before);
  });
});
