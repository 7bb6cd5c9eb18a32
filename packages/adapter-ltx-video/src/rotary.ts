// LTX-Video's rotary position embedding (diffusers' LTXVideoRotaryPosEmbed): every token of the
// (frame, row, column) latent grid gets three coordinates, each scaled by the
// rope_interpolation_scale (for frames: the VAE's temporal compression over the frame rate) and
// the patch size, divided by a base length and mapped to [-1, 1]. Each of dim / 6 frequencies
// rotates one channel pair per axis, over the whole model width (not per head); the first
// dim % 6 channels are left as they are. The frequencies reach theta * pi / 2 radians, so a
// one-ulp difference in an angle moves its cosine by far more than float32 parity allows:
// every step is computed in float32 in diffusers' order (torch's linspace, then its pow, then
// the products), and only cos / sin come from float64. torch's CPU pow is not correctly rounded
// on its vectorised path, so for LTX-Video's own widths the powers are torch's recorded values
// (torch-powers.ts); other widths take the correctly rounded power, within an ulp of torch's.
import { tensor, type Device, type Tensor } from '@ditcache/cuda-runtime';

import { TORCH_POWERS_OF_10000 } from './torch-powers.js';

/** cos and sin, each (1, tokens, dim): they broadcast over the batch. */
export interface RotaryEmbedding {
  cos: Tensor;
  sin: Tensor;
}

export interface LtxRotaryOptions {
  /** The transformer's spatial and temporal patch sizes (config patch_size, patch_size_t). */
  patchSize?: number;
  patchSizeT?: number;
  /** diffusers' base_num_frames, base_height, base_width, theta. */
  baseNumFrames?: number;
  baseHeight?: number;
  baseWidth?: number;
  theta?: number;
  device?: Device;
}

const f32 = Math.fround;

/**
 * torch.linspace(start, end, steps) in float32 on the CPU: a float32 step, the first half
 * counted up from start and the second half down from end, each position one fused multiply-add
 * (exact in float64 for these magnitudes, then rounded once).
 */
export function torchLinspaceFloat32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  if (steps === 1) out[0] = start;
  if (steps <= 1) return out;
  const [a, b] = [f32(start), f32(end)];
  const step = f32(f32(b - a) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  for (let i = 0; i < steps; ++i) out[i] = i < halfway ? f32(a + step * i) : f32(b - step * (steps - 1 - i));
  return out;
}

/**
 * The float32 frequencies (dim / 6 of them) as diffusers computes them: theta ** linspace(0, 1) *
 * pi / 2, the power as torch's CPU kernel gives it for LTX-Video's widths (recorded), else correctly rounded.
 */
export function ltxRotaryFrequencies(dim: number, theta = 10000): Float32Array {
  const exponents = torchLinspaceFloat32(0, Math.log(theta) / Math.log(theta), Math.floor(dim / 6));
  const recorded = theta === 10000 ? TORCH_POWERS_OF_10000.get(exponents.length) : undefined;
  const powers = recorded ? new Float32Array(Uint32Array.from(recorded).buffer) : exponents.map((e) => f32(theta ** e));
  const pi = f32(Math.PI);
  return powers.map((p) => f32(f32(p * pi) / 2));
}

/**
 * The tables of a (frames, height, width) latent grid, tokens frame-major. `scale` is the
 * forward's rope_interpolation_scale (frames, height, width), or null for unscaled positions.
 */
export function ltxRotaryEmbedding(
  grid: readonly [number, number, number],
  dim: number,
  scale: readonly [number, number, number] | null,
  opts: LtxRotaryOptions = {},
): RotaryEmbedding {
  const { patchSize = 1, patchSizeT = 1, baseNumFrames = 20, baseHeight = 2048, baseWidth = 2048, theta = 10000 } = opts;
  const [frames, height, width] = grid;
  if (!grid.every((n) => Number.isInteger(n) && n > 0))
    throw new RangeError(`ltxRotaryEmbedding: the grid must be positive integers, got (${grid.join(', ')})`);
  const freqs = ltxRotaryFrequencies(dim, theta);
  const pad = dim % 6;
  // Per axis: position -> float32 coordinate in [-1, 1], as grid * scale * patch / base, then * 2 - 1.
  const coordinate = (pos: number, s: number, patch: number, base: number): number => {
    const g = scale === null ? pos : f32(f32(f32(pos * f32(s)) * patch) / base);
    return f32(f32(g * 2) - 1);
  };
  const axis = (n: number, i: 0 | 1 | 2, patch: number, base: number): Float32Array =>
    Float32Array.from({ length: n }, (_, pos) => coordinate(pos, scale?.[i] ?? 1, patch, base));
  const fs = axis(frames, 0, patchSizeT, baseNumFrames);
  const hs = axis(height, 1, patchSize, baseHeight);
  const ws = axis(width, 2, patchSize, baseWidth);
  const tokens = frames * height * width;
  const cos = new Float32Array(tokens * dim);
  const sin = new Float32Array(tokens * dim);
  let at = 0;
  for (let f = 0; f < frames; ++f) {
    for (let h = 0; h < height; ++h) {
      for (let w = 0; w < width; ++w) {
        cos.fill(1, at, at + pad);
        at += pad;
        // Frequency-major, then the three axes: diffusers' freqs.transpose(-1, -2).flatten(2).
        for (const freq of freqs) {
          for (const c of [fs[f], hs[h], ws[w]]) {
            const angle = f32(freq * c);
            cos[at] = cos[at + 1] = Math.cos(angle);
            sin[at] = sin[at + 1] = Math.sin(angle);
            at += 2;
          }
        }
      }
    }
  }
  return {
    cos: tensor(cos, [1, tokens, dim], { device: opts.device }),
    sin: tensor(sin, [1, tokens, dim], { device: opts.device }),
  };
}
