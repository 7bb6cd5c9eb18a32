// The two diffusers configs of the Wan-layout VAE: AutoencoderKLWan (Wan 2.1, shared by Wan 2.2
// A14B) and AutoencoderKLQwenImage (Qwen-Image), which builds the same decoder from fewer keys
// (one `input_channels` for both ends; no decoder_base_dim, residual or patchified variant, or
// declared scale factors). Both read into one config, so one decoder serves both.
import type { WeightFolder } from '@ditcache/cuda-runtime';

import { ConfigError } from '../../io/config-file.js';

/** diffusers' AutoencoderKLWan config defaults (the Wan 2.1 VAE). */
export const AUTOENCODER_KL_WAN_DEFAULTS = {
  base_dim: 96,
  decoder_base_dim: null as number | null,
  z_dim: 16,
  dim_mult: [1, 2, 4, 4] as number[],
  num_res_blocks: 2,
  attn_scales: [] as number[],
  temperal_downsample: [false, true, true] as boolean[],
  dropout: 0.0,
  latents_mean: [
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
  ] as number[],
  latents_std: [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.916] as number[],
  is_residual: false,
  in_channels: 3,
  out_channels: 3,
  patch_size: null as number | null,
  scale_factor_temporal: 4 as number | null,
  scale_factor_spatial: 8 as number | null,
};

export type AutoencoderKLWanConfig = typeof AUTOENCODER_KL_WAN_DEFAULTS & { ignoredKeys: string[] };

/** diffusers' AutoencoderKLQwenImage config defaults: the Wan 2.1 values under its own, fewer keys. */
export const AUTOENCODER_KL_QWENIMAGE_DEFAULTS = {
  base_dim: AUTOENCODER_KL_WAN_DEFAULTS.base_dim,
  z_dim: AUTOENCODER_KL_WAN_DEFAULTS.z_dim,
  dim_mult: AUTOENCODER_KL_WAN_DEFAULTS.dim_mult,
  num_res_blocks: AUTOENCODER_KL_WAN_DEFAULTS.num_res_blocks,
  attn_scales: AUTOENCODER_KL_WAN_DEFAULTS.attn_scales,
  temperal_downsample: AUTOENCODER_KL_WAN_DEFAULTS.temperal_downsample,
  dropout: AUTOENCODER_KL_WAN_DEFAULTS.dropout,
  input_channels: 3,
  latents_mean: AUTOENCODER_KL_WAN_DEFAULTS.latents_mean,
  latents_std: AUTOENCODER_KL_WAN_DEFAULTS.latents_std,
};

/** The VAE classes whose folders load as a Wan-layout decoder. */
export const WAN_LAYOUT_VAE_CLASSES = ['AutoencoderKLWan', 'AutoencoderKLQwenImage'] as const;

/**
 * The config of a Wan-layout VAE folder as an AutoencoderKLWan config: AutoencoderKLQwenImage's
 * `input_channels` becomes in_channels and out_channels, and it declares no scale factors (the
 * layers give them). Throws when the folder holds another class or a variant the decoder lacks.
 */
export function readWanLayoutVaeConfig(folder: WeightFolder): AutoencoderKLWanConfig {
  const where = `${folder.dir}/config.json`;
  const config = wanLayoutConfig(folder);
  if (config.is_residual || config.patch_size !== null) {
    throw new ConfigError(`${where}: the residual, patchified VAE of Wan 2.2 TI2V (is_residual, patch_size) is not supported, only the Wan 2.1 VAE`);
  }
  if (config.temperal_downsample.length !== config.dim_mult.length - 1) {
    throw new ConfigError(
      `${where}: ${config.temperal_downsample.length} temperal_downsample entries for ${config.dim_mult.length} dim_mult levels (need one fewer)`,
    );
  }
  for (const key of ['latents_mean', 'latents_std'] as const) {
    if (config[key].length !== config.z_dim) throw new ConfigError(`${where}: ${key} has ${config[key].length} values for z_dim ${config.z_dim}`);
  }
  return config;
}

function wanLayoutConfig(folder: WeightFolder): AutoencoderKLWanConfig {
  if (folder.config._class_name !== 'AutoencoderKLQwenImage') return folder.typedConfig(WAN_LAYOUT_VAE_CLASSES, AUTOENCODER_KL_WAN_DEFAULTS);
  const { input_channels, ...shared } = folder.typedConfig(['AutoencoderKLQwenImage'], AUTOENCODER_KL_QWENIMAGE_DEFAULTS);
  return {
    ...AUTOENCODER_KL_WAN_DEFAULTS,
    ...shared,
    in_channels: input_channels,
    out_channels: input_channels,
    scale_factor_spatial: null,
    scale_factor_temporal: null,
  };
}
