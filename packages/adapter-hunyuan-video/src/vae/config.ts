// The config of a diffusers AutoencoderKLHunyuanVideo folder, typed and checked for what the
// decoder builds from it.
import { WeightFolder } from '@ditcache/cuda-runtime';

/** diffusers' AutoencoderKLHunyuanVideo defaults (the HunyuanVideo VAE). */
export const AUTOENCODER_KL_HUNYUAN_VIDEO_DEFAULTS = {
  in_channels: 3,
  out_channels: 3,
  latent_channels: 16,
  up_block_types: ['HunyuanVideoUpBlock3D', 'HunyuanVideoUpBlock3D', 'HunyuanVideoUpBlock3D', 'HunyuanVideoUpBlock3D'] as string[],
  block_out_channels: [128, 256, 512, 512] as number[],
  layers_per_block: 2,
  act_fn: 'silu',
  norm_num_groups: 32,
  scaling_factor: 0.476986,
  spatial_compression_ratio: 8,
  temporal_compression_ratio: 4,
  mid_block_add_attention: true,
};

export type AutoencoderKLHunyuanVideoConfig = typeof AUTOENCODER_KL_HUNYUAN_VIDEO_DEFAULTS & { ignoredKeys: string[] };

/** The checked config.json of an open HunyuanVideo VAE folder. */
export function readHunyuanVideoVaeConfig(folder: WeightFolder): AutoencoderKLHunyuanVideoConfig {
  const cfg = folder.typedConfig(['AutoencoderKLHunyuanVideo'], AUTOENCODER_KL_HUNYUAN_VIDEO_DEFAULTS);
  const where = `${folder.dir}/config.json`;
  const levels = cfg.block_out_channels.length;
  if (cfg.up_block_types.length !== levels || cfg.up_block_types.some((t) => t !== 'HunyuanVideoUpBlock3D')) {
    throw new TypeError(
      `${where}: up_block_types must be ${levels} x 'HunyuanVideoUpBlock3D' (one per block_out_channels entry), got ${JSON.stringify(cfg.up_block_types)}`,
    );
  }
  if (cfg.act_fn !== 'silu')
    throw new TypeError(`${where}: act_fn must be 'silu' (the only one HunyuanVideo's decoder is built with), got ${JSON.stringify(cfg.act_fn)}`);
  // diffusers builds the decoder for a temporal ratio of 4 only.
  if (cfg.temporal_compression_ratio !== 4)
    throw new TypeError(`${where}: temporal_compression_ratio must be 4 (diffusers supports no other), got ${cfg.temporal_compression_ratio}`);
  const spatialUps = Math.log2(cfg.spatial_compression_ratio);
  if (!Number.isInteger(spatialUps) || spatialUps < 1 || spatialUps > levels) {
    throw new TypeError(`${where}: spatial_compression_ratio must be 2^k with 1 <= k <= ${levels} (the up blocks), got ${cfg.spatial_compression_ratio}`);
  }
  if (levels < 3) throw new TypeError(`${where}: the decoder needs at least 3 up blocks for its 2 temporal upsamplings, got ${levels}`);
  const bad = cfg.block_out_channels.find((c) => c % cfg.norm_num_groups !== 0);
  if (bad !== undefined) throw new TypeError(`${where}: norm_num_groups ${cfg.norm_num_groups} must divide every block_out_channels entry, not ${bad}`);
  return cfg;
}
