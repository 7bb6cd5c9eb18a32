// The transformer config of a diffusers LTX-Video folder (LTXVideoTransformer3DModel), typed and checked.
import { WeightFolder } from '@ditcache/cuda-runtime';

/** diffusers' LTXVideoTransformer3DModel defaults (the LTX-Video 2B architecture). */
export const LTX_TRANSFORMER_DEFAULTS = {
  in_channels: 128,
  out_channels: 128 as number | null,
  patch_size: 1,
  patch_size_t: 1,
  num_attention_heads: 32,
  attention_head_dim: 64,
  cross_attention_dim: 2048,
  num_layers: 28,
  activation_fn: 'gelu-approximate',
  qk_norm: 'rms_norm_across_heads',
  norm_elementwise_affine: false,
  norm_eps: 1e-6,
  caption_channels: 4096,
  attention_bias: true,
  attention_out_bias: true,
};

export type LtxTransformerConfig = Omit<typeof LTX_TRANSFORMER_DEFAULTS, 'out_channels'> & { out_channels: number; ignoredKeys: string[] };

/** The checked config.json of an open LTX-Video transformer folder. */
export function readLtxTransformerConfig(folder: WeightFolder): LtxTransformerConfig {
  const cfg = folder.typedConfig(['LTXVideoTransformer3DModel'], LTX_TRANSFORMER_DEFAULTS);
  const where = `${folder.dir}/config.json`;
  const fail = (what: string): never => {
    throw new TypeError(`${where}: ${what}`);
  };
  if (cfg.qk_norm !== 'rms_norm_across_heads') fail(`qk_norm must be 'rms_norm_across_heads' (the only one diffusers implements), got '${cfg.qk_norm}'`);
  if (cfg.activation_fn !== 'gelu-approximate') fail(`activation_fn must be 'gelu-approximate', got '${cfg.activation_fn}'`);
  if (cfg.norm_elementwise_affine) fail("norm_elementwise_affine must be false (the blocks' norms have no weights in LTX-Video)");
  if (!cfg.attention_bias || !cfg.attention_out_bias) fail('attention_bias and attention_out_bias must be true');
  const innerDim = cfg.num_attention_heads * cfg.attention_head_dim;
  // The blocks' cross-attention takes the caption projection, which is as wide as the model.
  if (cfg.cross_attention_dim !== innerDim) {
    fail(
      `cross_attention_dim must be the model width num_attention_heads x attention_head_dim = ${innerDim} (it attends to the projected captions), got ${cfg.cross_attention_dim}`,
    );
  }
  // The rotary embedding rotates pairs of the model width, six channels (a cos / sin pair per axis) per frequency.
  if (innerDim < 6) fail(`the model width num_attention_heads x attention_head_dim must be at least 6, got ${innerDim}`);
  for (const key of ['patch_size', 'patch_size_t'] as const) {
    if (!Number.isInteger(cfg[key]) || cfg[key] < 1) fail(`${key} must be a positive integer, got ${cfg[key]}`);
  }
  return { ...cfg, out_channels: cfg.out_channels ?? cfg.in_channels };
}

/** Reads the config.json of an LTX-Video `transformer/` folder. */
export function loadLtxTransformerConfig(dir: string): LtxTransformerConfig {
  using folder = new WeightFolder(dir);
  return readLtxTransformerConfig(folder);
}
