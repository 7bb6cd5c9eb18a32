// The transformer config of a diffusers HunyuanVideo folder, typed and checked.
import { WeightFolder } from '@ditcache/cuda-runtime';

/** diffusers' HunyuanVideoTransformer3DModel defaults (the HunyuanVideo 13B text-to-video architecture). */
export const HUNYUAN_VIDEO_TRANSFORMER_DEFAULTS = {
  in_channels: 16,
  out_channels: 16 as number | null,
  num_attention_heads: 24,
  attention_head_dim: 128,
  num_layers: 20,
  num_single_layers: 40,
  num_refiner_layers: 2,
  mlp_ratio: 4.0,
  patch_size: 2,
  patch_size_t: 1,
  qk_norm: 'rms_norm' as string,
  guidance_embeds: true,
  text_embed_dim: 4096,
  pooled_projection_dim: 768,
  rope_theta: 256.0,
  rope_axes_dim: [16, 56, 56] as number[],
  image_condition_type: null as string | null,
};

export type HunyuanVideoTransformerConfig = typeof HUNYUAN_VIDEO_TRANSFORMER_DEFAULTS & { ignoredKeys: string[] };

/** The checked config.json of an open HunyuanVideo transformer folder. */
export function readHunyuanVideoTransformerConfig(folder: WeightFolder): HunyuanVideoTransformerConfig {
  const cfg = folder.typedConfig(['HunyuanVideoTransformer3DModel'], HUNYUAN_VIDEO_TRANSFORMER_DEFAULTS);
  const where = `${folder.dir}/config.json`;
  if (cfg.image_condition_type !== null) {
    throw new TypeError(
      `${where}: image_condition_type ${JSON.stringify(cfg.image_condition_type)} is HunyuanVideo image-to-video, which is not ported; only text-to-video (null) is`,
    );
  }
  if (cfg.qk_norm !== 'rms_norm')
    throw new TypeError(`${where}: qk_norm must be 'rms_norm' (the only one HunyuanVideo uses), got ${JSON.stringify(cfg.qk_norm)}`);
  if (cfg.rope_axes_dim.length !== 3) {
    throw new TypeError(`${where}: rope_axes_dim must have 3 entries (frames, rows, columns), got [${cfg.rope_axes_dim.join(', ')}]`);
  }
  const rope = cfg.rope_axes_dim.reduce((a, b) => a + b, 0);
  if (rope !== cfg.attention_head_dim) {
    throw new TypeError(`${where}: rope_axes_dim sum to ${rope} but attention_head_dim is ${cfg.attention_head_dim}`);
  }
  if (cfg.rope_axes_dim.some((d) => d < 2 || d % 2 !== 0)) {
    throw new TypeError(`${where}: every rope_axes_dim entry must be even and at least 2, got [${cfg.rope_axes_dim.join(', ')}]`);
  }
  return cfg;
}

/** Reads the config.json of a HunyuanVideo `transformer/` folder. */
export function loadHunyuanVideoTransformerConfig(dir: string): HunyuanVideoTransformerConfig {
  using folder = new WeightFolder(dir);
  return readHunyuanVideoTransformerConfig(folder);
}
