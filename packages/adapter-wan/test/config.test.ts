import { readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { loadWanTransformerConfig } from '../src/index.js';
import { goldens, localGoldens } from './helpers.js';
import { scratchDir } from '../../../scripts/testing/scratch-dir.js';

/** A copy of the transformer folder `source` whose config.json has `changes` (the weights linked). */
function variantFolder(source: string, changes: Record<string, unknown>): string {
  const config = JSON.parse(readFileSync(`${source}/config.json`, 'utf-8')) as Record<string, unknown>;
  const dir = scratchDir('ditcache-wan-config-');
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, ...changes }));
  symlinkSync(`${source}/diffusion_pytorch_model.safetensors`, join(dir, 'diffusion_pytorch_model.safetensors'));
  return dir;
}

describe('Wan transformer config', () => {
  it('reads the Wan 2.1 folder and both Wan 2.2 experts', () => {
    expect(loadWanTransformerConfig(`${goldens}/wan-tiny/transformer`)).toMatchObject({
      patch_size: [1, 2, 2],
      num_attention_heads: 2,
      attention_head_dim: 12,
      num_layers: 4,
      ffn_dim: 32,
      text_dim: 32,
      freq_dim: 256,
      cross_attn_norm: true,
      qk_norm: 'rms_norm_across_heads',
      eps: 1e-6,
      rope_max_seq_len: 32,
      image_dim: null,
    });
    for (const expert of ['transformer', 'transformer_2']) {
      expect(loadWanTransformerConfig(`${goldens}/wan-tiny/wan22/${expert}`).num_layers).toBe(4);
    }
  });

  it('refuses another model class', () => {
    expect(() => loadWanTransformerConfig(`${goldens}/hidream-tiny/transformer`)).toThrow(
      /describes a HiDreamImageTransformer2DModel, not a WanTransformer3DModel/,
    );
  });

  it('refuses a patch size without three entries and an odd head width', () => {
    const folder = (changes: Record<string, unknown>): string => variantFolder(`${goldens}/wan-tiny/transformer`, changes);
    expect(() => loadWanTransformerConfig(folder({ patch_size: [2, 2] }))).toThrow(/patch_size must have 3 entries \(frames, height, width\), got \[2, 2\]/);
    expect(() => loadWanTransformerConfig(folder({ attention_head_dim: 13 }))).toThrow(/attention_head_dim must be even, got 13/);
  });

  it('reads image-to-video configs, and refuses image settings that cannot go together', () => {
    expect(loadWanTransformerConfig(`${localGoldens}/wan-flf2v-tiny/transformer`)).toMatchObject({
      in_channels: 36,
      image_dim: 20,
      added_kv_proj_dim: 24,
      pos_embed_seq_len: 18,
    });
    const folder = (changes: Record<string, unknown>): string => variantFolder(`${localGoldens}/wan-i2v-tiny/transformer`, changes);
    expect(() => loadWanTransformerConfig(folder({ added_kv_proj_dim: null }))).toThrow(
      /image_dim \(20\) and added_kv_proj_dim \(null\) come together in image-to-video models: set both or neither/,
    );
    expect(() => loadWanTransformerConfig(folder({ image_dim: null }))).toThrow(/image_dim \(null\) and added_kv_proj_dim \(24\) come together/);
    expect(() => loadWanTransformerConfig(folder({ added_kv_proj_dim: 32 }))).toThrow(
      /added_kv_proj_dim must be the model width num_attention_heads x attention_head_dim = 24 .*, got 32/,
    );
    expect(() => loadWanTransformerConfig(folder({ pos_embed_seq_len: 7 }))).toThrow(
      /pos_embed_seq_len \(7\) is the joined length of two image embeddings: it needs image_dim and must be even/,
    );
  });
});
