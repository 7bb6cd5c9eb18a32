// The layers of diffusers' LTX-Video VAE decoder (autoencoder_kl_ltx.py): the causal 3-D
// convolution (frames padded by repeating the first and, when not causal, the last frame; rows
// and columns zero-padded), the resnet block with weightless channel RMS norms (and, in 0.9.5+,
// a per-block timestep modulation), the depth-to-space upsampler (with an optional residual of
// the input's own depth-to-space), the timestep embedder of the conditioned decoder.
import { add, concat, layerNorm, mul, rmsNorm, silu, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { Conv3d, MlpEmbedding, sinusoidalTimestepEmbedding, type WeightReader } from '@ditcache/diffusion';

/** The eps of the resnets' and the output's RMS norms. */
const RMS_EPS = 1e-8;
/** PixArtAlphaCombinedTimestepSizeEmbeddings: Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0). */
const TIMESTEP_CHANNELS = 256;

/** A weightless RMS norm over the channels of (B, C, F, H, W). */
export function channelRmsNorm(x: Tensor): Tensor {
  return tidy(() => rmsNorm(x.permute(0, 2, 3, 4, 1), null, RMS_EPS).permute(0, 4, 1, 2, 3));
}

/** LTXVideoCausalConv3d: replicate-pads the frames (k - 1 before, or (k - 1) / 2 on each side), zero-pads rows and columns by k / 2. */
export class LtxCausalConv3d {
  constructor(
    readonly conv: Conv3d,
    readonly isCausal: boolean,
  ) {}

  static load(w: WeightReader, inChannels: number, outChannels: number, kernel: number, isCausal: boolean): LtxCausalConv3d {
    const pad = Math.floor(kernel / 2);
    return new LtxCausalConv3d(Conv3d.load(w.at('conv'), inChannels, outChannels, { kernel, padding: [0, pad, pad] }), isCausal);
  }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const k = this.conv.kernel[0];
      const frames = x.shape[2];
      const repeat = (t: Tensor, n: number): Tensor[] => Array<Tensor>(n).fill(t);
      const first = x.narrow(2, 0, 1);
      const last = x.narrow(2, frames - 1, 1);
      const parts = this.isCausal ? [...repeat(first, k - 1), x] : [...repeat(first, (k - 1) / 2), x, ...repeat(last, (k - 1) / 2)];
      return this.conv.forward(parts.length === 1 ? x : concat(parts, 2));
    });
  }
}

/** PixArtAlphaCombinedTimestepSizeEmbeddings(dim, 0): sinusoidal features of the (scaled) timestep through linear_1, silu, linear_2. */
export class LtxTimestepEmbedder {
  constructor(readonly mlp: MlpEmbedding) {}

  static load(w: WeightReader, dim: number): LtxTimestepEmbedder {
    return new LtxTimestepEmbedder(MlpEmbedding.load(w.at('timestep_embedder'), TIMESTEP_CHANNELS, dim, 'silu'));
  }

  /** (B, dim, 1, 1, 1) for B timestep values. */
  forward(timesteps: ArrayLike<number>, like: Tensor): Tensor {
    return tidy(() => {
      const features = sinusoidalTimestepEmbedding(timesteps, TIMESTEP_CHANNELS, { flipSinToCos: true, downscaleFreqShift: 0, device: like.device });
      return this.mlp.forward(features).reshape(timesteps.length, -1, 1, 1, 1);
    });
  }
}

/** x * (1 + scale) + shift, scale and shift (B, C, 1, 1, 1). */
function modulate5d(x: Tensor, scale: Tensor, shift: Tensor): Tensor {
  return tidy(() => add(mul(x, add(scale, 1)), shift));
}

/** The (B, parts, C, 1, 1, 1) modulations of an embedded timestep (B, parts * C, 1, 1, 1) plus a (parts, C) table, split into `parts` (B, C, 1, 1, 1). */
export function tableModulations(temb: Tensor, table: Tensor): Tensor[] {
  return tidy(() => {
    const [parts, channels] = table.shape;
    const batch = temb.shape[0];
    return add(temb.reshape(batch, parts, channels, 1, 1, 1), table.reshape(1, parts, channels, 1, 1, 1))
      .split(parts, 1)
      .map((t) => t.reshape(batch, channels, 1, 1, 1));
  });
}

/** LTXVideoResnetBlock3d (without noise injection). */
export class LtxResnetBlock3d {
  constructor(
    readonly conv1: LtxCausalConv3d,
    readonly conv2: LtxCausalConv3d,
    /** norm3 (affine LayerNorm over the channels) and conv_shortcut (1x1x1), when the block changes the channel count. */
    readonly shortcut: { norm: { weight: Tensor; bias: Tensor; eps: number }; conv: LtxCausalConv3d } | null,
    /** (4, in_channels): shift / scale of norm1, shift / scale of norm2 (timestep-conditioned decoders), or null. */
    readonly scaleShiftTable: Tensor | null,
  ) {}

  static load(w: WeightReader, inChannels: number, outChannels: number, eps: number, isCausal: boolean, conditioned: boolean): LtxResnetBlock3d {
    return new LtxResnetBlock3d(
      LtxCausalConv3d.load(w.at('conv1'), inChannels, outChannels, 3, isCausal),
      LtxCausalConv3d.load(w.at('conv2'), outChannels, outChannels, 3, isCausal),
      inChannels === outChannels
        ? null
        : {
            norm: { weight: w.at('norm3').tensor('weight', [inChannels]), bias: w.at('norm3').tensor('bias', [inChannels]), eps },
            conv: LtxCausalConv3d.load(w.at('conv_shortcut'), inChannels, outChannels, 1, isCausal),
          },
      conditioned ? w.tensor('scale_shift_table', [4, inChannels]) : null,
    );
  }

  /** `temb`: the block's embedded timestep (B, 4 * in_channels, 1, 1, 1) in a conditioned decoder, else null. */
  forward(inputs: Tensor, temb: Tensor | null): Tensor {
    return tidy(() => {
      let h = channelRmsNorm(inputs);
      const mods = this.scaleShiftTable && temb ? tableModulations(temb, this.scaleShiftTable) : null;
      if (mods) h = modulate5d(h, mods[1], mods[0]);
      h = this.conv1.forward(silu(h));
      h = channelRmsNorm(h);
      if (mods) h = modulate5d(h, mods[3], mods[2]);
      h = this.conv2.forward(silu(h));
      let residual = inputs;
      if (this.shortcut) {
        const { norm, conv } = this.shortcut;
        residual = conv.forward(layerNorm(inputs.permute(0, 2, 3, 4, 1), norm.weight, norm.bias, norm.eps).permute(0, 4, 1, 2, 3));
      }
      return add(h, residual);
    });
  }
}

/** (B, C * 8, F, H, W) -> (B, C, 2F, 2H, 2W): channel groups of (frame, row, column) offsets to space, as diffusers' reshape / permute. */
export function depthToSpace(x: Tensor, stride: readonly [number, number, number]): Tensor {
  return tidy(() => {
    const [batch, channels, frames, height, width] = x.shape;
    const [st, sh, sw] = stride;
    return x
      .reshape(batch, channels / (st * sh * sw), st, sh, sw, frames, height, width)
      .permute(0, 1, 5, 2, 6, 3, 7, 4)
      .contiguous()
      .reshape(batch, channels / (st * sh * sw), frames * st, height * sh, width * sw);
  });
}

/** LTXVideoUpsampler3d with stride (2, 2, 2): a convolution to 8 / upscale_factor times the channels, depth to space, the first frame dropped. */
export class LtxUpsampler3d {
  static readonly stride = [2, 2, 2] as const;

  constructor(
    readonly conv: LtxCausalConv3d,
    readonly residual: boolean,
    readonly upscaleFactor: number,
  ) {}

  static load(w: WeightReader, inChannels: number, isCausal: boolean, residual: boolean, upscaleFactor: number): LtxUpsampler3d {
    return new LtxUpsampler3d(LtxCausalConv3d.load(w.at('conv'), inChannels, (inChannels * 8) / upscaleFactor, 3, isCausal), residual, upscaleFactor);
  }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const stride = LtxUpsampler3d.stride;
      const dropFirst = (t: Tensor): Tensor => t.narrow(2, stride[0] - 1, t.shape[2] - (stride[0] - 1));
      const h = dropFirst(depthToSpace(this.conv.forward(x), stride));
      if (!this.residual) return h;
      const spread = depthToSpace(x, stride);
      const repeats = 8 / this.upscaleFactor;
      const residual = dropFirst(repeats === 1 ? spread : concat(Array<Tensor>(repeats).fill(spread), 1));
      return add(h, residual);
    });
  }
}
