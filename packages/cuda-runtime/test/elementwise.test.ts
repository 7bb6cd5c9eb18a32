import { describe, expect, it } from 'vitest';

import * as rt from '../src/index.js';
import { expectClose, fromNd, rngFor } from './helpers.js';
import * as ref from './reference.js';

const rng = rngFor('elementwise');

// float32 elementwise results are correctly rounded or within a few ulps of libm's.
const F32 = { rtol: 1e-6, atol: 1e-6 };

const binaries: [string, (a: rt.Tensor, b: rt.Tensor) => rt.Tensor, (x: number, y: number) => number][] = [
  ['add', rt.add, (x, y) => x + y],
  ['sub', rt.sub, (x, y) => x - y],
  ['mul', rt.mul, (x, y) => x * y],
  ['div', rt.div, (x, y) => x / y],
  ['maximum', rt.maximum, Math.max],
  ['minimum', rt.minimum, Math.min],
];

describe('binary ops', () => {
  const shapes: [number[], number[]][] = [
    [
      [5, 7],
      [5, 7],
    ],
    [[2, 3, 4], [4]],
    [
      [2, 1, 4],
      [3, 1],
    ],
    [[1], [3, 2]],
    [
      [6, 1, 1, 5],
      [1, 4, 3, 1],
    ],
    [[], [2, 2]],
  ];
  for (const [name, op, f] of binaries) {
    it(`${name} broadcasts like NumPy`, () => {
      for (const [sa, sb] of shapes) {
        const a = rng.nd(sa),
          b = rng.nd(sb);
        rt.tidy(() => expectClose(op(fromNd(a), fromNd(b)), ref.binary(a, b, f), F32.rtol, F32.atol));
      }
    });
  }

  it('reads non-contiguous views (transposed, sliced, stepped, expanded) in place', () => {
    rt.tidy(() => {
      const a = rng.nd([4, 6, 5]);
      const b = rng.nd([5, 6]);
      // a viewed as (5, 6, 4) through a permutation; b transposed to (6, 5) then expanded.
      const av = fromNd(a).permute(2, 1, 0);
      const bv = fromNd(b).transpose(0, 1).unsqueeze(2).expand(6, 5, 4).permute(1, 0, 2);
      expect(av.isContiguous).toBe(false);
      const want = ref.binary(ref.permute(a, [2, 1, 0]), new ref.Nd([5, 6, 1], ref.permute(b, [0, 1]).data), (x, y) => x * y);
      expectClose(rt.mul(av, bv), want, F32.rtol, F32.atol);

      const s = fromNd(a).slice(1, 1, 6, 2); // (4, 3, 5), every other row
      const sref = new ref.Nd([4, 3, 5]);
      for (let i = 0; i < 4; ++i) for (let j = 0; j < 3; ++j) for (let k = 0; k < 5; ++k) sref.data[(i * 3 + j) * 5 + k] = a.at(i, 1 + 2 * j, k);
      expectClose(
        rt.add(s, 1),
        sref.map((v) => v + 1),
        F32.rtol,
        F32.atol,
      );
    });
  });

  it('takes numbers on either side', () => {
    rt.tidy(() => {
      const a = rng.nd([3, 4]);
      expectClose(
        rt.sub(2, fromNd(a)),
        a.map((v) => 2 - v),
        F32.rtol,
        F32.atol,
      );
      expectClose(
        rt.div(fromNd(a), 4),
        a.map((v) => v / 4),
        F32.rtol,
        F32.atol,
      );
      expectClose(
        rt.pow(fromNd(a.map(Math.abs)), 1.5),
        a.map((v) => Math.abs(v) ** 1.5),
        1e-6,
        1e-6,
      );
    });
  });

  it('propagates NaN through maximum / minimum like PyTorch', () => {
    rt.tidy(() => {
      const a = rt.tensor([NaN, 1, 2]);
      const b = rt.tensor([0, NaN, 1]);
      expect(Array.from(rt.maximum(a, b).toFloat32Array())).toEqual([NaN, NaN, 2]);
      expect(Array.from(rt.minimum(a, b).toFloat32Array())).toEqual([NaN, NaN, 1]);
    });
  });

  it('names the op and both shapes when they do not broadcast', () => {
    rt.tidy(() => {
      expect(() => rt.add(rt.zeros([2, 3]), rt.zeros([4]))).toThrow(/add: shapes \(2, 3\) and \(4,\) do not broadcast/);
      expect(() => rt.mul(rt.zeros([2]), rt.zeros([2], { dtype: 'int32' }))).toThrow(/mul: second operand must be a float tensor/);
    });
  });
});

describe('unary ops', () => {
  // erf in float64: its Taylor series near 0, the continued fraction of erfc in the tails
  // (where the series would lose every digit to cancellation).
  const erf = (x: number): number => {
    const ax = Math.abs(x);
    if (ax < 2.5) {
      let sum = x,
        term = x;
      for (let n = 1; n < 100; ++n) {
        term *= (-x * x) / n;
        sum += term / (2 * n + 1);
      }
      return (2 / Math.sqrt(Math.PI)) * sum;
    }
    let f = ax;
    for (let k = 80; k >= 1; --k) f = ax + k / 2 / f;
    const erfc = Math.exp(-ax * ax) / (Math.sqrt(Math.PI) * f);
    return Math.sign(x) * (1 - erfc);
  };
  // [name, op, float64 reference, rtol]; atol covers float32 cancellation in the tails.
  const cases: [string, (x: rt.Tensor) => rt.Tensor, (v: number) => number, number][] = [
    ['neg', rt.neg, (v) => -v, 0],
    ['abs', rt.abs, Math.abs, 0],
    ['exp', rt.exp, Math.exp, 2e-7],
    ['log', (x) => rt.log(rt.abs(x)), (v) => Math.log(Math.abs(v)), 2e-7],
    ['sqrt', (x) => rt.sqrt(rt.abs(x)), (v) => Math.sqrt(Math.abs(v)), 2e-7],
    ['rsqrt', (x) => rt.rsqrt(rt.abs(x)), (v) => 1 / Math.sqrt(Math.abs(v)), 3e-7],
    ['sin', rt.sin, Math.sin, 2e-7],
    ['cos', rt.cos, Math.cos, 2e-7],
    ['tanh', rt.tanh, Math.tanh, 3e-7],
    ['sigmoid', rt.sigmoid, (v) => 1 / (1 + Math.exp(-v)), 3e-7],
    ['silu', rt.silu, (v) => v / (1 + Math.exp(-v)), 3e-7],
    ['relu', rt.relu, (v) => Math.max(v, 0), 0],
    ['gelu (erf)', (x) => rt.gelu(x), (v) => 0.5 * v * (1 + erf(v / Math.SQRT2)), 5e-7],
    ['gelu (tanh)', (x) => rt.gelu(x, { approximate: 'tanh' }), (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))), 5e-7],
    ['square', rt.square, (v) => v * v, 1e-7],
    ['reciprocal', rt.reciprocal, (v) => 1 / v, 1e-7],
    ['clamp', (x) => rt.clamp(x, -0.5, 0.7), (v) => Math.min(Math.max(v, -0.5), 0.7), 0],
  ];
  for (const [name, op, f, rtol] of cases) {
    it(`${name} matches float64`, () => {
      const a = rng.nd([3, 17, 9], 2);
      // Also through a transposed view, which the op copies to contiguous first.
      rt.tidy(() => {
        expectClose(op(fromNd(a)), a.map(f), rtol, 5e-7);
        expectClose(op(fromNd(a).transpose(0, 2)), ref.permute(a, [2, 1, 0]).map(f), rtol, 5e-7);
      });
    });
  }

  it('keeps the input dtype for float16 and bfloat16', () => {
    rt.tidy(() => {
      const x = rt.tensor([0.5, -1.25, 3], [3], { dtype: 'float16' });
      const y = rt.silu(x);
      expect(y.dtype).toBe('float16');
      const got = Array.from(y.toFloat32Array());
      const want = [0.5, -1.25, 3].map((v) => v / (1 + Math.exp(-v)));
      got.forEach((g, i) => expect(Math.abs(g - want[i])).toBeLessThan(2e-3 * Math.abs(want[i]) + 1e-3));
      expect(rt.exp(rt.tensor([1, 2], [2], { dtype: 'bfloat16' })).dtype).toBe('bfloat16');
    });
  });
});

describe('vectorised activations at every vector ISA', () => {
  const detected = rt.devices().cpu.detectedIsa;
  const isas = rt.CPU_ISAS.slice(0, rt.CPU_ISAS.indexOf(detected) + 1).reverse();
  // Values across the whole float range (overflow, underflow into subnormals, specials) and
  // lengths that leave every possible tail.
  const special = [0, -0, 1e-30, -1e-30, 87.5, 88.7, 89, -87.3, -103.9, -104.5, 200, -200, Infinity, -Infinity, NaN];
  // [name, op, float64 reference, rtol, atol]. Two float32 ulps are a relative 2.4e-7. GELU's
  // argument 2u is itself rounded to float32 before the exponential, which multiplies that
  // rounding by |2u| (up to about 1e-6 relative where the result is still above 1e-9): any
  // float32 GELU shares this limit, so its bound is wider.
  const cases: [string, (x: rt.Tensor) => rt.Tensor, (v: number) => number, number, number][] = [
    ['exp', rt.exp, Math.exp, 2.4e-7, 1e-37],
    ['sigmoid', rt.sigmoid, (v) => 1 / (1 + Math.exp(-v)), 2.4e-7, 1e-37],
    ['silu', rt.silu, (v) => v / (1 + Math.exp(-v)), 2.4e-7, 1e-37],
    // 0.5 v (1 + tanh(u)) written as v sigmoid(2u), which float64 evaluates without cancellation in the tails.
    ['gelu (tanh)', (x) => rt.gelu(x, { approximate: 'tanh' }), (v) => v / (1 + Math.exp(-2 * Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))), 1.2e-6, 1e-9],
  ];
  for (const isa of isas) {
    it(`${isa}: within 2 ulp of float64 (GELU: see its bound), specials included`, () => {
      try {
        rt.setCpuIsa(isa);
        for (const n of [1, 7, 16, 33, 1000]) {
          const values = Array.from({ length: n }, (_, i) => Math.fround(i < special.length ? special[i] : rng.normal() * 6));
          const x = new ref.Nd([n], values);
          for (const [, op, f, rtol, atol] of cases) {
            rt.tidy(() =>
              expectClose(
                op(fromNd(x)),
                x.map((v) => Math.fround(f(v))),
                rtol,
                atol,
              ),
            );
          }
        }
      } finally {
        rt.setCpuIsa(detected);
      }
    });
  }
});

describe('rotary embedding', () => {
  for (const interleaved of [true, false]) {
    it(`${interleaved ? 'interleaved pairs (FLUX)' : 'halves (rotate_half)'} with broadcast cos / sin`, () => {
      const [B, H, S, D] = [2, 3, 5, 8];
      const x = rng.nd([B, H, S, D]);
      const cos = rng.nd([S, D]),
        sin = rng.nd([S, D]);
      rt.tidy(() => {
        expectClose(rt.rope(fromNd(x), fromNd(cos), fromNd(sin), { interleaved }), ref.rope(x, cos, sin, interleaved), 1e-6, 1e-6);
        // (B, S, H, D) layout with cos of shape (S, 1, D), as Wan applies it.
        const xs = ref.permute(x, [0, 2, 1, 3]);
        const cs = new ref.Nd([S, 1, D], cos.data),
          sn = new ref.Nd([S, 1, D], sin.data);
        expectClose(rt.rope(fromNd(xs), fromNd(cs), fromNd(sn), { interleaved }), ref.rope(xs, cs, sn, interleaved), 1e-6, 1e-6);
      });
    });
  }

  it('rejects an odd feature size and cos that does not broadcast', () => {
    rt.tidy(() => {
      expect(() => rt.rope(rt.zeros([2, 3]), rt.zeros([3]), rt.zeros([3]))).toThrow(/rope: the last dimension of the input must be even/);
      expect(() => rt.rope(rt.zeros([2, 4]), rt.zeros([3, 4]), rt.zeros([3, 4]))).toThrow(/rope: shapes \(3, 4\) and \(2, 4\) do not broadcast/);
    });
  });
});
