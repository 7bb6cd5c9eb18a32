import { describe, expect, it } from 'vitest';

import * as rt from '../src/index.js';
import { expectClose, fromNd, rngFor } from './helpers.js';
import * as ref from './reference.js';

const rng = rngFor('reduce-norm');

describe('reductions', () => {
  const x = rng.nd([4, 5, 6, 3]);
  const cases: [string, typeof rt.sum, (v: number[]) => number][] = [
    ['sum', rt.sum, ref.sumOf],
    ['mean', rt.mean, (v) => ref.sumOf(v) / v.length],
    ['max', rt.max, (v) => Math.max(...v)],
    ['min', rt.min, (v) => Math.min(...v)],
  ];
  for (const [name, op, f] of cases) {
    it(`${name} over single dims, several dims and everything, with keepdim`, () => {
      rt.tidy(() => {
        for (const dims of [[0], [2], [-1], [1, 3], [0, 1, 2, 3]]) {
          for (const keepdim of [false, true]) {
            expectClose(op(fromNd(x), dims, keepdim), ref.reduce(x, dims, f, keepdim), 1e-6, 1e-6);
          }
        }
        const all = op(fromNd(x));
        expect(all.shape).toEqual([]);
        expect(all.item()).toBeCloseTo(f(Array.from(x.data)), 5);
        // A non-contiguous input reduces the same way.
        expectClose(op(fromNd(x).permute(3, 1, 0, 2), [1]), ref.reduce(ref.permute(x, [3, 1, 0, 2]), [1], f), 1e-6, 1e-6);
      });
    });
  }

  it('max / min of an empty tensor is an error, sum is 0', () => {
    rt.tidy(() => {
      expect(() => rt.max(rt.zeros([0, 3]))).toThrow(/max \/ min of an empty tensor/);
      expect(rt.sum(rt.zeros([0, 3]), 0).toFloat32Array()).toEqual(new Float32Array([0, 0, 0]));
    });
  });

  it('meanAbs and relL1 equal their float64 definitions', () => {
    rt.tidy(() => {
      const a = rng.nd([3, 1000, 37]);
      const b = a.map((v, i) => Math.fround(v + 0.01 * Math.sin(i)));
      const meanAbs = ref.sumOf(Array.from(a.data, Math.abs)) / a.size;
      const meanDiff = ref.sumOf(Array.from(a.data, (v, i) => Math.abs(v - b.data[i]))) / a.size;
      expect(Math.abs(rt.meanAbs(fromNd(a)) - meanAbs) / meanAbs).toBeLessThan(1e-12);
      expect(Math.abs(rt.relL1(fromNd(a), fromNd(b)) - meanDiff / meanAbs) / (meanDiff / meanAbs)).toBeLessThan(1e-9);
      // Identical inputs differ by exactly 0; a transposed view gives the same statistic.
      expect(rt.relL1(fromNd(a), fromNd(a))).toBe(0);
      const at = fromNd(a).transpose(0, 2).contiguous().transpose(0, 2);
      expect(rt.relL1(at, fromNd(b))).toBeCloseTo(meanDiff / meanAbs, 12);
      expect(() => rt.relL1(fromNd(a), rt.zeros([3]))).toThrow(/relL1: shapes differ: \(3, 1000, 37\) vs \(3,\)/);
    });
  });
});

describe('softmax and normalisations', () => {
  it('softmax along any dimension', () => {
    const x = rng.nd([3, 4, 50], 3);
    rt.tidy(() => {
      expectClose(rt.softmax(fromNd(x)), ref.softmax(x), 2e-6, 1e-8);
      const moved = ref.permute(ref.softmax(ref.permute(x, [0, 2, 1])), [0, 2, 1]);
      expectClose(rt.softmax(fromNd(x), 1), moved, 2e-6, 1e-8);
    });
  });

  it('layer norm with and without affine', () => {
    const x = rng.nd([2, 7, 48], 2);
    const w = rng.nd([48]),
      b = rng.nd([48]);
    rt.tidy(() => {
      expectClose(rt.layerNorm(fromNd(x), fromNd(w), fromNd(b), 1e-6), ref.layerNorm(x, w, b, 1e-6), 2e-6, 2e-6);
      expectClose(rt.layerNorm(fromNd(x), null, null, 1e-5), ref.layerNorm(x, null, null, 1e-5), 2e-6, 2e-6);
      expect(() => rt.layerNorm(fromNd(x), rt.zeros([47]))).toThrow(/layerNorm: weight must have shape \(48,\), got \(47,\)/);
    });
  });

  it('RMS norm with and without weight', () => {
    const x = rng.nd([5, 64], 2);
    const w = rng.nd([64]);
    rt.tidy(() => {
      expectClose(rt.rmsNorm(fromNd(x), fromNd(w), 1e-6), ref.rmsNorm(x, w, 1e-6), 2e-6, 2e-6);
      expectClose(rt.rmsNorm(fromNd(x).transpose(0, 1).contiguous().transpose(0, 1)), ref.rmsNorm(x, null, 1e-6), 2e-6, 2e-6);
    });
  });

  it('group norm of (N, C, H, W)', () => {
    const x = rng.nd([2, 12, 5, 7], 2);
    const w = rng.nd([12]),
      b = rng.nd([12]);
    rt.tidy(() => {
      expectClose(rt.groupNorm(fromNd(x), 4, fromNd(w), fromNd(b), 1e-6), ref.groupNorm(x, 4, w, b, 1e-6), 2e-6, 2e-6);
      expectClose(rt.groupNorm(fromNd(x), 12), ref.groupNorm(x, 12, null, null, 1e-5), 2e-6, 2e-6);
      expect(() => rt.groupNorm(fromNd(x), 5)).toThrow(/groupNorm: groups \(5\) must divide the 12 channels/);
    });
  });
});
