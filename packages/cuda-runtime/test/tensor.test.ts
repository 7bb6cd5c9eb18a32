import { describe, expect, it } from 'vitest';

import * as rt from '../src/index.js';
import { expectClose, fromNd, rngFor } from './helpers.js';
import * as ref from './reference.js';

const rng = rngFor('tensor');

describe('creation and read-back', () => {
  it('round-trips values, shapes and dtypes', () => {
    rt.tidy(() => {
      const t = rt.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
      expect(t.shape).toEqual([2, 3]);
      expect(t.strides).toEqual([3, 1]);
      expect(t.dtype).toBe('float32');
      expect(t.device).toBe('cpu');
      expect(Array.from(t.toFloat32Array())).toEqual([1, 2, 3, 4, 5, 6]);
      expect(rt.tensor(new Int32Array([7, -8])).toInt32Array()).toEqual(new Int32Array([7, -8]));
      expect(Array.from(rt.full([2, 2], 2.5).toFloat32Array())).toEqual([2.5, 2.5, 2.5, 2.5]);
      expect(Array.from(rt.arange(5).toFloat32Array())).toEqual([0, 1, 2, 3, 4]);
      expect(Array.from(rt.arange(1, 2, 0.25).toFloat32Array())).toEqual([1, 1.25, 1.5, 1.75]);
      expect(rt.zeros([0, 4]).size).toBe(0);
      expect(rt.tensor([3]).item()).toBe(3);
    });
  });

  it('rejects bad shapes and data with a clear error', () => {
    expect(() => rt.tensor([1, 2, 3], [2, 2])).toThrow(/tensor: shape \(2, 2\) holds 4 elements but 3 values were given/);
    expect(() => rt.zeros([2, -1])).toThrow(/negative dimension in shape \(2, -1\)/);
    expect(() => rt.zeros([2.5])).toThrow(/shape must be an integer, got 2.5/);
    expect(() => rt.zeros([1e9, 1e9])).toThrow(/shape \(1000000000, 1000000000\) is too large/);
    expect(() => rt.zeros([1, 1, 1, 1, 1, 1, 1, 1, 1])).toThrow(/at most 8 dimensions/);
    expect(() => rt.zeros([2], { dtype: 'float64' as never })).toThrow(/unknown dtype 'float64'/);
    expect(() => rt.zeros([2], { device: 'tpu' as never })).toThrow(/unknown device 'tpu'/);
    expect(() => rt.tensor(new Uint16Array([1]), [1], { dtype: 'float32' })).toThrow(/Uint16Array holds raw float16 \/ bfloat16 bits/);
    expect(() => rt.arange(0, 1, 0)).toThrow(/arange: start, end and step must be finite and step non-zero/);
  });

  it('reports CUDA honestly: available, or a reason and a clear error', () => {
    const { cuda } = rt.devices();
    if (cuda.available) {
      expect(cuda.devices.length).toBeGreaterThan(0);
    } else {
      expect(cuda.reason.length).toBeGreaterThan(0);
      expect(() => rt.zeros([2], { device: 'cuda:0' })).toThrow(/cuda:0/);
    }
  });
});

describe('dtypes', () => {
  it('float16 and bfloat16 store the nearest value, ties to even, NaN and infinities kept', () => {
    rt.tidy(() => {
      const vals = [0, -0, 1, 1 / 3, 65504, 65520, 1e-8, 2 ** -24, 2 ** -25, -2.5, Infinity, -Infinity, NaN];
      const f16 = rt.tensor(vals, [vals.length], { dtype: 'float16' }).toFloat32Array();
      // 1/3 -> 0.333251953125; 65520 rounds up to inf; 2^-25 is a tie with 0 and rounds to even 0.
      expect(Array.from(f16)).toEqual([0, -0, 1, 0.333251953125, 65504, Infinity, 0, 2 ** -24, 0, -2.5, Infinity, -Infinity, NaN]);
      const bf = rt.tensor([1 / 3, 1.00390625, 1.01171875, 3e38, NaN], [5], { dtype: 'bfloat16' }).toFloat32Array();
      // 1.00390625 is halfway between 1 and 1.0078125: ties to even gives 1. 3e38 (0x7f61b1e6) rounds up to 0x7f62.
      expect(Array.from(bf)).toEqual([0.333984375, 1, 1.015625, 3.00405527047391e38, NaN]);
    });
  });

  it('casts between every pair of dtypes', () => {
    rt.tidy(() => {
      const x = rt.tensor([1.5, -2.75, 100, 0.1]);
      for (const a of ['float16', 'bfloat16', 'float32'] as const) {
        const back = x.cast(a).cast('float32').toFloat32Array();
        back.forEach((v, i) => expect(Math.abs(v - [1.5, -2.75, 100, 0.1][i])).toBeLessThan(a === 'float32' ? 1e-7 : 1e-2));
      }
      expect(x.cast('int32').toInt32Array()).toEqual(new Int32Array([1, -2, 100, 0]));
      expect(
        rt
          .tensor(new Int32Array([3, -4]))
          .cast('bfloat16')
          .toFloat32Array(),
      ).toEqual(new Float32Array([3, -4]));
      // Raw 16-bit storage round-trips exactly.
      const raw = new Uint16Array([0x3c00, 0xc000, 0x7bff]);
      expect(new Uint16Array(rt.tensor(raw, [3], { dtype: 'float16' }).toBytes().buffer.slice(0))).toEqual(raw);
    });
  });

  it('mixed-dtype arithmetic computes in float32 and returns float32', () => {
    rt.tidy(() => {
      const y = rt.add(rt.tensor([1, 2], [2], { dtype: 'float16' }), rt.tensor([0.5, 0.25]));
      expect(y.dtype).toBe('float32');
      expect(Array.from(y.toFloat32Array())).toEqual([1.5, 2.25]);
    });
  });
});

describe('views', () => {
  it('reshape, permute, transpose, slice, expand and squeeze share memory', () => {
    const x = rng.nd([2, 3, 4]);
    rt.tidy(() => {
      const t = fromNd(x);
      const p = t.permute(2, 0, 1);
      expect(p.shape).toEqual([4, 2, 3]);
      expect(p.strides).toEqual([1, 12, 4]);
      expectClose(p.contiguous(), ref.permute(x, [2, 0, 1]), 0, 0);
      expect(t.reshape(6, -1).shape).toEqual([6, 4]);
      expect(() => t.reshape(5, -1)).toThrow(/reshape: cannot reshape \(2, 3, 4\) \(24 elements\) into \(5, -1\)/);
      const s = t.slice(2, -3, undefined, 2); // last dim: indices 1, 3
      expect(s.shape).toEqual([2, 3, 2]);
      expect(Array.from(s.toFloat32Array())).toEqual(
        Array.from(x.data)
          .filter((_, i) => i % 4 === 1 || i % 4 === 3)
          .map(Math.fround),
      );
      const e = rt.tensor([1, 2, 3], [3, 1]).expand(3, 4);
      expect(e.strides).toEqual([1, 0]);
      expect(Array.from(e.toFloat32Array())).toEqual([1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
      expect(t.unsqueeze(1).shape).toEqual([2, 1, 3, 4]);
      expect(t.unsqueeze(1).squeeze(1).shape).toEqual([2, 3, 4]);
      expect(() => t.squeeze(0)).toThrow(/squeeze: dimension 0 of \(2, 3, 4\) has size 2, not 1/);
      expect(() => t.permute(0, 0, 1)).toThrow(/permute: dimension 0 appears twice/);
      expect(() => t.transpose(0, 3)).toThrow(/dimension 3 is out of range for a 3-D tensor/);
    });
  });

  it('split, concat and stack along any dimension', () => {
    const x = rng.nd([4, 6, 5]);
    rt.tidy(() => {
      const t = fromNd(x);
      const parts = t.split([1, 2, 3], 1);
      expect(parts.map((p) => p.shape)).toEqual([
        [4, 1, 5],
        [4, 2, 5],
        [4, 3, 5],
      ]);
      expectClose(rt.concat(parts, 1), x, 0, 0);
      expectClose(rt.concat(t.split(2, 0), 0), x, 0, 0);
      const st = rt.stack([t, t], 1);
      expect(st.shape).toEqual([4, 2, 6, 5]);
      expectClose(st.slice(1, 1, 2).squeeze(1), x, 0, 0);
      // Concatenating transposed views copies through their strides.
      const tt = t.transpose(0, 2);
      expectClose(rt.concat([tt, tt], 2), ref.permute(new ref.Nd([8, 6, 5], [...x.data, ...x.data]), [2, 1, 0]), 0, 0);
      expect(() => rt.concat([t, rt.zeros([4, 6, 4])], 1)).toThrow(
        /concat: tensor 1 has shape \(4, 6, 4\), which differs from \(4, 6, 5\) outside dimension 1/,
      );
      expect(() => t.split([1, 2], 1)).toThrow(/split: sizes add up to 3 but dimension 1 of \(4, 6, 5\) has 6/);
    });
  });
});

describe('comparisons', () => {
  it('relativeL2 is ||a - b|| / ||b|| in float64 and refuses different shapes', () => {
    rt.tidy(() => {
      const b = rt.tensor([3, 4]);
      expect(rt.relativeL2(rt.tensor([3, 4]), b)).toBe(0);
      expect(rt.relativeL2(rt.tensor([3, 5]), b)).toBeCloseTo(1 / 5, 15);
      expect(rt.relativeL2Values([1, 1, 1], [1, 1, 0])).toBeCloseTo(Math.sqrt(0.5), 15);
      expect(() => rt.relativeL2(rt.tensor([1, 2, 3]), rt.tensor([1, 2, 3], [3, 1]))).toThrow(/relativeL2: shapes differ: \(3\) vs \(3, 1\)/);
    });
  });
});
