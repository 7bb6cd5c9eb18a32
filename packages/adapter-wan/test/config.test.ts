import { describe, expect, it } from 'vitest';

import { loadWanTransformerConfig } from '../src/index.js';

const goldens = new URL('../../../testdata/goldens/', import.meta.url).pathname;

describe('Wan transformer config', () => {
  it('reads the Wan 2.1 folder and both Wan 2.2 experts', () => {
    expect(loadWanTransformerConfig(`${goldens}/wan-tiny/transformer`)).toMatchObject({
      patch_size: [1, 2, 2], num_attention_heads: 2, attention_head_dim: 12, num_layers: 4, ffn_dim: 32, text_dim: 32,
      freq_dim: 256, cross_attn_norm: true, qk_norm: 'rms_norm_across_heads', eps: 1e-6, rope_max_seq_len: 32, image_dim: null,
    });
    for (const expert of ['transformer', 'transformer_2']) {
      expect(loadWanTransformerConfig(`${goldens}/wan-tiny/wan22/${expert}`).num_layers).toBe(4);
    }
  });

  it('refuses another model class', () => {
    expect(() => loadWanTransformerConfig(`${goldens}/hidream-tiny/transformer`)).toThrow(/describes a HiDreamImageTransformer2DModel, not a WanTransformer3DModel/);
  });
});
