// diffusers' AutoencoderKLLTXVideo, decoder side: conv_in, the mid block and the up blocks
// (resnets, depth-to-space upsamplers) from the deepest channels up, a weightless RMS norm
// (modulated by the timestep in 0.9.5+ decoders), SiLU, conv_out, and the patch
// un-shuffle from channels to pixels. Also what LTXPipeline does around vae.decode: unpacking
// the transformer's tokens and denormalising by the per-channel latent mean and std.
import { add, div, mul, silu, sub, tensor, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { loadFromFolder, type LoadOptions, type ParameterStore, type WeightReader } from '@ditcache/diffusion';

import { LtxCausalConv3d, LtxResnetBlock3d, LtxTimestepEmbedder, LtxUpsampler3d, channelRmsNorm, tableModulations } from './blocks.js';
import { readLtxVaeConfig, spatialCompressionRatio, temporalCompressionRatio, type AutoencoderKLLtxVideoConfig } from './config.js';

/** LTXVideoMidBlock3d and LTXVideoUpBlock3d: an optional channel-changing resnet, a timestep embedder, an optional upsampler, resnets. */
export class LtxDecoderBlock {
  constructor(
    readonly convIn: LtxResnetBlock3d | null,
    readonly timeEmbedder: LtxTimestepEmbedder | null,
    readonly upsampler: LtxUpsampler3d | null,
    readonly resnets: LtxResnetBlock3d[],
  ) {}

  /** `timestep`: the decoder's scaled timestep values (conditioned decoders), or null. */
  forward(x: Tensor, timestep: ArrayLike<number> | null): Tensor {
    return tidy(() => {
      // diffusers hands conv_in the raw timestep; only configs where conv_in is absent or unconditioned run.
      let h = this.convIn ? this.convIn.forward(x, null) : x;
      const temb = this.timeEmbedder && timestep ? this.timeEmbedder.forward(timestep, h) : null;
      if (this.upsampler) h = this.upsampler.forward(h);
      for (const resnet of this.resnets) h = resnet.forward(h, temb);
      return h;
    });
  }
}

export class AutoencoderKLLtxVideoDecoder implements Disposable {
  readonly config: AutoencoderKLLtxVideoConfig;
  readonly convIn: LtxCausalConv3d;
  readonly midBlock: LtxDecoderBlock;
  readonly upBlocks: LtxDecoderBlock[];
  readonly convOut: LtxCausalConv3d;
  /** Conditioned decoders: the timestep multiplier (diffusers' timestep_scale_multiplier), the output norm's embedder and (2, C) table. */
  readonly conditioning: { multiplier: number; timeEmbedder: LtxTimestepEmbedder; scaleShiftTable: Tensor } | null;
  /** (latent_channels,): the per-channel statistics LTXPipeline denormalises with. */
  readonly latentsMean: Tensor;
  readonly latentsStd: Tensor;
  private readonly params: ParameterStore;

  private constructor(config: AutoencoderKLLtxVideoConfig, w: WeightReader, params: ParameterStore) {
    this.config = config;
    this.params = params;
    const c = config;
    const d = w.at('decoder');
    const causal = c.decoder_causal;
    const conditioned = c.timestep_conditioning;
    const eps = c.resnet_norm_eps;
    const channels = [...c.decoder_block_out_channels].reverse();
    const scaling = [...c.decoder_spatio_temporal_scaling].reverse();
    const layers = [...c.decoder_layers_per_block].reverse();
    const residual = [...c.upsample_residual].reverse();
    const factor = [...c.upsample_factor].reverse();
    let output = channels[0];
    this.convIn = LtxCausalConv3d.load(d.at('conv_in'), c.latent_channels, output, 3, causal);
    const resnets = (r: WeightReader, n: number, ch: number): LtxResnetBlock3d[] =>
      Array.from({ length: n }, (_, i) => LtxResnetBlock3d.load(r.at('resnets').at(i), ch, ch, eps, causal, conditioned));
    const mid = d.at('mid_block');
    this.midBlock = new LtxDecoderBlock(
      null,
      conditioned ? LtxTimestepEmbedder.load(mid.at('time_embedder'), output * 4) : null,
      null,
      resnets(mid, layers[0], output),
    );
    this.upBlocks = channels.map((ch, i) => {
      const input = output / factor[i];
      output = ch / factor[i];
      const up = d.at('up_blocks').at(i);
      return new LtxDecoderBlock(
        input === output ? null : LtxResnetBlock3d.load(up.at('conv_in'), input, output, eps, causal, conditioned),
        conditioned ? LtxTimestepEmbedder.load(up.at('time_embedder'), input * 4) : null,
        scaling[i] ? LtxUpsampler3d.load(up.at('upsamplers').at(0), output * factor[i], causal, residual[i], factor[i]) : null,
        resnets(up, layers[i + 1], output),
      );
    });
    this.convOut = LtxCausalConv3d.load(d.at('conv_out'), output, c.out_channels * c.patch_size ** 2 * c.patch_size_t, 3, causal);
    this.conditioning = conditioned
      ? {
          multiplier: d.float32().tensor('timestep_scale_multiplier', []).item(),
          timeEmbedder: LtxTimestepEmbedder.load(d.at('time_embedder'), output * 2),
          scaleShiftTable: d.tensor('scale_shift_table', [2, output]),
        }
      : null;
    this.latentsMean = w.tensor('latents_mean', [c.latent_channels]);
    this.latentsStd = w.tensor('latents_std', [c.latent_channels]);
  }

  /** Loads the decoder of a diffusers AutoencoderKLLTXVideo `vae/` folder (float32). */
  static load(dir: string, opts: LoadOptions = {}): AutoencoderKLLtxVideoDecoder {
    return loadFromFolder(dir, { ...opts, dtype: 'float32' }, (folder, w, params) => new AutoencoderKLLtxVideoDecoder(readLtxVaeConfig(folder), w, params));
  }

  get spatialCompressionRatio(): number {
    return spatialCompressionRatio(this.config);
  }
  get temporalCompressionRatio(): number {
    return temporalCompressionRatio(this.config);
  }

  /** latents * std / scaling_factor + mean, per channel of (B, C, F, H, W), in diffusers' order. */
  denormalize(latents: Tensor): Tensor {
    return tidy(() => {
      const view = (t: Tensor): Tensor => t.reshape(1, -1, 1, 1, 1);
      return add(div(mul(latents, view(this.latentsStd)), this.config.scaling_factor), view(this.latentsMean));
    });
  }

  /**
   * vae.decode(z, temb): latents (B, latent_channels, F, H, W) -> (B, out_channels, 1 + (F - 1)
   * x temporal ratio, H x spatial ratio, W x spatial ratio). `timestep` (one value per video) is
   * required by a timestep-conditioned decoder and refused by others.
   */
  decode(z: Tensor, timestep: ArrayLike<number> | null = null): Tensor {
    const c = this.config;
    if (z.rank !== 5 || z.shape[1] !== c.latent_channels)
      throw new TypeError(`AutoencoderKLLtxVideoDecoder.decode: z must be (B, ${c.latent_channels}, F, H, W), got (${z.shape.join(', ')})`);
    if (this.conditioning && (!timestep || timestep.length !== z.shape[0])) {
      throw new TypeError(`AutoencoderKLLtxVideoDecoder.decode: this decoder is timestep-conditioned: give one timestep per video (${z.shape[0]})`);
    }
    if (!this.conditioning && timestep) throw new TypeError('AutoencoderKLLtxVideoDecoder.decode: a timestep given to a decoder without timestep_conditioning');
    return tidy(() => {
      const scaled = this.conditioning
        ? Array.from(timestep as ArrayLike<number>, (t) => Math.fround(Math.fround(t) * Math.fround(this.conditioning?.multiplier ?? 1)))
        : null;
      let h = this.convIn.forward(z.cast('float32'));
      h = this.midBlock.forward(h, scaled);
      for (const block of this.upBlocks) h = block.forward(h, scaled);
      h = channelRmsNorm(h);
      if (this.conditioning && scaled) {
        const [shift, scale] = tableModulations(this.conditioning.timeEmbedder.forward(scaled, h), this.conditioning.scaleShiftTable);
        h = add(mul(h, add(scale, 1)), shift);
      }
      return this.unpatchify(this.convOut.forward(silu(h)));
    });
  }

  /** (B, C * p_t * p * p, F, H, W) -> (B, C, F * p_t, H * p, W * p): diffusers' reshape / permute (the second patch axis runs along rows). */
  unpatchify(x: Tensor): Tensor {
    const p = this.config.patch_size;
    const pt = this.config.patch_size_t;
    const [batch, , frames, height, width] = x.shape;
    return tidy(() =>
      x
        .reshape(batch, -1, pt, p, p, frames, height, width)
        .permute(0, 1, 5, 2, 6, 4, 7, 3)
        .contiguous()
        .reshape(batch, -1, frames * pt, height * p, width * p),
    );
  }

  /** Frees the weights. */
  dispose(): void {
    this.params.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** LTXPipeline's decode noise: (1 - scale) * latents + scale * noise, one scale per video, in float32 as diffusers computes it. */
export function blendDecodeNoise(latents: Tensor, noise: Tensor, scales: readonly number[]): Tensor {
  return tidy(() => {
    const s = tensor(Float32Array.from(scales), [scales.length, 1, 1, 1, 1], { device: latents.device });
    return add(mul(sub(1, s), latents), mul(s, noise));
  });
}
