// Bad configs, folders and inputs fail with errors that name what is wrong.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, ones, zeros } from '@ditcache/cuda-runtime';

import { AutoencoderKLLtxVideoDecoder, LtxPipeline, LtxVideoTransformer } from '../src/index.js';
import { goldens, request } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'ditcache-ltx-errors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A copy of a golden folder with one config.json key changed. */
function withConfig(folder: string, file: string, change: Record<string, unknown>): string {
  const copy = join(dir, `${folder.replaceAll('/', '_')}-${Object.keys(change).join('-')}`);
  cpSync(join(goldens, folder), copy, { recursive: true });
  const path = join(copy, file);
  writeFileSync(path, JSON.stringify({ ...JSON.parse(readFileSync(path, 'utf-8')), ...change }));
  return copy;
}

describe('LTX-Video errors', () => {
  const fwd = loadSafetensors(`${goldens}/ltx-tiny/transformer_forward.safetensors`);
  const ref = loadSafetensors(`${goldens}/ltx-tiny/pipeline.safetensors`);
  afterAll(() => {
    for (const t of [...Object.values(fwd), ...Object.values(ref)]) t.dispose();
  });

  it('refuses transformer configs it cannot run, naming the key', () => {
    expect(() => LtxVideoTransformer.load(withConfig('ltx-tiny/transformer', 'config.json', { qk_norm: 'rms_norm' }))).toThrow(
      /qk_norm must be 'rms_norm_across_heads'/,
    );
    expect(() => LtxVideoTransformer.load(withConfig('ltx-tiny/transformer', 'config.json', { cross_attention_dim: 32 }))).toThrow(
      /cross_attention_dim must be the model width .* = 16/,
    );
    expect(() => LtxVideoTransformer.load(withConfig('ltx-tiny/transformer', 'config.json', { caption_channels: 10 }))).toThrow(
      /caption_projection\.linear_1\.weight/,
    );
  });

  it('refuses VAE configs whose lists do not fit, and noise injection', () => {
    expect(() => AutoencoderKLLtxVideoDecoder.load(withConfig('ltx-tiny/vae', 'config.json', { upsample_factor: [1, 1] }))).toThrow(
      /upsample_factor must have 3 entries/,
    );
    expect(() => AutoencoderKLLtxVideoDecoder.load(withConfig('ltx-tiny/vae', 'config.json', { decoder_inject_noise: [true, false, false, false] }))).toThrow(
      /decoder_inject_noise .* is not supported/,
    );
  });

  it('checks the forward inputs: packed latents, the grid against the tokens, the mask', () => {
    using transformer = LtxVideoTransformer.load(`${goldens}/ltx-tiny/transformer`);
    const base = {
      hiddenStates: fwd.hidden_states,
      encoderHiddenStates: fwd.encoder_hidden_states,
      timestep: fwd.timestep,
      encoderAttentionMask: fwd.encoder_attention_mask,
      numFrames: 3,
      height: 2,
      width: 3,
      ropeInterpolationScale: [0.32, 8, 8] as [number, number, number],
    };
    expect(() => transformer.forward({ ...base, numFrames: 4 })).toThrow(/4 x 2 x 3 = 24 rotary positions, but hiddenStates has 18 tokens/);
    using unpacked = zeros([2, 8, 3, 2, 3]);
    expect(() => transformer.forward({ ...base, hiddenStates: unpacked })).toThrow(/hiddenStates must be packed latents \(B, tokens, 8\)/);
    using mask = ones([2, 5]);
    expect(() => transformer.forward({ ...base, encoderAttentionMask: mask })).toThrow(/encoderAttentionMask must be \(2, 6\)/);
  });

  it('checks the pipeline request: size, frames, the negative pair under CFG, the latents', () => {
    using pipe = LtxPipeline.fromPretrained(`${goldens}/ltx-tiny`);
    const r = { ...request(ref, 'ltx-tiny'), decode: false };
    expect(() => pipe.generate({ ...r, height: 48 })).toThrow(/height must be a multiple of 32 of at least 32, got 48/);
    expect(() => pipe.generate({ ...r, numFrames: 0 })).toThrow(/numFrames must be a positive integer, got 0/);
    expect(() => pipe.generate({ ...r, negativePromptEmbeds: undefined })).toThrow(/give negativePromptEmbeds and negativePromptAttentionMask together/);
    expect(() => pipe.generate({ ...r, negativePromptEmbeds: undefined, negativePromptAttentionMask: undefined })).toThrow(
      /classifier-free guidance, which needs the negative prompt, and it cannot be encoded \(.* has no tokenizer\/, text_encoder\/\)/,
    );
    expect(() => pipe.generate({ ...r, numFrames: 5 })).toThrow(/latents must be packed \(1, 32, 8\)/);
    expect(() => pipe.generate({ ...r, decodeTimestep: 0.05, decode: true })).toThrow(/decodeTimestep \/ decodeNoiseScale apply to a timestep-conditioned VAE/);
  });

  it('refuses a folder of another pipeline', () => {
    const copy = withConfig('ltx-tiny', 'model_index.json', { _class_name: 'WanPipeline' });
    expect(() => LtxPipeline.fromPretrained(copy)).toThrow(/describes a WanPipeline, not an LTXPipeline/);
  });
});
