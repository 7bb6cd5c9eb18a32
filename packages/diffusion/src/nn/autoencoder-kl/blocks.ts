// The building blocks of diffusers' AutoencoderKL decoder: ResnetBlock2D, the single-head
// spatial self-attention of the mid block, and Upsample2D (nearest x2, then a 3x3 conv).
import { add, attention, silu, tidy, upsampleNearest2d, type Tensor } from '@ditcache/cuda-runtime';

import { Conv2d, GroupNorm, Linear } from '../layers.js';
import type { WeightReader } from '../../io/weights.js';

/** Norm epsilon of every AutoencoderKL block. */
const EPS = 1e-6;

/** GroupNorm -> SiLU -> 3x3 conv, twice, plus the input (through a 1x1 conv when widths differ). */
export class ResnetBlock2D {
  constructor(
    readonly norm1: GroupNorm,
    readonly conv1: Conv2d,
    readonly norm2: GroupNorm,
    readonly conv2: Conv2d,
    readonly convShortcut: Conv2d | null,
  ) {}

  static load(w: WeightReader, inChannels: number, outChannels: number, groups: number): ResnetBlock2D {
    return new ResnetBlock2D(
      GroupNorm.load(w.at('norm1'), groups, inChannels, EPS),
      Conv2d.load(w.at('conv1'), inChannels, outChannels, { kernel: 3, padding: 1 }),
      GroupNorm.load(w.at('norm2'), groups, outChannels, EPS),
      Conv2d.load(w.at('conv2'), outChannels, outChannels, { kernel: 3, padding: 1 }),
      inChannels === outChannels ? null : Conv2d.load(w.at('conv_shortcut'), inChannels, outChannels, { kernel: 1 }),
    );
  }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const h = this.conv1.forward(silu(this.norm1.forward(x)));
      const out = this.conv2.forward(silu(this.norm2.forward(h)));
      return add(this.convShortcut ? this.convShortcut.forward(x) : x, out);
    });
  }
}

/** Self-attention over the pixels of a (B, C, H, W) map with one head of width C, plus the input. */
export class SpatialSelfAttention {
  constructor(
    readonly groupNorm: GroupNorm,
    readonly toQ: Linear,
    readonly toK: Linear,
    readonly toV: Linear,
    readonly toOut: Linear,
  ) {}

  static load(w: WeightReader, channels: number, groups: number): SpatialSelfAttention {
    const proj = (name: string): Linear => Linear.load(w.at(name), channels, channels);
    return new SpatialSelfAttention(GroupNorm.load(w.at('group_norm'), groups, channels, EPS), proj('to_q'), proj('to_k'), proj('to_v'), proj('to_out.0'));
  }

  forward(x: Tensor): Tensor {
    const [batch, channels, height, width] = x.shape;
    return tidy(() => {
      // (B, C, H, W) -> (B, H*W, C) tokens -> (B, 1 head, H*W, C).
      const tokens = this.groupNorm
        .forward(x)
        .reshape(batch, channels, height * width)
        .transpose(1, 2);
      const heads = (t: Tensor): Tensor => t.unsqueeze(1);
      const attended = attention(heads(this.toQ.forward(tokens)), heads(this.toK.forward(tokens)), heads(this.toV.forward(tokens)));
      const out = this.toOut.forward(attended.squeeze(1));
      return add(out.transpose(1, 2).reshape(batch, channels, height, width), x);
    });
  }
}

/** Nearest-neighbour x2 upsampling followed by a 3x3 conv. */
export class Upsample2D {
  constructor(readonly conv: Conv2d) {}

  static load(w: WeightReader, channels: number): Upsample2D {
    return new Upsample2D(Conv2d.load(w.at('conv'), channels, channels, { kernel: 3, padding: 1 }));
  }

  forward(x: Tensor): Tensor {
    return tidy(() => this.conv.forward(upsampleNearest2d(x, { scale: 2 })));
  }
}
