import { describe, expect, it } from 'vitest';

import { loadFluxTransformerConfig } from '../src/index.js';

const goldens = new URL('../../../testdata/goldens/', import.meta.url).pathname;

describe('FLUX transformer config', () => {
  it('reads both golden folders (schnell-like and dev-like)', () => {
    const schnell = loadFluxTransformerConfig(`${goldens}/flux-tiny/transformer`);
    expect(schnell).toMatchObject({
      num_layers: 2,
      num_single_layers: 4,
      attention_head_dim: 16,
      num_attention_heads: 2,
      in_channels: 16,
      out_channels: null,
      guidance_embeds: false,
      axes_dims_rope: [4, 6, 6],
      joint_attention_dim: 32,
      pooled_projection_dim: 24,
    });
    expect(schnell.ignoredKeys).toEqual([]);
    expect(loadFluxTransformerConfig(`${goldens}/flux-tiny-guidance/transformer`).guidance_embeds).toBe(true);
  });

  it('refuses another model class and a missing folder', () => {
    expect(() => loadFluxTransformerConfig(`${goldens}/wan-tiny/transformer`)).toThrow(/describes a WanTransformer3DModel, not a FluxTransformer2DModel/);
    expect(() => loadFluxTransformerConfig(`${goldens}/flux-tiny/nothing`)).toThrow(/no such model folder/);
  });
});
