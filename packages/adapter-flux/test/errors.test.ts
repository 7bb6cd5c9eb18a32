import { readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { full, loadSafetensors, memoryStats, zeros } from '@ditcache/cuda-runtime';

import { FluxPipeline, FluxTransformer } from '../src/index.js';
import { goldens } from './helpers.js';
import { scratchDir } from '../../../scripts/testing/scratch-dir.js';

/** A copy of a golden FLUX folder whose entries are links, with some files replaced. */
function variant(set: string, links: string[], files: Record<string, unknown> = {}): string {
  const dir = scratchDir('ditcache-flux-');
  for (const entry of links) symlinkSync(`${goldens}/${set}/${entry}`, join(dir, entry));
  for (const [name, json] of Object.entries(files)) writeFileSync(join(dir, name), JSON.stringify(json));
  return dir;
}

describe('FluxPipeline.fromPretrained errors', () => {
  it('names a missing folder, a missing component and another pipeline class', () => {
    expect(() => FluxPipeline.fromPretrained(`${goldens}/flux-nothing`)).toThrow(/flux-nothing: no such pipeline folder/);
    expect(() => FluxPipeline.fromPretrained(variant('flux-tiny', ['vae', 'scheduler']))).toThrow(/no transformer\/ folder/);
    expect(() => FluxPipeline.fromPretrained(`${goldens}/wan-tiny`)).toThrow(/model_index.json describes a WanPipeline, not a FluxPipeline/);
    const index = {
      _class_name: 'FluxPipeline',
      transformer: ['diffusers', 'FluxTransformer2DModel'],
      vae: ['diffusers', 'AutoencoderKLWan'],
      scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
    };
    expect(() => FluxPipeline.fromPretrained(variant('flux-tiny', ['transformer', 'vae', 'scheduler'], { 'model_index.json': index }))).toThrow(
      /'vae' should be \[library, "AutoencoderKL"\], got \["diffusers","AutoencoderKLWan"\]/,
    );
  });

  it('reads a folder with a model_index.json', () => {
    const index = {
      _class_name: 'FluxPipeline',
      transformer: ['diffusers', 'FluxTransformer2DModel'],
      vae: ['diffusers', 'AutoencoderKL'],
      scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
      text_encoder: [null, null],
    };
    using pipe = FluxPipeline.fromPretrained(variant('flux-tiny', ['transformer', 'vae', 'scheduler'], { 'model_index.json': index }));
    expect(pipe.vaeScaleFactor).toBe(2);
  });

  it('refuses transformer weights that do not fit its config, without leaking what it loaded', () => {
    const config = JSON.parse(readFileSync(`${goldens}/flux-tiny/transformer/config.json`, 'utf-8')) as Record<string, unknown>;
    const dir = scratchDir('ditcache-flux-transformer-');
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, joint_attention_dim: 64 }));
    symlinkSync(`${goldens}/flux-tiny/transformer/diffusion_pytorch_model.safetensors`, join(dir, 'diffusion_pytorch_model.safetensors'));
    const before = memoryStats();
    expect(() => FluxTransformer.load(dir)).toThrow(/weight 'context_embedder.weight' has shape \(32, 32\) but config.json implies \(32, 64\)/);
    expect(memoryStats()).toEqual(before);
    expect(() => FluxTransformer.load(`${goldens}/flux-tiny/vae`)).toThrow(/describes a AutoencoderKL, not a FluxTransformer2DModel/);
  });
});

describe('shape errors', () => {
  const ref = loadSafetensors(`${goldens}/flux-tiny/transformer_forward.safetensors`);
  const pipeRef = loadSafetensors(`${goldens}/flux-tiny/pipeline.safetensors`);
  afterAll(() => {
    for (const t of [...Object.values(ref), ...Object.values(pipeRef)]) t.dispose();
  });
  const inputs = {
    hiddenStates: ref.hidden_states,
    encoderHiddenStates: ref.encoder_hidden_states,
    pooledProjections: ref.pooled_projections,
    timestep: ref.timestep,
    imgIds: ref.img_ids,
    txtIds: ref.txt_ids,
  };

  it('FluxTransformer.forward names the input and the shape it needs', () => {
    using transformer = FluxTransformer.load(`${goldens}/flux-tiny/transformer`);
    using guidance = full([2], 3.5);
    using wide = zeros([2, 64, 64]);
    using ids = zeros([64, 2]);
    using column = guidance.reshape(2, 1);
    using dev = FluxTransformer.load(`${goldens}/flux-tiny-guidance/transformer`);
    const before = memoryStats();
    expect(() => transformer.forward({ ...inputs, guidance })).toThrow(/no guidance embeddings \(guidance_embeds is false\): omit guidance/);
    expect(() => transformer.forward({ ...inputs, hiddenStates: wide })).toThrow(/hiddenStates must be \(B, tokens, 16\), got \(2, 64, 64\)/);
    expect(() => transformer.forward({ ...inputs, imgIds: ids })).toThrow(/imgIds must be \(64, 3\), got \(64, 2\)/);
    expect(() => transformer.forward({ ...inputs, pooledProjections: ref.encoder_hidden_states })).toThrow(/pooledProjections must be \(2, 24\)/);
    expect(() => transformer.forward({ ...inputs, timestep: column })).toThrow(/timestep must be \(2,\), got \(2, 1\)/);
    expect(() => dev.forward(inputs)).toThrow(/has guidance embeddings \(guidance_embeds\): pass guidance/);
    expect(memoryStats()).toEqual(before);
  });

  it('FluxPipeline.generate checks sizes, embeddings and latents before running', () => {
    using pipe = FluxPipeline.fromPretrained(`${goldens}/flux-tiny`);
    const base = {
      promptEmbeds: pipeRef.prompt_embeds,
      pooledPromptEmbeds: pipeRef.pooled_prompt_embeds,
      latents: pipeRef.latents_in,
      height: 32,
      width: 32,
      numInferenceSteps: 2,
    };
    const before = memoryStats();
    expect(() => pipe.generate({ ...base, height: 30 })).toThrow(/height must be a positive multiple of 4 \(2 x the VAE scale factor\), got 30/);
    expect(() => pipe.generate({ ...base, width: 64 })).toThrow(/latents must be packed \(1, 128, 16\) for this size, got \(1, 64, 16\)/);
    expect(() => pipe.generate({ ...base, promptEmbeds: pipeRef.latents_in })).toThrow(/promptEmbeds must be \(B, tokens, 32\), got \(1, 64, 16\)/);
    expect(() => pipe.generate({ ...base, negativePromptEmbeds: pipeRef.prompt_embeds })).toThrow(
      /give negativePromptEmbeds and negativePooledPromptEmbeds together/,
    );
    expect(() => pipe.generate({ ...base, negativePromptEmbeds: ref.encoder_hidden_states, negativePooledPromptEmbeds: pipeRef.pooled_prompt_embeds })).toThrow(
      /negativePromptEmbeds \(2, 7, 32\) must match promptEmbeds \(1, 7, 32\)/,
    );
    expect(memoryStats()).toEqual(before);
  });
});
