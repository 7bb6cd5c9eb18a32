// The shared pieces of 16-bit compute: where diffusers rounds to the model's dtype (timestep
// features, initial noise, the scheduler step, the widened image) and the float16 range checks.
import { describe, expect, it } from 'vitest';

import { full, memoryStats, tensor, type Tensor } from '@ditcache/cuda-runtime';

import {
  FLOAT16_MAX,
  Float16OverflowError,
  FlowMatchSchedule,
  checkFloat16Range,
  clipToFloat16Range,
  computeDtype,
  inDenoisingStep,
  randnTensor,
  sinusoidalTimestepEmbedding,
  toImageRange,
  toVideoRange,
} from '../src/index.js';

const f32 = Math.fround;

/** `x` rounded to bfloat16 (round to nearest, ties to even), as a number. */
function bf16(x: number): number {
  const bits = new Uint32Array(new Float32Array([x]).buffer);
  bits[0] = (bits[0] + 0x7fff + ((bits[0] >>> 16) & 1)) & 0xffff0000;
  return new Float32Array(bits.buffer)[0];
}

const values = (t: Tensor): number[] => Array.from(t.toFloat32Array());

describe('computeDtype', () => {
  it('defaults to float32 and refuses unknown names, listing the valid ones', () => {
    expect(computeDtype(undefined)).toBe('float32');
    expect(computeDtype('bfloat16')).toBe('bfloat16');
    expect(() => computeDtype('bf16', '--dtype')).toThrow("--dtype: unknown dtype 'bf16' (valid: float32, bfloat16, float16)");
  });
});

describe('rounding where diffusers rounds', () => {
  it('sinusoidalTimestepEmbedding computes in float32 and rounds once to dtype', () => {
    using wide = sinusoidalTimestepEmbedding([999, 412.5], 16, { flipSinToCos: true, downscaleFreqShift: 0 });
    using narrow = sinusoidalTimestepEmbedding([999, 412.5], 16, { flipSinToCos: true, downscaleFreqShift: 0, dtype: 'bfloat16' });
    expect(narrow.dtype).toBe('bfloat16');
    expect(values(narrow)).toEqual(values(wide).map(bf16));
  });

  it('randnTensor in bfloat16 is the float32 draw rounded, as torch.randn(dtype=torch.bfloat16)', () => {
    using wide = randnTensor([2, 16], 5);
    using narrow = randnTensor([2, 16], 5, { dtype: 'bfloat16' });
    expect(narrow.dtype).toBe('bfloat16');
    expect(values(narrow)).toEqual(values(wide).map(bf16));
  });

  it("the Euler step rounds the update to the model output's dtype, adds in float32 and returns that dtype", () => {
    const schedule = new FlowMatchSchedule(new Float32Array([1000, 500]), new Float32Array([1, 0.5, 0]));
    const dt = f32(0 - 0.5);
    using sample = tensor([0.1, 1.7, -3.3], [3], { dtype: 'bfloat16' });
    using output = tensor([0.77, -2.9, 5.1], [3], { dtype: 'bfloat16' });
    using next = schedule.step(1, output, sample);
    expect(next.dtype).toBe('bfloat16');
    const s = values(sample);
    const o = values(output);
    expect(values(next)).toEqual(s.map((x, i) => bf16(f32(x + bf16(f32(o[i] * dt))))));
    // A float32 sample (diffusers upcasts it anyway) still comes back in the output's dtype.
    using wideSample = tensor([0.1, 1.7, -3.3], [3]);
    using mixed = schedule.step(1, output, wideSample);
    expect(mixed.dtype).toBe('bfloat16');
  });

  it('toImageRange and toVideoRange denormalise in the decoder dtype and return float32', () => {
    using decoded = tensor([-1.5, -0.3, 0.2, 0.9], [1, 1, 2, 2], { dtype: 'bfloat16' });
    using image = toImageRange(decoded);
    expect(image.dtype).toBe('float32');
    expect(values(image)).toEqual(values(decoded).map((x) => Math.min(1, Math.max(0, bf16(bf16(x * 0.5) + 0.5)))));
    using video = toVideoRange(decoded.unsqueeze(2));
    expect(video.dtype).toBe('float32');
  });
});

describe('float16 range', () => {
  it('checkFloat16Range names the module when a float16 tensor holds Inf or NaN, and ignores other dtypes', () => {
    using finite = full([4], FLOAT16_MAX, { dtype: 'float16' });
    using inf = tensor([1, Infinity, 2], [3], { dtype: 'float16' });
    using nan = tensor([1, NaN], [2], { dtype: 'float16' });
    using wideInf = tensor([Infinity], [1]);
    expect(() => checkFloat16Range('blocks.0', finite, wideInf)).not.toThrow();
    expect(() => checkFloat16Range('blocks.3', finite, inf)).toThrow(Float16OverflowError);
    expect(() => checkFloat16Range('blocks.3', inf)).toThrow(/float16 overflow in blocks\.3: .*compute in bfloat16/);
    expect(() => checkFloat16Range('blocks.4', nan)).toThrow(/in blocks\.4/);
  });

  it("clipToFloat16Range is diffusers' clip of float16 outputs, and the identity otherwise", () => {
    using big = tensor([-Infinity, 70000, 3, Infinity], [4], { dtype: 'float16' });
    using clipped = clipToFloat16Range(big);
    expect(values(clipped)).toEqual([-FLOAT16_MAX, FLOAT16_MAX, 3, FLOAT16_MAX]);
    using wide = tensor([1e6], [1]);
    expect(clipToFloat16Range(wide)).toBe(wide);
  });

  it('inDenoisingStep adds the step to an overflow the model reports, and passes other errors on', () => {
    const before = memoryStats();
    let caught: unknown;
    try {
      inDenoisingStep(4, 28, () => {
        throw new Float16OverflowError('single_transformer_blocks.7');
      });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(Float16OverflowError);
    const err = caught as Float16OverflowError;
    expect([err.module, err.step, err.numSteps]).toEqual(['single_transformer_blocks.7', 4, 28]);
    expect(err.message).toMatch(/^float16 overflow at step 5 of 28, in single_transformer_blocks\.7: .*--dtype bfloat16/);
    expect(() =>
      inDenoisingStep(0, 1, () => {
        throw new TypeError('other');
      }),
    ).toThrow(TypeError);
    expect(inDenoisingStep(0, 1, () => 42)).toBe(42);
    expect(memoryStats()).toEqual(before);
  });
});
