import { readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, zeros } from '@ditcache/cuda-runtime';

import { HiDreamPipeline, HiDreamTransformer } from '../src/index.js';
import { goldenInputs, goldens } from './helpers.js';
import { scratchDir } from '../../../scripts/testing/scratch-dir.js';

const tiny = `${goldens}/hidream-tiny`;

/** A folder whose entries link to hidream-tiny's, with some files written instead. */
function variant(links: string[], files: Record<string, unknown> = {}): string {
  const dir = scratchDir('ditcache-hidream-');
  for (const entry of links) symlinkSync(`${tiny}/${entry}`, join(dir, entry));
  for (const [name, json] of Object.entries(files)) writeFileSync(join(dir, name), JSON.stringify(json));
  return dir;
}

/** hidream-tiny's transformer folder with some config.json entries changed. */
function transformerVariant(changes: Record<string, unknown>): string {
  const config = JSON.parse(readFileSync(`${tiny}/transformer/config.json`, 'utf-8')) as Record<string, unknown>;
  const dir = scratchDir('ditcache-hidream-transformer-');
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, ...changes }));
  symlinkSync(`${tiny}/transformer/diffusion_pytorch_model.safetensors`, join(dir, 'diffusion_pytorch_model.safetensors'));
  return dir;
}

describe('loading errors', () => {
  it('HiDreamPipeline.fromPretrained names a missing folder, a missing component and another class', () => {
    expect(() => HiDreamPipeline.fromPretrained(`${goldens}/hidream-nothing`)).toThrow(/hidream-nothing: no such pipeline folder/);
    expect(() => HiDreamPipeline.fromPretrained(variant(['transformer', 'vae']))).toThrow(/no scheduler\/ folder/);
    expect(() => HiDreamPipeline.fromPretrained(`${goldens}/wan-tiny`)).toThrow(/model_index.json describes a WanPipeline, not a HiDreamImagePipeline/);
    const index = JSON.parse(readFileSync(`${tiny}/model_index.json`, 'utf-8')) as Record<string, unknown>;
    const unipc = { ...index, scheduler: ['diffusers', 'UniPCMultistepScheduler'] };
    expect(() => HiDreamPipeline.fromPretrained(variant(['transformer', 'vae', 'scheduler'], { 'model_index.json': unipc }))).toThrow(
      /'scheduler' should be \[library, "FlowMatchEulerDiscreteScheduler"\], got \["diffusers","UniPCMultistepScheduler"\]/,
    );
  });

  it('HiDreamTransformer.load refuses another model class, bad configs and weights that do not fit, without leaking', () => {
    const before = memoryStats();
    expect(() => HiDreamTransformer.load(`${goldens}/flux-tiny/transformer`)).toThrow(
      /describes a FluxTransformer2DModel, not a HiDreamImageTransformer2DModel/,
    );
    expect(() => HiDreamTransformer.load(transformerVariant({ llama_layers: [0, 1, 2] }))).toThrow(
      /llama_layers must list one layer per block \(6\), got \[0,1,2\]/,
    );
    expect(() => HiDreamTransformer.load(transformerVariant({ axes_dims_rope: [2, 2, 2] }))).toThrow(/axes_dims_rope sum to 6 but attention_head_dim is 8/);
    expect(() => HiDreamTransformer.load(transformerVariant({ axes_dims_rope: [4, 4] }))).toThrow(/axes_dims_rope must be 3 positive even sizes/);
    expect(() => HiDreamTransformer.load(transformerVariant({ num_activated_experts: 5 }))).toThrow(
      /num_activated_experts \(5\) must be between 1 and num_routed_experts \(4\)/,
    );
    expect(() => HiDreamTransformer.load(transformerVariant({ caption_channels: [32, 8] }))).toThrow(
      /weight 'caption_projection.0.linear.weight' has shape \(16, 16\) but config.json implies \(16, 8\)/,
    );
    expect(memoryStats()).toEqual(before);
  });
});

describe('shape errors', () => {
  const ref = loadSafetensors(`${tiny}/transformer_forward.safetensors`);
  const pipeRef = loadSafetensors(`${tiny}/pipeline.safetensors`);
  afterAll(() => {
    for (const t of [...Object.values(ref), ...Object.values(pipeRef)]) t.dispose();
  });
  const inputs = goldenInputs(ref);

  it('HiDreamTransformer.forward names the input and the shape it needs', () => {
    using transformer = HiDreamTransformer.load(`${tiny}/transformer`);
    using odd = zeros([2, 4, 15, 15]);
    using tooWide = zeros([2, 4, 16, 40]);
    using channels = zeros([2, 16, 16, 16]);
    using twoLayers = ref.encoder_hidden_states_llama3.narrow(0, 0, 2);
    using column = ref.timesteps.reshape(2, 1);
    const before = memoryStats();
    expect(() => transformer.forward({ ...inputs, hiddenStates: channels })).toThrow(/hiddenStates must be latents \(B, 4, H, W\), got \(2, 16, 16, 16\)/);
    expect(() => transformer.forward({ ...inputs, hiddenStates: odd })).toThrow(/height and width must be multiples of patch_size 2, got \(2, 4, 15, 15\)/);
    expect(() => transformer.forward({ ...inputs, hiddenStates: tooWide })).toThrow(
      /non-square latents \(2, 4, 16, 40\) make more tokens than max_seq \(144, from max_resolution \[24, 24\]\)/,
    );
    expect(() => transformer.forward({ ...inputs, timesteps: column })).toThrow(/timesteps must be \(2,\), got \(2, 1\)/);
    expect(() => transformer.forward({ ...inputs, encoderHiddenStatesT5: ref.pooled_embeds })).toThrow(
      /encoderHiddenStatesT5 must be \(2, tokens, 32\), got \(2, 64\)/,
    );
    expect(() => transformer.forward({ ...inputs, encoderHiddenStatesLlama3: ref.encoder_hidden_states_t5 })).toThrow(
      /encoderHiddenStatesLlama3 must be stacked Llama layers \(layers, 2, tokens, 16\), got \(2, 8, 32\)/,
    );
    expect(() => transformer.forward({ ...inputs, encoderHiddenStatesLlama3: twoLayers })).toThrow(/stacks 2 Llama layers, but llama_layers reads layer 2/);
    expect(() => transformer.forward({ ...inputs, pooledEmbeds: ref.timesteps })).toThrow(/pooledEmbeds must be \(2, 64\), got \(2\)/);
    expect(memoryStats()).toEqual(before);
  });

  it('HiDreamPipeline.generate checks sizes, embeddings and latents before running', () => {
    using pipe = HiDreamPipeline.fromPretrained(tiny);
    pipe.defaultSampleSize = 16;
    using twoLayers = pipeRef.prompt_embeds_llama3.narrow(0, 0, 2);
    const base = {
      promptEmbedsT5: pipeRef.prompt_embeds_t5,
      promptEmbedsLlama3: pipeRef.prompt_embeds_llama3,
      pooledPromptEmbeds: pipeRef.pooled_prompt_embeds,
      negativePromptEmbedsT5: pipeRef.negative_prompt_embeds_t5,
      negativePromptEmbedsLlama3: pipeRef.negative_prompt_embeds_llama3,
      negativePooledPromptEmbeds: pipeRef.negative_pooled_prompt_embeds,
      latents: pipeRef.latents_in,
      numInferenceSteps: 2,
    };
    const before = memoryStats();
    expect(() => pipe.generate({ ...base, height: 31.5 })).toThrow(/height must be a positive integer, got 31.5/);
    expect(() => pipe.generate({ ...base, height: 32, width: 48 })).toThrow(/latents must be \(1, 4, 12, 18\) for a 24x36 image, got \(1, 4, 16, 16\)/);
    expect(() => pipe.generate({ ...base, negativePromptEmbedsT5: undefined })).toThrow(
      /guidanceScale > 1 runs classifier-free guidance: give negativePromptEmbedsT5, negativePromptEmbedsLlama3, negativePooledPromptEmbeds/,
    );
    expect(() => pipe.generate({ ...base, negativePromptEmbedsLlama3: twoLayers })).toThrow(
      /negativePromptEmbedsLlama3 \(2, 1, 6, 16\) must match promptEmbedsLlama3 \(3, 1, 6, 16\)/,
    );
    expect(() => pipe.generate({ ...base, promptEmbedsLlama3: twoLayers })).toThrow(
      /promptEmbedsLlama3 stacks 2 Llama layers, but the transformer's llama_layers reads layer 2/,
    );
    expect(() => pipe.generate({ ...base, pooledPromptEmbeds: pipeRef.prompt_embeds_t5 })).toThrow(/pooledPromptEmbeds must be \(1, 64\), got \(1, 8, 32\)/);
    expect(memoryStats()).toEqual(before);
  });
});
