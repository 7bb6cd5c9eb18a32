// Wan's causal 3-D convolution (diffusers' WanCausalConv3d) and the temporal cache that lets the
// VAE decoder run one latent frame at a time: a convolution pads only the past in time, and the
// input frames it saw last stand in for that padding on the next chunk, so chunked decoding gives
// what one causal pass over all frames would.
import { concat, tidy, zeros, type Tensor } from '@ditcache/cuda-runtime';
import { Conv3d, type Triple } from '../layers.js';
import type { WeightReader } from '../../io/weights.js';

/** Past input frames kept per convolution (diffusers' CACHE_T): what a 3-frame kernel needs. */
const CACHED_FRAMES = 2;

/** The state of one chunked decode: whether the first chunk is running, and each convolution's past frames. */
export class TemporalCache implements Disposable {
  /** True while the first chunk (latent frame 0) is decoded. */
  first = true;
  private readonly past = new Map<CausalConv3d, Tensor>();

  /** The input frames `conv` saw last, if any. */
  pastOf(conv: CausalConv3d): Tensor | undefined {
    return this.past.get(conv);
  }

  /** Keeps the last frames of `frames` (B, C, T, H, W) as `conv`'s past, beyond any open scope. */
  remember(conv: CausalConv3d, frames: Tensor): void {
    const count = Math.min(CACHED_FRAMES, frames.shape[2]);
    const kept = frames.narrow(2, frames.shape[2] - count, count);
    const copy = kept.clone().keep();
    kept.dispose();
    this.past.get(conv)?.dispose();
    this.past.set(conv, copy);
  }

  dispose(): void {
    for (const t of this.past.values()) t.dispose();
    this.past.clear();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** A Conv3d padded symmetrically in space and by twice its temporal padding on the past side only. */
export class CausalConv3d {
  constructor(
    readonly conv: Conv3d,
    /** Zero frames in front of the input when there is no past. */
    readonly pastFrames: number,
  ) {}

  static load(w: WeightReader, inChannels: number, outChannels: number, kernel: Triple, padding: Triple = 0): CausalConv3d {
    const [pt, ph, pw] = typeof padding === 'number' ? [padding, padding, padding] : padding;
    return new CausalConv3d(Conv3d.load(w, inChannels, outChannels, { kernel, padding: [0, ph, pw] }), 2 * pt);
  }

  /**
   * Convolves `x` (B, C, T, H, W) to T output frames. With a cache, the past frames it holds
   * replace that much zero padding, and the last input frames become the next call's past.
   */
  forward(x: Tensor, cache?: TemporalCache): Tensor {
    if (this.pastFrames === 0) return this.conv.forward(x);
    return tidy(() => {
      const past = cache?.pastOf(this);
      const seen = past ? concat([past, x], 2) : x;
      const missing = this.pastFrames - (past?.shape[2] ?? 0);
      const [batch, channels, , height, width] = x.shape;
      const padded = missing > 0 ? concat([zeros([batch, channels, missing, height, width], { device: x.device, dtype: x.dtype }), seen], 2) : seen;
      cache?.remember(this, seen);
      return this.conv.forward(padded);
    });
  }
}
