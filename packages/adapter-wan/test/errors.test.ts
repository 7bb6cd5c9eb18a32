import { readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { full, loadSafetensors, memoryStats, zeros } from '@ditcache/cuda-runtime';
import { FlowMatchEulerDiscreteScheduler } from '@ditcache/diffusion';

import { AutoencoderKLWanDecoder, WanPipeline, WanTransformer } from '../src/index.js';
import { goldens, localGoldens } from './helpers.js';
import { scratchDir } from '../../../scripts/testing/scratch-dir.js';

/** A folder whose entries link to those of `source`, with some JSON files written in. */
function variant(source: string, links: string[], files: Record<string, unknown> = {}): string {
  const dir = scratchDir('ditcache-wan-');
  for (const entry of links) symlinkSync(join(source, entry), join(dir, entry));
  for (const [name, json] of Object.entries(files)) writeFileSync(join(dir, name), JSON.stringify(json));
  return dir;
}

const readJson = (path: string): Record<string, unknown> => JSON.parse(readFileSync(path, 'utf-8')) as Record<string, unknown>;

/** A component folder with the golden weights and a changed config.json. */
function componentVariant(component: string, changes: Record<string, unknown>): string {
  return variant(`${goldens}/wan-tiny/${component}`, ['diffusion_pytorch_model.safetensors'], {
    'config.json': { ...readJson(`${goldens}/wan-tiny/${component}/config.json`), ...changes },
  });
}

describe('WanPipeline.fromPretrained errors', () => {
  const wan22 = `${goldens}/wan-tiny/wan22`;
  const index22 = readJson(`${wan22}/model_index.json`);

  it('names a missing folder, another pipeline class and a folder without model_index.json', () => {
    expect(() => WanPipeline.fromPretrained(`${goldens}/wan-nothing`)).toThrow(/wan-nothing: no such pipeline folder/);
    expect(() => WanPipeline.fromPretrained(`${goldens}/hidream-tiny`)).toThrow(/model_index.json describes a HiDreamImagePipeline, not a WanPipeline/);
    expect(() => WanPipeline.fromPretrained(`${goldens}/flux-tiny`)).toThrow(/flux-tiny: no model_index.json/);
  });

  it('refuses a Wan 2.2 folder without transformer_2/', () => {
    const dir = variant(wan22, ['transformer', 'vae', 'scheduler', 'model_index.json']);
    const before = memoryStats();
    expect(() => WanPipeline.fromPretrained(dir)).toThrow(/boundary_ratio 0.875 makes this a two-expert Wan 2.2 folder, but it has no transformer_2\/ folder/);
    expect(memoryStats()).toEqual(before);
  });

  it('checks the component classes and what it does not support', () => {
    const links = ['transformer', 'transformer_2', 'vae', 'scheduler'];
    const withIndex = (changes: Record<string, unknown>): string => variant(wan22, links, { 'model_index.json': { ...index22, ...changes } });
    expect(() => WanPipeline.fromPretrained(withIndex({ vae: ['diffusers', 'AutoencoderKL'] }))).toThrow(
      /'vae' should be \[library, "AutoencoderKLWan"\], got \["diffusers","AutoencoderKL"\]/,
    );
    expect(() => WanPipeline.fromPretrained(withIndex({ scheduler: ['diffusers', 'DDIMScheduler'] }))).toThrow(
      /'scheduler' should be \[library, "FlowMatchEulerDiscreteScheduler" \| "UniPCMultistepScheduler"\]/,
    );
    expect(() => WanPipeline.fromPretrained(withIndex({ expand_timesteps: true }))).toThrow(/expand_timesteps .* is not supported/);
    expect(() => WanPipeline.fromPretrained(withIndex({ boundary_ratio: 'high' }))).toThrow(/'boundary_ratio' should be a number or null, got "high"/);
  });

  it('refuses models of another class and weights that do not fit, without leaking', () => {
    const before = memoryStats();
    expect(() => WanTransformer.load(`${goldens}/flux-tiny/transformer`)).toThrow(/describes a FluxTransformer2DModel, not a WanTransformer3DModel/);
    expect(() => WanTransformer.load(componentVariant('transformer', { image_dim: 1280, added_kv_proj_dim: 24 }))).toThrow(
      /condition_embedder\.image_embedder/,
    );
    expect(() => WanTransformer.load(componentVariant('transformer', { text_dim: 64 }))).toThrow(
      /weight 'condition_embedder.text_embedder.linear_1.weight' has shape \(24, 32\) but config.json implies \(24, 64\)/,
    );
    expect(() => AutoencoderKLWanDecoder.load(`${goldens}/flux-tiny/vae`)).toThrow(/describes a AutoencoderKL, not a AutoencoderKLWan/);
    expect(() => AutoencoderKLWanDecoder.load(componentVariant('vae', { is_residual: true, patch_size: 2 }))).toThrow(/Wan 2.2 TI2V .* is not supported/);
    expect(() => AutoencoderKLWanDecoder.load(componentVariant('vae', { latents_std: [1, 2] }))).toThrow(/latents_std has 2 values for z_dim 16/);
    expect(() => AutoencoderKLWanDecoder.load(componentVariant('vae', { scale_factor_spatial: 16 }))).toThrow(/do not match the layers, which scale by 8 \/ 4/);
    expect(() => AutoencoderKLWanDecoder.load(componentVariant('vae', { base_dim: 4 }))).toThrow(
      /weight 'decoder.conv_in.weight' has shape \(3, 16, 3, 3, 3\) but config.json implies \(4, 16, 3, 3, 3\)/,
    );
    expect(memoryStats()).toEqual(before);
  });

  it('needs transformer2 exactly when there is a boundaryRatio', () => {
    using transformer = WanTransformer.load(`${goldens}/wan-tiny/transformer`);
    using vae = AutoencoderKLWanDecoder.load(`${goldens}/wan-tiny/vae`);
    const scheduler = FlowMatchEulerDiscreteScheduler.fromFolder(`${goldens}/wan-tiny/scheduler`);
    expect(() => new WanPipeline({ transformer, vae, scheduler, boundaryRatio: 0.9 })).toThrow(
      /boundaryRatio 0.9 hands the low-noise steps to transformer2, which is missing/,
    );
    expect(() => new WanPipeline({ transformer, transformer2: transformer, vae, scheduler })).toThrow(/transformer2 runs only below a boundaryRatio/);
    expect(() => new WanPipeline({ transformer, transformer2: transformer, vae, scheduler, boundaryRatio: 2 })).toThrow(
      /boundaryRatio must lie in \[0, 1\], got 2/,
    );
    using imageToVideo = WanTransformer.load(`${localGoldens}/wan-i2v-tiny/transformer`);
    expect(() => new WanPipeline({ transformer: imageToVideo, vae, scheduler })).toThrow(
      /transformer is an image-to-video model \(image_dim 20\); this pipeline is text-to-video/,
    );
  });
});

describe('shape errors', () => {
  const ref = loadSafetensors(`${goldens}/wan-tiny/transformer_forward.safetensors`);
  const pipeRef = loadSafetensors(`${goldens}/wan-tiny/pipeline.safetensors`);
  afterAll(() => {
    for (const t of [...Object.values(ref), ...Object.values(pipeRef)]) t.dispose();
  });
  const inputs = { hiddenStates: ref.hidden_states, timestep: ref.timestep, encoderHiddenStates: ref.encoder_hidden_states };

  it('WanTransformer.forward names the input and the shape it needs', () => {
    using transformer = WanTransformer.load(`${goldens}/wan-tiny/transformer`);
    using eightChannels = zeros([2, 8, 3, 4, 6]);
    using oddHeight = zeros([2, 16, 3, 5, 6]);
    using tooWide = zeros([2, 16, 1, 2, 66]);
    using column = full([2, 1], 500);
    const before = memoryStats();
    expect(() => transformer.forward({ ...inputs, hiddenStates: eightChannels })).toThrow(
      /hiddenStates must be \(B, 16, frames, height, width\), got \(2, 8, 3, 4, 6\)/,
    );
    expect(() => transformer.forward({ ...inputs, hiddenStates: oddHeight })).toThrow(
      /frames, height and width 3 x 5 x 6 must be multiples of the patch size 1 x 2 x 2/,
    );
    expect(() => transformer.forward({ ...inputs, encoderHiddenStates: ref.hidden_states })).toThrow(
      /encoderHiddenStates must be \(2, tokens, 32\), got \(2, 16, 3, 4, 6\)/,
    );
    expect(() => transformer.forward({ ...inputs, timestep: column })).toThrow(/timestep must be \(2,\), got \(2, 1\)/);
    expect(() => transformer.forward({ ...inputs, hiddenStates: tooWide })).toThrow(/has 33 positions along columns, more than rope_max_seq_len 32/);
    expect(memoryStats()).toEqual(before);
  });

  it('WanPipeline.generate checks frames, sizes, embeddings and latents before running', () => {
    using pipe = WanPipeline.fromPretrained(`${goldens}/wan-tiny`);
    const base = {
      promptEmbeds: pipeRef.prompt_embeds,
      negativePromptEmbeds: pipeRef.negative_prompt_embeds,
      latents: pipeRef.latents_in,
      height: 32,
      width: 48,
      numFrames: 9,
      numInferenceSteps: 2,
    };
    const before = memoryStats();
    expect(() => pipe.generate({ ...base, numFrames: 8 })).toThrow(/numFrames must be 4k \+ 1 \(1, 5, 9, ...\), got 8/);
    expect(() => pipe.generate({ ...base, height: 40 })).toThrow(/height must be a positive multiple of 16, got 40/);
    expect(() => pipe.generate({ ...base, numFrames: 13 })).toThrow(/latents must be \(1, 16, 4, 4, 6\) for this size and frame count, got \(1, 16, 3, 4, 6\)/);
    expect(() => pipe.generate({ ...base, promptEmbeds: pipeRef.latents_in })).toThrow(/promptEmbeds must be \(B, tokens, 32\), got \(1, 16, 3, 4, 6\)/);
    expect(() => pipe.generate({ ...base, negativePromptEmbeds: undefined })).toThrow(
      /guidanceScale > 1 runs classifier-free guidance, which needs negativePromptEmbeds/,
    );
    expect(() => pipe.generate({ ...base, negativePromptEmbeds: ref.encoder_hidden_states })).toThrow(
      /negativePromptEmbeds must be \(1, tokens, 32\), got \(2, 10, 32\)/,
    );
    expect(() => pipe.generate({ ...base, guidanceScale2: 3 })).toThrow(
      /guidanceScale2 is for the second expert of Wan 2.2; this pipeline has no boundaryRatio/,
    );
    expect(() => pipe.generate({ ...base, numInferenceSteps: 0 })).toThrow(/numInferenceSteps must be a positive integer, got 0/);
    expect(memoryStats()).toEqual(before);
  });

  it('AutoencoderKLWanDecoder.decode checks the latents', () => {
    using vae = AutoencoderKLWanDecoder.load(`${goldens}/wan-tiny/vae`);
    using flat = zeros([1, 16, 4, 6]);
    using eightChannels = zeros([2, 8, 3, 4, 6]);
    expect(() => vae.decode(flat)).toThrow(/decode: expected latents \(B, 16, frames, h, w\), got \(1, 16, 4, 6\)/);
    expect(() => vae.denormalize(eightChannels)).toThrow(/denormalize: expected latents \(B, 16, frames, h, w\), got \(2, 8, 3, 4, 6\)/);
  });
});
