import { expect } from 'vitest';

import type { Tensor } from '@ditcache/cuda-runtime';

export const goldens = new URL('../../../testdata/goldens/', import.meta.url).pathname;

/** ||actual - expected||_2 / ||expected||_2, accumulated in float64. */
export function relativeL2(actual: Tensor, expected: Tensor): number {
  expect([...actual.shape]).toEqual([...expected.shape]);
  return relativeL2Values(actual.toFloat32Array(), expected.toFloat32Array());
}

export function relativeL2Values(a: Float32Array, e: Float32Array): number {
  expect(a.length).toBe(e.length);
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < a.length; ++i) {
    diff += (a[i] - e[i]) ** 2;
    norm += e[i] ** 2;
  }
  return Math.sqrt(diff) / Math.sqrt(norm);
}
