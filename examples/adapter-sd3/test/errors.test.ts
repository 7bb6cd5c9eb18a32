// Bad input gets a clear error naming what is wrong, before any work.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadSafetensors, tensor, zeros, type Tensor } from '@ditcache/cuda-runtime';

import { loadSD3TransformerConfig, SD3Transformer, StableDiffusion3Pipeline, type SD3GenerateOptions } from '../src/index.js';
import { goldens } from './helpers.js';

const copies: string[] = [];
afterAll(() => {
  for (const dir of copies) rmSync(dir, { recursive: true });
});

/** A copy of sd35-tiny whose transformer config.json has `changes` applied. */
function withTransformerConfig(changes: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'sd3-config-'));
  copies.push(dir);
  cpSync(`${goldens}/sd35-tiny`, dir, { recursive: true });
  const path = join(dir, 'transformer', 'config.json');
  writeFileSync(path, JSON.stringify({ ...JSON.parse(readFileSync(path, 'utf-8')), ...changes }));
  return dir;
}

describe('config and folder errors', () => {
  it('names the config key and what it must be', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ qk_norm: 'layer_norm' }, /qk_norm must be null or 'rms_norm' \(as in SD3 and SD3.5\), got "layer_norm"/],
      [{ caption_projection_dim: 12 }, /caption_projection_dim \(12\) must equal num_attention_heads x attention_head_dim \(16\)/],
      [{ pos_embed_max_size: null }, /pos_embed_max_size is null: only the stored, cropped positional embedding of SD3 is supported/],
      [{ dual_attention_layers: [0, 4] }, /dual_attention_layers holds 4, not a block index below num_layers \(4\)/],
      [{ num_layers: 0 }, /'num_layers' must be a positive integer, got 0/],
      [{ num_attention_heads: '2' }, /'num_attention_heads' should be a number, got "2"/],
      [{ _class_name: 'FluxTransformer2DModel' }, /describes a FluxTransformer2DModel, not a SD3Transformer2DModel/],
    ];
    for (const [changes, message] of cases) expect(() => loadSD3TransformerConfig(join(withTransformerConfig(changes), 'transformer'))).toThrow(message);
  });

  it('refuses weights that do not fit the config, and folders of another pipeline', () => {
    expect(() => SD3Transformer.load(join(withTransformerConfig({ dual_attention_layers: [0, 1, 2] }), 'transformer'))).toThrow(
      /weight 'transformer_blocks\.2\.norm1\.linear\.weight' has shape \(96, 16\) but config.json implies \(144, 16\)/,
    );
    expect(() => SD3Transformer.load(join(withTransformerConfig({ num_attention_heads: 4, attention_head_dim: 4 }), 'transformer'))).toThrow(
      /weight 'transformer_blocks\.0\.attn\.norm_q\.weight' has shape \(8\) but config.json implies \(4\)/,
    );
    const other = withTransformerConfig({});
    writeFileSync(join(other, 'model_index.json'), JSON.stringify({ _class_name: 'FluxPipeline' }));
    expect(() => StableDiffusion3Pipeline.fromPretrained(other)).toThrow(/describes a FluxPipeline, not a StableDiffusion3Pipeline/);
    expect(() => StableDiffusion3Pipeline.fromPretrained(join(other, 'nowhere'))).toThrow(/no such pipeline folder/);
  });
});

describe('input errors', () => {
  let pipe: StableDiffusion3Pipeline;
  let ref: Record<string, Tensor>;
  let request: SD3GenerateOptions;
  beforeAll(() => {
    pipe = StableDiffusion3Pipeline.fromPretrained(`${goldens}/sd35-tiny`);
    ref = loadSafetensors(`${goldens}/sd35-tiny/pipeline.safetensors`);
    request = {
      promptEmbeds: ref.prompt_embeds,
      pooledPromptEmbeds: ref.pooled_prompt_embeds,
      negativePromptEmbeds: ref.negative_prompt_embeds,
      negativePooledPromptEmbeds: ref.negative_pooled_prompt_embeds,
      height: 24,
      width: 24,
      numInferenceSteps: 2,
      decode: false,
    };
  });
  afterAll(() => {
    pipe.dispose();
    for (const t of Object.values(ref)) t.dispose();
  });

  it('the transformer names the input and the shape it needs', () => {
    const f = ref;
    const forward = (changes: Partial<Record<'hiddenStates' | 'encoderHiddenStates' | 'pooledProjections' | 'timestep', Tensor>>) => () =>
      pipe.transformer.forward({
        hiddenStates: zeros([1, 16, 12, 12]),
        encoderHiddenStates: f.prompt_embeds,
        pooledProjections: f.pooled_prompt_embeds,
        timestep: tensor([500]),
        ...changes,
      });
    expect(forward({ hiddenStates: zeros([1, 4, 12, 12]) })).toThrow(/hiddenStates must be latents \(B, 16, height, width\), got \(1, 4, 12, 12\)/);
    expect(forward({ hiddenStates: zeros([1, 16, 12, 11]) })).toThrow(/latents 12x11 are not multiples of the patch size 2/);
    expect(forward({ hiddenStates: zeros([1, 16, 12, 22]) })).toThrow(/make 6x11 patches, more than the 10x10 positional embeddings \(pos_embed_max_size\)/);
    expect(forward({ encoderHiddenStates: zeros([1, 6, 16]) })).toThrow(/encoderHiddenStates must be \(1, tokens, 32\), got \(1, 6, 16\)/);
    expect(forward({ pooledProjections: zeros([2, 24]) })).toThrow(/pooledProjections must be \(1, 24\), got \(2, 24\)/);
    expect(forward({ timestep: tensor([500, 400]) })).toThrow(/timestep must be \(1,\), got \(2\)/);
  });

  it('a block list that ends the encoder stream before its last block is refused', () => {
    const blocks = pipe.transformer.transformerBlocks;
    pipe.transformer.transformerBlocks = [blocks[blocks.length - 1], blocks[0]];
    try {
      expect(() => pipe.generate(request)).toThrow(/block 0 ended the encoder stream, but only the last block may \(context_pre_only\)/);
    } finally {
      pipe.transformer.transformerBlocks = blocks;
    }
  });

  it('the pipeline checks sizes, embeddings and latents', () => {
    expect(() => pipe.generate({ ...request, height: 26 })).toThrow(/height must be a positive multiple of 4 \(the VAE scale factor x patch_size\), got 26/);
    expect(() => pipe.generate({ ...request, width: 48 })).toThrow(/make 6x12 patches, more than the 10x10 positional embeddings/);
    expect(() => pipe.generate({ ...request, negativePromptEmbeds: undefined })).toThrow(
      /guidanceScale > 1 runs classifier-free guidance: give negativePromptEmbeds and negativePooledPromptEmbeds/,
    );
    expect(() => pipe.generate({ ...request, negativePooledPromptEmbeds: zeros([1, 12]) })).toThrow(
      /negativePooledPromptEmbeds \(1, 12\) must match pooledPromptEmbeds \(1, 24\)/,
    );
    expect(() => pipe.generate({ ...request, pooledPromptEmbeds: zeros([1, 12]) })).toThrow(/pooledPromptEmbeds must be \(1, 24\), got \(1, 12\)/);
    expect(() => pipe.generate({ ...request, latents: zeros([1, 16, 6, 6]) })).toThrow(/latents must be \(1, 16, 12, 12\) for this size, got \(1, 16, 6, 6\)/);
  });
});
