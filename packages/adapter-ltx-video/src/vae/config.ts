// The config of a diffusers AutoencoderKLLTXVideo folder, typed and checked for the decoder.
import type { WeightFolder } from '@ditcache/cuda-runtime';
import { ConfigError } from '@ditcache/diffusion';

/** diffusers' AutoencoderKLLTXVideo defaults (the LTX-Video 0.9.0 VAE). */
export const AUTOENCODER_KL_LTX_VIDEO_DEFAULTS = {
  in_channels: 3,
  out_channels: 3,
  latent_channels: 128,
  block_out_channels: [128, 256, 512, 512] as number[],
  decoder_block_out_channels: [128, 256, 512, 512] as number[],
  layers_per_block: [4, 3, 3, 3, 4] as number[],
  decoder_layers_per_block: [4, 3, 3, 3, 4] as number[],
  spatio_temporal_scaling: [true, true, true, false] as boolean[],
  decoder_spatio_temporal_scaling: [true, true, true, false] as boolean[],
  decoder_inject_noise: [false, false, false, false, false] as boolean[],
  upsample_residual: [false, false, false, false] as boolean[],
  upsample_factor: [1, 1, 1, 1] as number[],
  timestep_conditioning: false,
  patch_size: 4,
  patch_size_t: 1,
  resnet_norm_eps: 1e-6,
  scaling_factor: 1.0,
  decoder_causal: false,
  spatial_compression_ratio: null as number | null,
  temporal_compression_ratio: null as number | null,
};

export type AutoencoderKLLtxVideoConfig = typeof AUTOENCODER_KL_LTX_VIDEO_DEFAULTS & { ignoredKeys: string[] };

/** The checked config of an open LTX-Video `vae/` folder. */
export function readLtxVaeConfig(folder: WeightFolder): AutoencoderKLLtxVideoConfig {
  const cfg = folder.typedConfig(['AutoencoderKLLTXVideo'], AUTOENCODER_KL_LTX_VIDEO_DEFAULTS);
  const where = `${folder.dir}/config.json`;
  const blocks = cfg.decoder_block_out_channels.length;
  const lengths: [string, number, number][] = [
    ['decoder_layers_per_block', cfg.decoder_layers_per_block.length, blocks + 1],
    ['decoder_spatio_temporal_scaling', cfg.decoder_spatio_temporal_scaling.length, blocks],
    ['decoder_inject_noise', cfg.decoder_inject_noise.length, blocks + 1],
    ['upsample_residual', cfg.upsample_residual.length, blocks],
    ['upsample_factor', cfg.upsample_factor.length, blocks],
  ];
  for (const [key, got, want] of lengths) {
    if (got !== want) throw new ConfigError(`${where}: ${key} must have ${want} entries (decoder_block_out_channels has ${blocks}), got ${got}`);
  }
  // Noise injection draws from the torch generator inside every resnet; not ported.
  if (cfg.decoder_inject_noise.some(Boolean))
    throw new ConfigError(`${where}: decoder_inject_noise (noise drawn inside the decoder's resnets) is not supported`);
  return cfg;
}

/** Pixels per latent along height and width: patch_size x 2 per spatio-temporal scaling, unless declared. */
export function spatialCompressionRatio(cfg: AutoencoderKLLtxVideoConfig): number {
  return cfg.spatial_compression_ratio ?? cfg.patch_size * 2 ** cfg.spatio_temporal_scaling.filter(Boolean).length;
}

/** Frames per latent frame (after the first): patch_size_t x 2 per spatio-temporal scaling, unless declared. */
export function temporalCompressionRatio(cfg: AutoencoderKLLtxVideoConfig): number {
  return cfg.temporal_compression_ratio ?? cfg.patch_size_t * 2 ** cfg.spatio_temporal_scaling.filter(Boolean).length;
}
