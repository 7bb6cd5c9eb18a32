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

/** The checked config.json of an open FLUX transformer folder. */
export function readFluxTransformerConfig(folder: WeightFolder): FluxTransformerConfig {
  const cfg = folder.typedConfig(['FluxTransformer2DModel'], FLUX_TRANSFORMER_DEFAULTS);
  const rope = cfg.axes_dims_rope.reduce((a, b) => a + b, 0);
  if (rope !== cfg.attention_head_dim) {
    throw new TypeError(`${folder.dir}/config.json: axes_dims_rope sum to ${rope} but attention_head_dim is ${cfg.attention_head_dim}`);
  }
  if (cfg.axes_dims_rope.some((d) => d % 2 !== 0)) {
    throw new TypeError(`${folder.dir}/config.json: every axes_dims_rope entry must be even, got [${cfg.axes_dims_rope.join(', ')}]`);
  }
  return cfg;
}

/** Reads the config.json of a FLUX `transformer/` folder. */
export function loadFluxTransformerConfig(dir: string): FluxTransformerConfig {
  using folder = new WeightFolder(dir);
  return readFluxTransformerConfig(folder);
}
