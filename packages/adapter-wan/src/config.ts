// The transformer config of a diffusers Wan 2.1 / 2.2 folder, typed and checked.
import { WeightFolder } from '@ditcache/cuda-runtime';

/** diffusers' WanTransformer3DModel defaults (the Wan 2.1 14B architecture). */
export const WAN_TRANSFORMER_DEFAULTS = {
  patch_size: [1, 2, 2] as number[],
  num_attention_heads: 40,
  attention_head_dim: 128,
  in_channels: 16,
  out_channels: 16,
  text_dim: 4096,
  freq_dim: 256,
  ffn_dim: 13824,
  num_layers: 40,
  cross_attn_norm: true,
  qk_norm: 'rms_norm_across_heads' as string | null,
  eps: 1e-6,
  image_dim: null as number | null,
  added_kv_proj_dim: null as number | null,
  rope_max_seq_len: 1024,
  pos_embed_seq_len: null as number | null,
};

export type WanTransformerConfig = typeof WAN_TRANSFORMER_DEFAULTS & { ignoredKeys: string[] };

/** The checked config.json of an open Wan transformer folder. */
export function readWanTransformerConfig(folder: WeightFolder): WanTransformerConfig {
  const cfg = folder.typedConfig(['WanTransformer3DModel'], WAN_TRANSFORMER_DEFAULTS);
  const where = `${folder.dir}/config.json`;
  if (cfg.patch_size.length !== 3) {
    throw new TypeError(`${where}: patch_size must have 3 entries (frames, height, width), got [${cfg.patch_size.join(', ')}]`);
  }
  // The rotary embedding rotates pairs within the frame, row and column parts of each head.
  if (cfg.attention_head_dim % 2 !== 0) throw new TypeError(`${where}: attention_head_dim must be even, got ${cfg.attention_head_dim}`);
  // Image-to-video: the image embedder feeds the cross-attention's added projections, at the model's width.
  if ((cfg.image_dim === null) !== (cfg.added_kv_proj_dim === null)) {
    throw new TypeError(
      `${where}: image_dim (${cfg.image_dim}) and added_kv_proj_dim (${cfg.added_kv_proj_dim}) come together in image-to-video models: set both or neither`,
    );
  }
  const innerDim = cfg.num_attention_heads * cfg.attention_head_dim;
  if (cfg.added_kv_proj_dim !== null && cfg.added_kv_proj_dim !== innerDim) {
    throw new TypeError(
      `${where}: added_kv_proj_dim must be the model width num_attention_heads x attention_head_dim = ${innerDim} (it projects the embedded image tokens), got ${cfg.added_kv_proj_dim}`,
    );
  }
  if (cfg.pos_embed_seq_len !== null && (cfg.image_dim === null || cfg.pos_embed_seq_len % 2 !== 0)) {
    throw new TypeError(
      `${where}: pos_embed_seq_len (${cfg.pos_embed_seq_len}) is the joined length of two image embeddings: it needs image_dim and must be even`,
    );
  }
  return cfg;
}

/** Reads the config.json of a Wan `transformer/` (or `transformer_2/`) folder. */
export function loadWanTransformerConfig(dir: string): WanTransformerConfig {
  using folder = new WeightFolder(dir);
  return readWanTransformerConfig(folder);
}
