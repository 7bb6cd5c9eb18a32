import { describe, expect, it } from 'vitest';

import { sinusoidalTimestepEmbedding } from '../src/index.js';

/** get_timestep_embedding in float64. */
function reference(t: number, dim: number, flip: boolean, shift: number): number[] {
  const half = Math.floor(dim / 2);
  const args = Array.from({ length: half }, (_, i) => t * Math.exp((-Math.log(10000) * i) / (half - shift)));
  const [first, second] = flip ? [args.map(Math.cos), args.map(Math.sin)] : [args.map(Math.sin), args.map(Math.cos)];
  return [...first, ...second, ...(dim % 2 ? [0] : [])];
}

describe('sinusoidalTimestepEmbedding', () => {
  it.each([
    [true, 0, 256],
    [false, 1, 32],
    [true, 0, 7],
  ])('matches float64 math (flip %s, shift %s, dim %s) to float32 rounding of the phase', (flip, shift, dim) => {
    const timesteps = [0, 1, 37.5, 500, 999];
    using emb = sinusoidalTimestepEmbedding(timesteps, dim, { flipSinToCos: flip, downscaleFreqShift: shift });
    expect([...emb.shape]).toEqual([timesteps.length, dim]);
    const values = emb.toFloat32Array();
    timesteps.forEach((t, n) => {
      const expected = reference(t, dim, flip, shift);
      // The phase t * freq is a float32 product, as in torch: off by up to an ulp of t.
      const tolerance = 2 * 2 ** -23 * Math.max(t, 1) + 1e-7;
      expected.forEach((v, i) => expect(Math.abs(values[n * dim + i] - v)).toBeLessThanOrEqual(tolerance));
    });
  });
});
