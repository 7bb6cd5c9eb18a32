// The transformer config of a diffusers SD3 / SD3.5 folder, typed and checked.
import { WeightFolder } from '@ditcache/cuda-runtime';
import { ConfigError } from '@ditcache/diffusion';

/** diffusers' SD3Transformer2DModel defaults. */
export const SD3_TRANSFORMER_DEFAULTS = {
  sample_size: 128,
  patch_size: 2,
  in_channels: 16,
  num_layers: 18,
  attention_head_dim: 64,
  num_attention_heads: 18,
  joint_attention_dim: 4096,
  caption_projection_dim: 1152,
  pooled_projection_dim: 2048,
  out_channels: 16 as number | null,
  pos_embed_max_size: 96 as number | null,
  /** Blocks with SD3.5's second attention on the image stream: none in SD3, 0-12 in SD3.5 Medium. */
  dual_attention_layers: [] as number[],
  /** 'rms_norm' (SD3.5) normalises queries and keys per head; null (SD3) does not. */
  qk_norm: null as string | null,
};

export type SD3TransformerConfig = typeof SD3_TRANSFORMER_DEFAULTS & { ignoredKeys: string[] };

/** The checked config.json of an open SD3 transformer folder. */
export function readSD3TransformerConfig(folder: WeightFolder): SD3TransformerConfig {
  const cfg = folder.typedConfig(['SD3Transformer2DModel'], SD3_TRANSFORMER_DEFAULTS);
  const fail = (what: string): never => {
    throw new ConfigError(`${folder.dir}/config.json: ${what}`);
  };
  const positive = [
    'patch_size',
    'in_channels',
    'num_layers',
    'attention_head_dim',
    'num_attention_heads',
    'joint_attention_dim',
    'pooled_projection_dim',
  ] as const;
  for (const key of positive) if (!Number.isInteger(cfg[key]) || cfg[key] < 1) fail(`'${key}' must be a positive integer, got ${JSON.stringify(cfg[key])}`);
  const inner = cfg.num_attention_heads * cfg.attention_head_dim;
  // The joint blocks add the projected text to a stream of the model's width.
  if (cfg.caption_projection_dim !== inner) {
    fail(`caption_projection_dim (${cfg.caption_projection_dim}) must equal num_attention_heads x attention_head_dim (${inner})`);
  }
  if (cfg.pos_embed_max_size === null) fail('pos_embed_max_size is null: only the stored, cropped positional embedding of SD3 is supported');
  if (cfg.qk_norm !== null && cfg.qk_norm !== 'rms_norm') fail(`qk_norm must be null or 'rms_norm' (as in SD3 and SD3.5), got ${JSON.stringify(cfg.qk_norm)}`);
  for (const i of cfg.dual_attention_layers) {
    if (!Number.isInteger(i) || i < 0 || i >= cfg.num_layers)
      fail(`dual_attention_layers holds ${JSON.stringify(i)}, not a block index below num_layers (${cfg.num_layers})`);
  }
  return cfg;
}

/** Reads the config.json of an SD3 `transformer/` folder. */
export function loadSD3TransformerConfig(dir: string): SD3TransformerConfig {
  using folder = new WeightFolder(dir);
  return readSD3TransformerConfig(folder);
}
