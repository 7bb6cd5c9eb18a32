// The layers of HunyuanVideo's causal video decoder (diffusers' autoencoder_kl_hunyuan_video.py):
// 3-D convolutions padded by repeating edge values, frames only from the past (two before, none
// after); residual blocks; the upsampler that doubles the first frame in space only and the rest
// in space and time; and the mid block's attention, where a token sees its frame and earlier ones.
import { add, attention, concat, silu, tidy, upsampleNearest2d, type Tensor } from '@ditcache/cuda-runtime';
import { Conv3d, GroupNorm, Linear, type WeightReader } from '@ditcache/diffusion';

/** Epsilon of every group norm of the decoder. */
const NORM_EPS = 1e-6;

/** `x` with `before` / `after` copies of its first / last slice along `dim` (F.pad's replicate mode). */
function replicatePad(x: Tensor, dim: number, before: number, after: number): Tensor {
  if (before === 0 && after === 0) return x;
  const edge = (at: number, count: number): Tensor => {
    const shape = [...x.shape];
    shape[dim] = count;
    return x.narrow(dim, at, 1).expand(shape);
  };
  const parts = [...(before ? [edge(0, before)] : []), x, ...(after ? [edge(x.shape[dim] - 1, after)] : [])];
  return concat(parts, dim);
}

/** diffusers' HunyuanVideoCausalConv3d (stride 1): replicate-padded k // 2 around in space, k - 1 frames before. */
export class CausalConv3d {
  constructor(readonly conv: Conv3d) {}

  static load(w: WeightReader, inChannels: number, outChannels: number, kernel: number): CausalConv3d {
    return new CausalConv3d(Conv3d.load(w.at('conv'), inChannels, outChannels, { kernel }));
  }

  forward(x: Tensor): Tensor {
    const [kt, kh, kw] = this.conv.kernel;
    return tidy(() => {
      const padded = replicatePad(replicatePad(replicatePad(x, 4, kw >> 1, kw >> 1), 3, kh >> 1, kh >> 1), 2, kt - 1, 0);
      return this.conv.forward(padded);
    });
  }
}

/** diffusers' HunyuanVideoResnetBlockCausal3D. */
export class ResnetBlock {
  constructor(
    readonly norm1: GroupNorm,
    readonly conv1: CausalConv3d,
    readonly norm2: GroupNorm,
    readonly conv2: CausalConv3d,
    readonly convShortcut: CausalConv3d | null,
  ) {}

  static load(w: WeightReader, inChannels: number, outChannels: number, groups: number): ResnetBlock {
    return new ResnetBlock(
      GroupNorm.load(w.at('norm1'), groups, inChannels, NORM_EPS),
      CausalConv3d.load(w.at('conv1'), inChannels, outChannels, 3),
      GroupNorm.load(w.at('norm2'), groups, outChannels, NORM_EPS),
      CausalConv3d.load(w.at('conv2'), outChannels, outChannels, 3),
      inChannels === outChannels ? null : CausalConv3d.load(w.at('conv_shortcut'), inChannels, outChannels, 1),
    );
  }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const h = this.conv2.forward(silu(this.norm2.forward(this.conv1.forward(silu(this.norm1.forward(x))))));
      return add(h, this.convShortcut ? this.convShortcut.forward(x) : x);
    });
  }
}

/** Nearest-neighbour upsampling of (B, C, F, H, W) by `spatial` along H and W and `temporal` along F. */
function upsampleNearest(x: Tensor, temporal: number, spatial: number): Tensor {
  const [b, c, f, h, w] = x.shape;
  let out = x;
  if (spatial !== 1) out = upsampleNearest2d(out.contiguous().reshape(b, c * f, h, w), { scale: spatial }).reshape(b, c, f, h * spatial, w * spatial);
  if (temporal !== 1) {
    const [, , , hh, ww] = out.shape;
    out = out
      .unsqueeze(3)
      .expand(b, c, f, temporal, hh, ww)
      .contiguous()
      .reshape(b, c, f * temporal, hh, ww);
  }
  return out;
}

/** diffusers' HunyuanVideoUpsampleCausal3D: the first frame upsampled in space only, the others in time too, then a causal conv. */
export class CausalUpsampler {
  constructor(
    readonly conv: CausalConv3d,
    /** Along frames: 1 or 2. */
    readonly temporal: number,
    /** Along height and width: 1 or 2. */
    readonly spatial: number,
  ) {}

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const frames = x.shape[2];
      const first = upsampleNearest(x.narrow(2, 0, 1), 1, this.spatial);
      const up = frames > 1 ? concat([first, upsampleNearest(x.narrow(2, 1, frames - 1), this.temporal, this.spatial)], 2) : first;
      return this.conv.forward(up);
    });
  }
}

/**
 * The mid block's attention (diffusers' Attention with one head over all channels, a group norm
 * before it, a residual connection): over every (frame, row, column) token, each seeing the tokens
 * of its own frame and of earlier ones.
 */
export class CausalFrameAttention {
  constructor(
    readonly groupNorm: GroupNorm,
    readonly q: Linear,
    readonly k: Linear,
    readonly v: Linear,
    readonly toOut: Linear,
  ) {}

  static load(w: WeightReader, channels: number, groups: number): CausalFrameAttention {
    return new CausalFrameAttention(
      GroupNorm.load(w.at('group_norm'), groups, channels, NORM_EPS),
      Linear.load(w.at('to_q'), channels, channels),
      Linear.load(w.at('to_k'), channels, channels),
      Linear.load(w.at('to_v'), channels, channels),
      Linear.load(w.at('to_out.0'), channels, channels),
    );
  }

  /** (B, C, F, H, W) -> the same. */
  forward(x: Tensor): Tensor {
    const [b, c, f, h, w] = x.shape;
    const perFrame = h * w;
    const n = f * perFrame;
    return tidy(() => {
      // (B, C, F, H, W) -> (B, F H W, C) tokens, as diffusers permutes them.
      const tokens = x.permute(0, 2, 3, 4, 1).contiguous().reshape(b, n, c);
      const normed = this.groupNorm.forward(tokens.transpose(1, 2).contiguous()).transpose(1, 2);
      const heads = (t: Tensor): Tensor => t.reshape(b, 1, -1, c);
      const [q, k, v] = [this.q, this.k, this.v].map((proj) => heads(proj.forward(normed)));
      // diffusers masks an (N, N) score matrix; the queries of frame i attending to frames 0..i
      // alone compute the same without it (at 720p it would not fit in memory).
      const frames = Array.from({ length: f }, (_, i) =>
        attention(q.narrow(2, i * perFrame, perFrame), k.narrow(2, 0, (i + 1) * perFrame), v.narrow(2, 0, (i + 1) * perFrame)),
      );
      const out = concat(frames, 2);
      const y = add(this.toOut.forward(out.reshape(b, n, c)), tokens);
      return y.reshape(b, f, h, w, c).permute(0, 4, 1, 2, 3).contiguous();
    });
  }
}
