// Element-wise ops on bfloat16 / float16 operands run in one pass on the CPU (a chunk widened,
// the float32 formula, the result rounded once): each must equal the float32 op on the widened
// operands followed by a cast, bit for bit, whatever the shapes, strides, broadcasting and chunking.
import { describe, expect, it } from 'vitest';

import * as rt from '../src/index.js';
import { fromNd, rngFor } from './helpers.js';

const rng = rngFor('elementwise16');
const DTYPES = ['bfloat16', 'float16'] as const;

/** op on 16-bit (or mixed) operands against float32 op on the widened ones, rounded to the result's dtype. */
function expectRoundedOnce(op: (...xs: rt.Tensor[]) => rt.Tensor, ...operands: rt.Tensor[]): void {
  rt.tidy(() => {
    const got = op(...operands);
    const widened = op(...operands.map((t) => t.cast('float32')));
    const want = widened.cast(got.dtype);
    expect(got.shape).toEqual(want.shape);
    expect(Buffer.compare(got.toBytes(), want.toBytes())).toBe(0);
  });
}

describe.each(DTYPES)('%s element-wise ops', (dtype) => {
  const t = (shape: number[], scale = 2) => fromNd(rng.nd(shape, scale)).cast(dtype);

  it('binary ops broadcast, read strided views and cross chunk boundaries', () => {
    const cases: [rt.Tensor, rt.Tensor][] = [
      [t([3, 2500]), t([3, 2500])], // several 1024-element chunks per row
      [t([7, 300]), t([300])],
      [t([4, 1, 5]), t([3, 1])],
      [t([640, 6]).transpose(0, 1), t([6, 640])],
      [t([2, 9, 3]).narrow(1, 2, 5), t([1, 5, 1])],
      [t([4097]), t([1])],
    ];
    for (const op of [rt.add, rt.sub, rt.mul, rt.div, rt.maximum, rt.minimum]) for (const [a, b] of cases) expectRoundedOnce(op, a, b);
  });

  it('mixed with float32 gives float32, computed from the exact widened values', () => {
    rt.tidy(() => {
      const a = t([5, 1100]);
      const b = fromNd(rng.nd([1100]));
      const sum = rt.add(a, b);
      expect(sum.dtype).toBe('float32');
      expect(Buffer.compare(sum.toBytes(), rt.add(a.cast('float32'), b).toBytes())).toBe(0);
    });
  });

  it('scalar ops in either order', () => {
    const a = t([3, 1500]);
    expectRoundedOnce((x) => rt.mul(x, 0.3), a);
    expectRoundedOnce((x) => rt.sub(1, x), a);
    expectRoundedOnce((x) => rt.div(x.transpose(0, 1), 7), a);
    a.dispose();
  });

  it('unary ops, vectorised and scalar ones, NaN and infinities included', () => {
    const a = rt.tidy(() => rt.concat([t([2600], 4), rt.tensor([NaN, Infinity, -Infinity, 0, -0]).cast(dtype)], 0).keep());
    for (const op of [
      rt.exp,
      rt.sigmoid,
      rt.silu,
      (x: rt.Tensor) => rt.gelu(x, { approximate: 'tanh' }),
      (x: rt.Tensor) => rt.gelu(x),
      rt.tanh,
      rt.neg,
      rt.abs,
      rt.square,
      rt.relu,
      (x: rt.Tensor) => rt.clamp(x, -1, 1.5),
    ]) {
      expectRoundedOnce(op, a);
      expectRoundedOnce((x) => op(x.reshape(2, -1).transpose(0, 1)), a.narrow(0, 0, 2600));
    }
    a.dispose();
  });
});

describe.each(DTYPES)('%s row ops', (dtype) => {
  const t = (shape: number[], scale = 2) => fromNd(rng.nd(shape, scale)).cast(dtype);

  it('softmax, layer norm and RMS norm equal the float32 op on the widened rows, rounded once', () => {
    const x = t([6, 3072], 3);
    const w = fromNd(rng.nd([3072]));
    const b = fromNd(rng.nd([3072]));
    expectRoundedOnce((v) => rt.softmax(v, -1), x);
    expectRoundedOnce((v) => rt.softmax(v, 0), x);
    expectRoundedOnce((v) => rt.layerNorm(v, null, null, 1e-6), x);
    expectRoundedOnce((v) => rt.layerNorm(v, w, b, 1e-5), x);
    expectRoundedOnce((v) => rt.rmsNorm(v, w, 1e-6), x);
    expectRoundedOnce((v) => rt.rmsNorm(v.transpose(0, 1).contiguous().transpose(0, 1), null, 1e-6), x);
    for (const v of [x, w, b]) v.dispose();
  });
});

describe.each(DTYPES)('%s rotary embedding', (dtype) => {
  it('equals the float32 rotation of the widened input, rounded once, in both layouts', () => {
    const x = fromNd(rng.nd([2, 3, 40, 64])).cast(dtype);
    const angles = rng.nd([40, 64]);
    const cos = fromNd(angles.map((v) => Math.cos(3 * v)));
    const sin = fromNd(angles.map((v) => Math.sin(3 * v)));
    for (const interleaved of [true, false]) expectRoundedOnce((v) => rt.rope(v, cos, sin, { interleaved }), x);
    for (const v of [x, cos, sin]) v.dispose();
  });
});
