// FasterCache's low-pass of (H, W) planes against a float64 reference written the way FasterCache
// states it: a full 2D DFT, the spectrum fftshifted, a disc of radius min(H, W) // 5 around
// (W // 2, H // 2) kept, shifted back and inverted. Even, odd and prime sides, square and not.
import { describe, expect, it } from 'vitest';

import { lowFrequencyRadius, lowPassPlanes } from '../src/frequency-split.js';

/** One plane's low band by the full DFT with the mask on the fftshifted spectrum. */
function referenceLowPass(plane: Float64Array, h: number, w: number): Float64Array {
  const re = new Float64Array(h * w);
  const im = new Float64Array(h * w);
  for (let ky = 0; ky < h; ky++)
    for (let kx = 0; kx < w; kx++)
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++) {
          const a = -2 * Math.PI * ((ky * y) / h + (kx * x) / w);
          re[ky * w + kx] += plane[y * w + x] * Math.cos(a);
          im[ky * w + kx] += plane[y * w + x] * Math.sin(a);
        }
  // fftshift moves frequency index k to (k + n // 2) mod n; the mask is a disc around the centre there.
  const r = Math.floor(Math.min(h, w) / 5);
  const keep = (ky: number, kx: number) => {
    const sy = (ky + Math.floor(h / 2)) % h;
    const sx = (kx + Math.floor(w / 2)) % w;
    return (sx - Math.floor(w / 2)) ** 2 + (sy - Math.floor(h / 2)) ** 2 <= r * r;
  };
  const out = new Float64Array(h * w);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      let sum = 0;
      for (let ky = 0; ky < h; ky++)
        for (let kx = 0; kx < w; kx++) {
          if (!keep(ky, kx)) continue;
          const a = 2 * Math.PI * ((ky * y) / h + (kx * x) / w);
          sum += re[ky * w + kx] * Math.cos(a) - im[ky * w + kx] * Math.sin(a);
        }
      out[y * w + x] = sum / (h * w);
    }
  return out;
}

function randomValues(n: number, seed: number): Float64Array {
  let s = seed;
  return Float64Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 1073741824 - 1;
  });
}

describe('lowPassPlanes (FasterCache low band)', () => {
  it.each([
    [4, 6],
    [10, 10],
    [11, 13],
    [12, 7],
    [16, 20],
    [5, 17],
  ])('equals the full DFT with the fftshifted disc mask on %ix%i planes', (h, w) => {
    const planes = 3;
    const values = randomValues(planes * h * w, h * 31 + w);
    const got = lowPassPlanes(values, h, w);
    for (let p = 0; p < planes; p++) {
      const want = referenceLowPass(values.subarray(p * h * w, (p + 1) * h * w), h, w);
      for (let i = 0; i < h * w; i++) expect(Math.abs(got[p * h * w + i] - want[i])).toBeLessThan(1e-12);
    }
  });

  it('keeps only the mean where the radius is 0, and a constant plane whole', () => {
    expect(lowFrequencyRadius(4, 6)).toBe(0);
    expect(lowFrequencyRadius(10, 12)).toBe(2);
    const values = Float64Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(Array.from(lowPassPlanes(values, 2, 4))).toEqual(Array(8).fill(4.5));
    const flat = new Float64Array(100).fill(2.5);
    for (const v of lowPassPlanes(flat, 10, 10)) expect(v).toBeCloseTo(2.5, 12);
  });

  it('names the shape when the values are not whole planes', () => {
    expect(() => lowPassPlanes(new Float64Array(7), 2, 3)).toThrow(/7 values are not whole 2x3 planes/);
  });
});
