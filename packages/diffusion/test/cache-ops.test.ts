// The cache engine's tensor interface over runtime tensors: registered as the engine's default, and
// in bfloat16 / float16 reducing diffs in float64 while every cached residual and TaylorSeer term is
// rounded to the dtype exactly where cache-dit's torch arithmetic rounds it.
import { afterEach, describe, expect, it, vi } from 'vitest';

import { disableCache, ditcacheContainer, enableCache, ForwardPattern, summary, TENSOR_OPS } from '@ditcache/core';
import { add, div, memoryStats, mul, tanh, tensor, tidy, type Tensor } from '@ditcache/cuda-runtime';

import { runtimeTensorOps } from '../src/index.js';

/** A runtime block that states its pattern: h + t * tanh(h). */
class StatedBlock {
  static readonly forwardPattern = ForwardPattern.Pattern_3;

  forward(h: Tensor, t: number): Tensor {
    return tidy(() => add(h, mul(tanh(h), t)));
  }
}

/** A transformer of no registered family, looping over its blocks as diffusers models do. */
class HomemadeTransformer {
  blocks = [new StatedBlock(), new StatedBlock(), new StatedBlock()];

  forward(x: Tensor, t: number): Tensor {
    return tidy(() => {
      let h = x;
      for (const block of this.blocks) h = block.forward(h, t);
      return h;
    });
  }
}

describe('runtimeTensorOps', () => {
  afterEach(() => vi.restoreAllMocks());

  it("is registered as the engine's default TensorOps, so a runtime model without an adapter is cached in auto mode", () => {
    expect(ditcacheContainer.resolve(TENSOR_OPS)).toBe(runtimeTensorOps);
    vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const transformer = new HomemadeTransformer();
    using x = tensor([0.3, -0.2, 0.5, 0.1], [1, 4]);
    const run = (): Float32Array[] =>
      [0.9, 0.8, 0.7, 0.6, 0.5].map((t) => {
        using out = transformer.forward(x, t);
        return out.toFloat32Array();
      });
    const reference = run();
    const before = memoryStats();
    enableCache(transformer, { Fn_compute_blocks: 1, max_warmup_steps: 2, residual_diff_threshold: 1 });
    const cached = run();
    expect(summary(transformer, { print: false }).contexts[0].cachedSteps).toEqual([2, 3, 4]);
    expect(cached.slice(0, 2)).toEqual(reference.slice(0, 2));
    expect(disableCache(transformer)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });
});

/** float32 bits -> bfloat16 bits, rounding to nearest even (finite values), as torch's .to(bfloat16). */
function bf16Bits(x: number): number {
  const bits = new Uint32Array(new Float32Array([x]).buffer)[0];
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}
const bf16Value = (bits: number): number => new Float32Array(new Uint32Array([bits << 16]).buffer)[0];
const bitsOf = (t: Tensor): Uint16Array => new Uint16Array(Uint8Array.from(t.toBytes()).buffer);
/** Every finite bit pattern of a 16-bit float dtype (exponent field not all ones). */
function finiteBits(dtype: 'bfloat16' | 'float16'): Uint16Array {
  const exponent = dtype === 'bfloat16' ? 0x7f80 : 0x7c00;
  return Uint16Array.from({ length: 65536 }, (_, i) => i).filter((b) => (b & exponent) !== exponent);
}

describe('runtimeTensorOps in 16-bit', () => {
  const ops = runtimeTensorOps;

  it('relL1 of bf16 residuals is the float64 mean|a - b| / mean|a| of their values, not a bf16 one', () => {
    const n = 4096;
    // Residual-like values, and a second step 30-60% away: the regime of the diffs DBCache compares.
    const a = Float32Array.from({ length: n }, (_, i) => bf16Value(bf16Bits(Math.sin(i * 0.37) * 3 + 0.1)));
    const b = Float32Array.from(a, (v, i) => bf16Value(bf16Bits(v * (0.5 + 0.4 * Math.cos(i)) + 0.01 * i ** 0.5)));
    let diff = 0;
    let mag = 0;
    for (let i = 0; i < n; i++) {
      diff += Math.abs(a[i] - b[i]);
      mag += Math.abs(a[i]);
    }
    using ta = tensor(a, [4, 1024], { dtype: 'bfloat16' });
    using tb = tensor(b, [4, 1024], { dtype: 'bfloat16' });
    expect(ta.dtype).toBe('bfloat16');
    const rel = ops.relL1(ta, tb);
    expect(Math.abs(rel - diff / mag) / (diff / mag)).toBeLessThan(1e-12);
    // cache-dit's bf16 diff is a bfloat16 number; ours is not rounded to one.
    expect(bf16Value(bf16Bits(rel))).not.toBe(rel);
  });

  it("residuals, cached steps and TaylorSeer terms stay bf16, each op rounded once as torch's", () => {
    const n = 1000;
    const vals = (f: (i: number) => number) => Float32Array.from({ length: n }, (_, i) => bf16Value(bf16Bits(f(i))));
    const a = vals((i) => Math.sin(i) * 10);
    const b = vals((i) => Math.cos(i * 1.3) * 0.7);
    using ta = tensor(a, [n], { dtype: 'bfloat16' });
    using tb = tensor(b, [n], { dtype: 'bfloat16' });
    const f = Math.fround;
    const expectBits = (t: Tensor, expected: (i: number) => number, what: string) => {
      expect(t.dtype, what).toBe('bfloat16');
      const got = bitsOf(t);
      for (let i = 0; i < n; i++) if (got[i] !== bf16Bits(expected(i))) expect(bf16Value(got[i]), `${what} [${i}]`).toBe(bf16Value(bf16Bits(expected(i))));
    };
    // hidden - original (a residual), hidden + residual (a cached step): one rounding of the float32 result.
    tidy(() => {
      expectBits(ops.sub(ta, tb), (i) => f(a[i] - b[i]), 'sub');
      expectBits(ops.add(ta, tb), (i) => f(a[i] + b[i]), 'add');
      // A TaylorSeer term: cache-dit's `output += coefficient * derivative * elapsed ** i` rounds the
      // product, then the sum (coefficients 1 and 1/2 times an integer are exact in float32).
      for (const s of [1, 2, 3, 4.5, 8]) expectBits(ops.addScaled(ta, tb, s), (i) => f(a[i] + bf16Value(bf16Bits(f(b[i] * s)))), `addScaled ${s}`);
    });
  });

  it.each(['bfloat16', 'float16'] as const)(
    "TaylorSeer's derivative / gap, taken as a product with 1 / gap, equals torch's division in %s for every value",
    (dtype) => {
      // cache-dit divides by the step gap (float32 quotient rounded to the dtype); the engine
      // multiplies by 1 / gap, which is bit-identical in float32 only when gap is a power of two.
      // Rounded to 16 bits the two agree for every finite value: a quotient by a small integer is
      // never within a float32 unit of a 16-bit rounding midpoint.
      using t = tensor(finiteBits(dtype), undefined, { dtype });
      for (const gap of [2, 3, 5, 6, 7, 9, 11, 13]) {
        tidy(() => {
          const ours = bitsOf(ops.scale(t, 1 / gap));
          const torch = bitsOf(div(t, gap));
          let mismatches = 0;
          for (let i = 0; i < ours.length; i++) if (ours[i] !== torch[i]) mismatches++;
          expect(mismatches, `gap ${gap}`).toBe(0);
        });
      }
    },
  );
});
