// The transformer config of a diffusers FLUX.1 folder, typed and checked.
import { WeightFolder } from '@ditcache/cuda-runtime';

/** diffusers' FluxTransformer2DModel defaults (the FLUX.1-dev architecture). */
export const FLUX_TRANSFORMER_DEFAULTS = {
  patch_size: 1,
  in_channels: 64,
  out_channels: null as number | null,
  num_layers: 19,
  num_single_layers: 38,
  attention_head_dim: 128,
  num_attention_heads: 24,
  joint_attention_dim: 4096,
  pooled_projection_dim: 768,
  guidance_embeds: false,
  axes_dims_rope: [16, 56, 56] as number[],
};

export type FluxTransformerConfig = typeof FLUX_TRANSFORMER_DEFAULTS & { ignoredKeys: string[] };

/** Reads `transformer/config.json` of a FLUX folder (or a transformer folder itself). */
export function loadFluxTransformerConfig(dir: string): FluxTransformerConfig {
  using folder = new WeightFolder(dir);
  const cfg = folder.typedConfig(['FluxTransformer2DModel'], FLUX_TRANSFORMER_DEFAULTS);
  const rope = cfg.axes_dims_rope.reduce((a, b) => a + b, 0);
  if (rope !== cfg.attention_head_dim) {
    throw new TypeError(`${dir}/config.json: axes_dims_rope sum to ${rope} but attention_head_dim is ${cfg.attention_head_dim}`);
  }
  return cfg;
}
