// The transformer config of a diffusers Qwen-Image folder, typed and checked. The flags of the
// later Qwen-Image variants (Edit-2511's zero_cond_t, Layered's 3-D layer rotary and extra
// timestep condition) and guidance_embeds (whose forward path diffusers itself cannot run) are
// refused by name rather than ignored.
import { ConfigError, WeightFolder } from '@ditcache/cuda-runtime';

/** diffusers' QwenImageTransformer2DModel defaults (the Qwen-Image architecture). */
export const QWEN_IMAGE_TRANSFORMER_DEFAULTS = {
  patch_size: 2,
  in_channels: 64,
  out_channels: 16 as number | null,
  num_layers: 60,
  attention_head_dim: 128,
  num_attention_heads: 24,
  joint_attention_dim: 3584,
  guidance_embeds: false,
  axes_dims_rope: [16, 56, 56] as number[],
  zero_cond_t: false,
  use_additional_t_cond: false,
  use_layer3d_rope: false,
};

export type QwenImageTransformerConfig = typeof QWEN_IMAGE_TRANSFORMER_DEFAULTS & { ignoredKeys: string[] };

/** The config flags of variants this port does not run, each with what it belongs to. */
const UNSUPPORTED_FLAGS = {
  guidance_embeds: 'guidance embeddings (diffusers cannot run them either)',
  zero_cond_t: "Qwen-Image-Edit-2511's zero-timestep condition",
  use_additional_t_cond: "Qwen-Image-Layered's additional timestep condition",
  use_layer3d_rope: "Qwen-Image-Layered's layer rotary embedding",
} as const;

/** The checked config.json of an open Qwen-Image transformer folder. */
export function readQwenImageTransformerConfig(folder: WeightFolder): QwenImageTransformerConfig {
  const cfg = folder.typedConfig(['QwenImageTransformer2DModel'], QWEN_IMAGE_TRANSFORMER_DEFAULTS);
  const where = `${folder.dir}/config.json`;
  for (const [key, what] of Object.entries(UNSUPPORTED_FLAGS)) {
    if (cfg[key as keyof typeof UNSUPPORTED_FLAGS]) throw new ConfigError(`${where}: '${key}' is true: ${what} is not supported`);
  }
  if (cfg.axes_dims_rope.length !== 3)
    throw new ConfigError(`${where}: axes_dims_rope must have 3 entries (frame, height, width), got [${cfg.axes_dims_rope.join(', ')}]`);
  const rope = cfg.axes_dims_rope.reduce((a, b) => a + b, 0);
  if (rope !== cfg.attention_head_dim) throw new ConfigError(`${where}: axes_dims_rope sum to ${rope} but attention_head_dim is ${cfg.attention_head_dim}`);
  if (cfg.axes_dims_rope.some((d) => d % 2 !== 0))
    throw new ConfigError(`${where}: every axes_dims_rope entry must be even, got [${cfg.axes_dims_rope.join(', ')}]`);
  return cfg;
}

/** Reads the config.json of a Qwen-Image `transformer/` folder. */
export function loadQwenImageTransformerConfig(dir: string): QwenImageTransformerConfig {
  using folder = new WeightFolder(dir);
  return readQwenImageTransformerConfig(folder);
}
