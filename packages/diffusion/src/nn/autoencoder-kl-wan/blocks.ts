// The building blocks of the Wan VAE decoder (diffusers' autoencoder_kl_wan): the channel RMS
// norm, the causal residual block, the per-frame single-head attention of the mid block, and
// the upsamplers (spatial x2 with a conv that halves the channels; the temporal one doubles the
// frames with a causal time conv first).
import { add, attention, div, maximum, mul, silu, sqrt, square, sum, tidy, upsampleNearest2d, type Tensor } from '@ditcache/cuda-runtime';
import { Conv2d } from '../layers.js';
import type { WeightReader } from '../../io/weights.js';

import { CausalConv3d, type TemporalCache } from './causal-conv.js';

/** F.normalize's floor on the norm. */
const NORMALIZE_EPS = 1e-12;

/** diffusers' WanRMS_norm: x / ||x|| over the channels (dim 1), times sqrt(channels) and a learned gain. */
export class WanRMSNorm {
  constructor(
    /** (C, 1, 1, 1) for video, (C, 1, 1) for frames: broadcasts over the positions. */
    readonly gamma: Tensor,
  ) {}

  /** `video`: a norm of (B, C, T, H, W) input; otherwise of (N, C, H, W) frames. */
  static load(w: WeightReader, channels: number, video: boolean): WanRMSNorm {
    return new WanRMSNorm(w.tensor('gamma', video ? [channels, 1, 1, 1] : [channels, 1, 1]));
  }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const norm = maximum(sqrt(sum(square(x), 1, true)), NORMALIZE_EPS);
      return mul(mul(div(x, norm), Math.sqrt(this.gamma.shape[0])), this.gamma);
    });
  }
}

/** diffusers' WanResidualBlock: (RMS norm, SiLU, causal 3x3x3 conv) twice, plus the input (through a 1x1x1 conv when widths differ). */
export class WanResidualBlock {
  constructor(
    readonly norm1: WanRMSNorm,
    readonly conv1: CausalConv3d,
    readonly norm2: WanRMSNorm,
    readonly conv2: CausalConv3d,
    readonly convShortcut: CausalConv3d | null,
  ) {}

  static load(w: WeightReader, inChannels: number, outChannels: number): WanResidualBlock {
    return new WanResidualBlock(
      WanRMSNorm.load(w.at('norm1'), inChannels, true),
      CausalConv3d.load(w.at('conv1'), inChannels, outChannels, 3, 1),
      WanRMSNorm.load(w.at('norm2'), outChannels, true),
      CausalConv3d.load(w.at('conv2'), outChannels, outChannels, 3, 1),
      inChannels === outChannels ? null : CausalConv3d.load(w.at('conv_shortcut'), inChannels, outChannels, 1),
    );
  }

  forward(x: Tensor, cache: TemporalCache): Tensor {
    return tidy(() => {
      const h = this.conv1.forward(silu(this.norm1.forward(x)), cache);
      const out = this.conv2.forward(silu(this.norm2.forward(h)), cache);
      return add(out, this.convShortcut ? this.convShortcut.forward(x) : x);
    });
  }
}

/** (B, C, T, H, W) -> (B * T, C, H, W): the frames as a batch of images. */
function framesAsImages(x: Tensor): Tensor {
  const [batch, channels, frames, height, width] = x.shape;
  return x
    .permute(0, 2, 1, 3, 4)
    .contiguous()
    .reshape(batch * frames, channels, height, width);
}

/** (B * T, C, H, W) -> (B, C, T, H, W), the inverse of framesAsImages. */
function imagesAsFrames(x: Tensor, batch: number): Tensor {
  const [images, channels, height, width] = x.shape;
  return x
    .reshape(batch, images / batch, channels, height, width)
    .permute(0, 2, 1, 3, 4)
    .contiguous();
}

/** diffusers' WanAttentionBlock: single-head self-attention over the pixels of each frame, plus the input. */
export class WanAttentionBlock {
  constructor(
    readonly norm: WanRMSNorm,
    /** 1x1 conv to queries, keys and values (3 C channels). */
    readonly toQkv: Conv2d,
    readonly proj: Conv2d,
  ) {}

  static load(w: WeightReader, channels: number): WanAttentionBlock {
    return new WanAttentionBlock(
      WanRMSNorm.load(w.at('norm'), channels, false),
      Conv2d.load(w.at('to_qkv'), channels, 3 * channels, { kernel: 1 }),
      Conv2d.load(w.at('proj'), channels, channels, { kernel: 1 }),
    );
  }

  forward(x: Tensor): Tensor {
    const [batch, channels, , height, width] = x.shape;
    return tidy(() => {
      const images = framesAsImages(x);
      const n = images.shape[0];
      // (N, 3C, H, W) -> (N, 1 head, H * W, 3C), split into q, k, v along the channels.
      const qkv = this.toQkv
        .forward(this.norm.forward(images))
        .reshape(n, 1, 3 * channels, height * width)
        .transpose(2, 3)
        .contiguous();
      const [q, k, v] = qkv.split(3, 3);
      const attended = attention(q, k, v).squeeze(1).transpose(1, 2).contiguous().reshape(n, channels, height, width);
      return add(imagesAsFrames(this.proj.forward(attended), batch), x);
    });
  }
}

/**
 * diffusers' WanResample in its decoder modes: 'upsample2d' doubles height and width
 * (nearest, then a 3x3 conv to half the channels); 'upsample3d' first doubles the frames with a
 * causal time conv to twice the channels, each frame's two halves becoming two frames. The first
 * chunk's single frame is not doubled, so T latent frames decode to 1 + 4 (T - 1).
 */
export class WanUpsampler {
  constructor(
    readonly conv: Conv2d,
    readonly timeConv: CausalConv3d | null,
  ) {}

  static load(w: WeightReader, channels: number, temporal: boolean): WanUpsampler {
    return new WanUpsampler(
      Conv2d.load(w.at('resample.1'), channels, Math.floor(channels / 2), { kernel: 3, padding: 1 }),
      temporal ? CausalConv3d.load(w.at('time_conv'), channels, 2 * channels, [3, 1, 1], [1, 0, 0]) : null,
    );
  }

  forward(x: Tensor, cache: TemporalCache): Tensor {
    return tidy(() => {
      let h = x;
      if (this.timeConv && !cache.first) {
        const [batch, channels, frames, height, width] = x.shape;
        h = this.timeConv
          .forward(x, cache)
          .reshape(batch, 2, channels, frames, height, width)
          .permute(0, 2, 3, 1, 4, 5)
          .contiguous()
          .reshape(batch, channels, 2 * frames, height, width);
      }
      const upsampled = upsampleNearest2d(framesAsImages(h), { scale: 2 });
      return imagesAsFrames(this.conv.forward(upsampled), x.shape[0]);
    });
  }
}
