// The decoding half of diffusers' AutoencoderKL (the FLUX, HiDream and SD3 VAE): latents (B,
// latent channels, h, w) to images (B, out channels, h * scale, w * scale) in about [-1, 1], and
// `denormalize`, the step every image pipeline takes from the transformer's latents to the
// decoder's (diffusers writes it in each pipeline).
import { add, div, silu, tidy, type Tensor } from '@ditcache/cuda-runtime';

import { Conv2d, GroupNorm } from '../layers.js';
import { loadFromFolder, type ComputeDtype, type LoadOptions, type ParameterStore, type WeightReader } from '../../io/weights.js';
import { ResnetBlock2D, SpatialSelfAttention, Upsample2D } from './blocks.js';

/**
 * diffusers' AutoencoderKL config defaults, less `sample_size` (read only by tiled decoding,
 * which this decoder does not do).
 */
export const AUTOENCODER_KL_DEFAULTS = {
  in_channels: 3,
  out_channels: 3,
  down_block_types: ['DownEncoderBlock2D'] as string[],
  up_block_types: ['UpDecoderBlock2D'] as string[],
  block_out_channels: [64] as number[],
  layers_per_block: 1,
  act_fn: 'silu',
  latent_channels: 4,
  norm_num_groups: 32,
  scaling_factor: 0.18215,
  shift_factor: null as number | null,
  latents_mean: null as number[] | null,
  latents_std: null as number[] | null,
  force_upcast: true,
  use_quant_conv: true,
  use_post_quant_conv: true,
  mid_block_add_attention: true,
};

export type AutoencoderKLConfig = typeof AUTOENCODER_KL_DEFAULTS & { ignoredKeys: string[] };

/** ResnetBlock2D, attention, ResnetBlock2D at the lowest resolution. */
class MidBlock {
  constructor(
    readonly resnets: readonly ResnetBlock2D[],
    readonly attention: SpatialSelfAttention | null,
  ) {}

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const h = this.resnets[0].forward(x);
      return this.resnets[1].forward(this.attention ? this.attention.forward(h) : h);
    });
  }
}

/** layers_per_block + 1 ResnetBlock2Ds, then (except in the last block) an Upsample2D. */
class UpDecoderBlock {
  constructor(
    readonly resnets: readonly ResnetBlock2D[],
    readonly upsampler: Upsample2D | null,
  ) {}

  forward(x: Tensor): Tensor {
    return tidy(() => {
      let h = x;
      for (const resnet of this.resnets) h = resnet.forward(h);
      return this.upsampler ? this.upsampler.forward(h) : h;
    });
  }
}

export class AutoencoderKLDecoder implements Disposable {
  readonly config: AutoencoderKLConfig;
  /** Pixels per latent along each side: 2^(levels - 1). */
  readonly scaleFactor: number;
  /** What the weights are held and the decoder computes in (the `dtype` it was loaded with). */
  readonly dtype: ComputeDtype;
  private readonly postQuantConv: Conv2d | null;
  private readonly convIn: Conv2d;
  private readonly midBlock: MidBlock;
  private readonly upBlocks: readonly UpDecoderBlock[];
  private readonly convNormOut: GroupNorm;
  private readonly convOut: Conv2d;
  private readonly params: ParameterStore;

  private constructor(config: AutoencoderKLConfig, w: WeightReader, params: ParameterStore) {
    this.config = config;
    this.params = params;
    this.dtype = w.dtype;
    const channels = config.block_out_channels;
    const groups = config.norm_num_groups;
    const top = channels[channels.length - 1];
    this.scaleFactor = 2 ** (channels.length - 1);
    this.postQuantConv = config.use_post_quant_conv
      ? Conv2d.load(w.at('post_quant_conv'), config.latent_channels, config.latent_channels, { kernel: 1 })
      : null;
    const d = w.at('decoder');
    this.convIn = Conv2d.load(d.at('conv_in'), config.latent_channels, top, { kernel: 3, padding: 1 });
    const mid = d.at('mid_block');
    this.midBlock = new MidBlock(
      [0, 1].map((i) => ResnetBlock2D.load(mid.at('resnets').at(i), top, top, groups)),
      config.mid_block_add_attention ? SpatialSelfAttention.load(mid.at('attentions').at(0), top, groups) : null,
    );
    const reversed = [...channels].reverse();
    this.upBlocks = reversed.map((out, i) => {
      const block = d.at('up_blocks').at(i);
      const inChannels = i === 0 ? top : reversed[i - 1];
      const resnets = Array.from({ length: config.layers_per_block + 1 }, (_, j) =>
        ResnetBlock2D.load(block.at('resnets').at(j), j === 0 ? inChannels : out, out, groups),
      );
      const last = i === reversed.length - 1;
      return new UpDecoderBlock(resnets, last ? null : Upsample2D.load(block.at('upsamplers').at(0), out));
    });
    this.convNormOut = GroupNorm.load(d.at('conv_norm_out'), groups, channels[0], 1e-6);
    this.convOut = Conv2d.load(d.at('conv_out'), channels[0], config.out_channels, { kernel: 3, padding: 1 });
  }

  /** Loads the decoder (and post_quant_conv) of a diffusers `vae/` folder; `dtype` as diffusers' torch_dtype (AutoencoderKL keeps nothing in float32). */
  static load(dir: string, opts: LoadOptions = {}): AutoencoderKLDecoder {
    return loadFromFolder(dir, opts, (folder, w, params) => {
      const config = folder.typedConfig(['AutoencoderKL'], AUTOENCODER_KL_DEFAULTS);
      const where = `${dir}/config.json`;
      const blocks = config.up_block_types.filter((t) => t !== 'UpDecoderBlock2D');
      if (blocks.length) throw new TypeError(`${where}: up block types ${blocks.join(', ')} are not supported (only UpDecoderBlock2D)`);
      if (config.up_block_types.length !== config.block_out_channels.length) {
        throw new TypeError(`${where}: ${config.up_block_types.length} up_block_types for ${config.block_out_channels.length} block_out_channels`);
      }
      if (config.act_fn !== 'silu') throw new TypeError(`${where}: act_fn '${config.act_fn}' is not supported (only silu)`);
      return new AutoencoderKLDecoder(config, w, params);
    });
  }

  /** latents / scaling_factor + shift_factor (when the config has one): the transformer's latents as the decoder takes them. */
  denormalize(latents: Tensor): Tensor {
    const { scaling_factor: scale, shift_factor: shift } = this.config;
    return tidy(() => (shift === null ? div(latents, scale) : add(div(latents, scale), shift)));
  }

  /**
   * (B, latent_channels, h, w) latents, already denormalized, to (B, out_channels, H, W) in the
   * decoder's dtype; latents of another dtype are rounded to it first (diffusers' `latents.to(vae.dtype)`).
   */
  decode(latents: Tensor): Tensor {
    const c = this.config.latent_channels;
    if (latents.rank !== 4 || latents.shape[1] !== c) {
      throw new TypeError(`AutoencoderKLDecoder.decode: expected latents (B, ${c}, h, w), got (${latents.shape.join(', ')})`);
    }
    return tidy(() => {
      const x = latents.dtype === this.dtype ? latents : latents.cast(this.dtype);
      let h = this.convIn.forward(this.postQuantConv ? this.postQuantConv.forward(x) : x);
      h = this.midBlock.forward(h);
      for (const block of this.upBlocks) h = block.forward(h);
      return this.convOut.forward(silu(this.convNormOut.forward(h)));
    });
  }

  /** Frees the weights. */
  dispose(): void {
    this.params.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}
