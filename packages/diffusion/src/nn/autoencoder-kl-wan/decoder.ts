// The decoding half of diffusers' AutoencoderKLWan (the Wan 2.1 VAE, which Wan 2.2 A14B shares)
// and of AutoencoderKLQwenImage (the same layers under a smaller config): latents (B, z_dim, T,
// h, w) to video (B, 3, 1 + 4 (T - 1), 8 h, 8 w) in [-1, 1], decoded one latent frame at a time
// with causal convolutions that carry their past frames between chunks, as diffusers' decode does.
import { add, clamp, concat, div, silu, tensor, tidy, type Tensor } from '@ditcache/cuda-runtime';

import { ConfigError } from '../../io/config-file.js';
import { loadFromFolder, type LoadOptions, type ParameterStore, type WeightReader } from '../../io/weights.js';
import { WanAttentionBlock, WanResidualBlock, WanRMSNorm, WanUpsampler } from './blocks.js';
import { CausalConv3d, TemporalCache } from './causal-conv.js';
import { readWanLayoutVaeConfig, type AutoencoderKLWanConfig } from './config.js';

/** Residual block, attention, residual block at the lowest resolution. */
class WanMidBlock {
  constructor(
    readonly resnets: readonly [WanResidualBlock, WanResidualBlock],
    readonly attention: WanAttentionBlock,
  ) {}

  forward(x: Tensor, cache: TemporalCache): Tensor {
    return tidy(() => this.resnets[1].forward(this.attention.forward(this.resnets[0].forward(x, cache)), cache));
  }
}

/** num_res_blocks + 1 residual blocks, then (except in the last block) an upsampler. */
class WanUpBlock {
  constructor(
    readonly resnets: readonly WanResidualBlock[],
    readonly upsampler: WanUpsampler | null,
  ) {}

  forward(x: Tensor, cache: TemporalCache): Tensor {
    return tidy(() => {
      let h = x;
      for (const resnet of this.resnets) h = resnet.forward(h, cache);
      return this.upsampler ? this.upsampler.forward(h, cache) : h;
    });
  }
}

export class AutoencoderKLWanDecoder implements Disposable {
  readonly config: AutoencoderKLWanConfig;
  /** Pixels per latent pixel along height and width. */
  readonly scaleFactorSpatial: number;
  /** Frames per latent frame (after the first, which decodes to one frame). */
  readonly scaleFactorTemporal: number;
  private readonly postQuantConv: CausalConv3d;
  private readonly convIn: CausalConv3d;
  private readonly midBlock: WanMidBlock;
  private readonly upBlocks: readonly WanUpBlock[];
  private readonly normOut: WanRMSNorm;
  private readonly convOut: CausalConv3d;
  private readonly params: ParameterStore;

  private constructor(config: AutoencoderKLWanConfig, w: WeightReader, params: ParameterStore) {
    this.config = config;
    this.params = params;
    const base = config.decoder_base_dim ?? config.base_dim;
    const mult = config.dim_mult;
    const dims = [mult[mult.length - 1], ...[...mult].reverse()].map((m) => base * m);
    const temporalUp = [...config.temperal_downsample].reverse();
    this.scaleFactorSpatial = 2 ** (mult.length - 1);
    this.scaleFactorTemporal = 2 ** config.temperal_downsample.filter(Boolean).length;
    this.postQuantConv = CausalConv3d.load(w.at('post_quant_conv'), config.z_dim, config.z_dim, 1);
    const d = w.at('decoder');
    this.convIn = CausalConv3d.load(d.at('conv_in'), config.z_dim, dims[0], 3, 1);
    const mid = d.at('mid_block');
    this.midBlock = new WanMidBlock(
      [WanResidualBlock.load(mid.at('resnets').at(0), dims[0], dims[0]), WanResidualBlock.load(mid.at('resnets').at(1), dims[0], dims[0])],
      WanAttentionBlock.load(mid.at('attentions').at(0), dims[0]),
    );
    this.upBlocks = mult.map((_, i) => {
      const block = d.at('up_blocks').at(i);
      // Every upsampler halves the channels, so the blocks after the first take half as many.
      const inDim = i === 0 ? dims[0] : Math.floor(dims[i] / 2);
      const outDim = dims[i + 1];
      const resnets = Array.from({ length: config.num_res_blocks + 1 }, (_, j) =>
        WanResidualBlock.load(block.at('resnets').at(j), j === 0 ? inDim : outDim, outDim),
      );
      const last = i === mult.length - 1;
      return new WanUpBlock(resnets, last ? null : WanUpsampler.load(block.at('upsamplers').at(0), outDim, temporalUp[i]));
    });
    this.normOut = WanRMSNorm.load(d.at('norm_out'), dims[dims.length - 1], true);
    this.convOut = CausalConv3d.load(d.at('conv_out'), dims[dims.length - 1], config.out_channels, 3, 1);
  }

  /** Loads the decoder (and post_quant_conv) of a diffusers `vae/` folder (AutoencoderKLWan or AutoencoderKLQwenImage). */
  static load(dir: string, opts: LoadOptions = {}): AutoencoderKLWanDecoder {
    return loadFromFolder(dir, opts, (folder, w, params) => {
      const config = readWanLayoutVaeConfig(folder);
      const where = `${dir}/config.json`;
      const decoder = new AutoencoderKLWanDecoder(config, w, params);
      const declared = [config.scale_factor_spatial, config.scale_factor_temporal];
      const actual = [decoder.scaleFactorSpatial, decoder.scaleFactorTemporal];
      if (declared.some((v, i) => v !== null && v !== actual[i])) {
        throw new ConfigError(
          `${where}: scale_factor_spatial / scale_factor_temporal ${declared.join(' / ')} do not match the layers, which scale by ${actual.join(' / ')}`,
        );
      }
      return decoder;
    });
  }

  /**
   * latents / (1 / latents_std) + latents_mean per channel: the Wan and Qwen-Image pipelines' step
   * from the transformer's latents to the decoder's, in the latents' dtype (diffusers rounds the
   * float32 1 / latents_std and latents_mean to it).
   */
  denormalize(latents: Tensor): Tensor {
    const z = this.config.z_dim;
    this.checkLatents('denormalize', latents);
    // float32 values first (torch.tensor of a list), rounded once more to a 16-bit dtype.
    const perChannel = (values: readonly number[]): Tensor =>
      tensor(Float32Array.from(values), [1, z, 1, 1, 1], { device: latents.device, dtype: latents.dtype });
    const inverseStd = this.config.latents_std.map((v) => Math.fround(1 / Math.fround(v)));
    return tidy(() => add(div(latents, perChannel(inverseStd)), perChannel(this.config.latents_mean)));
  }

  /** Latents (B, z_dim, T, h, w), already denormalized, to video (B, out_channels, 1 + 4 (T - 1), 8 h, 8 w) in [-1, 1]. */
  decode(latents: Tensor): Tensor {
    this.checkLatents('decode', latents);
    return tidy(() => {
      using cache = new TemporalCache();
      const x = this.postQuantConv.forward(latents);
      const chunks: Tensor[] = [];
      for (let i = 0; i < x.shape[2]; ++i) {
        cache.first = i === 0;
        chunks.push(this.decodeChunk(x.narrow(2, i, 1), cache));
      }
      return clamp(concat(chunks, 2), -1, 1);
    });
  }

  /** Frees the weights. */
  dispose(): void {
    this.params.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  private decodeChunk(x: Tensor, cache: TemporalCache): Tensor {
    return tidy(() => {
      let h = this.midBlock.forward(this.convIn.forward(x, cache), cache);
      for (const block of this.upBlocks) h = block.forward(h, cache);
      return this.convOut.forward(silu(this.normOut.forward(h)), cache);
    });
  }

  private checkLatents(method: string, latents: Tensor): void {
    const z = this.config.z_dim;
    if (latents.rank !== 5 || latents.shape[1] !== z) {
      throw new TypeError(`AutoencoderKLWanDecoder.${method}: expected latents (B, ${z}, frames, h, w), got (${latents.shape.join(', ')})`);
    }
  }
}
