import { describe, expect, it } from 'vitest';

import { loadHiDreamTransformerConfig } from '../src/index.js';

const goldens = new URL('../../../testdata/goldens/', import.meta.url).pathname;

describe('HiDream transformer config', () => {
  it('reads the golden folder', () => {
    expect(loadHiDreamTransformerConfig(`${goldens}/hidream-tiny/transformer`)).toMatchObject({
      patch_size: 2,
      in_channels: 4,
      out_channels: 4,
      num_layers: 3,
      num_single_layers: 3,
      attention_head_dim: 8,
      num_attention_heads: 2,
      caption_channels: [32, 16],
      text_emb_dim: 64,
      num_routed_experts: 4,
      num_activated_experts: 2,
      axes_dims_rope: [4, 2, 2],
      max_resolution: [24, 24],
      llama_layers: [2, 1, 0, 2, 1, 0],
    });
  });

  it('refuses another model class', () => {
    expect(() => loadHiDreamTransformerConfig(`${goldens}/flux-tiny/transformer`)).toThrow(
      /describes a FluxTransformer2DModel, not a HiDreamImageTransformer2DModel/,
    );
  });
});
