// The one modulate() and gatedResidual() every DiT block uses, against the formulas in float64,
// in both of their forms: the model's dtype throughout, and float32 rounded once (Wan's).
import { describe, expect, it } from 'vitest';

import { tensor } from '@ditcache/cuda-runtime';

import { gatedResidual, modulate } from '../src/index.js';

const [B, T, D] = [2, 3, 8];
function values(n: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}
const x = values(B * T * D, 1).map((v) => 3 * v + 0.5);
const scale = values(B * D, 2);
const shift = values(B * D, 3);

/** LayerNorm(x) (1 + scale) + shift in float64, eps 1e-6, scale and shift per batch row. */
function modulated(): number[] {
  const out: number[] = [];
  for (let b = 0; b < B; ++b)
    for (let t = 0; t < T; ++t) {
      const row = x.slice((b * T + t) * D, (b * T + t + 1) * D);
      const mean = row.reduce((a, v) => a + v, 0) / D;
      const variance = row.reduce((a, v) => a + (v - mean) ** 2, 0) / D;
      row.forEach((v, d) => out.push(((v - mean) / Math.sqrt(variance + 1e-6)) * (1 + scale[b * D + d]) + shift[b * D + d]));
    }
  return out;
}

function maxError(got: Float32Array, want: number[]): number {
  return want.reduce((m, w, i) => Math.max(m, Math.abs(got[i] - w)), 0);
}

describe('modulate', () => {
  it('(B, dim) and (B, 1, dim) scale and shift give the float64 formula', () => {
    using input = tensor(x, [B, T, D]);
    using s2 = tensor(scale, [B, D]);
    using h2 = tensor(shift, [B, D]);
    using flat = modulate(input, s2, h2);
    using s3 = s2.reshape(B, 1, D);
    using h3 = h2.reshape(B, 1, D);
    using perToken = modulate(input, s3, h3);
    expect(maxError(flat.toFloat32Array(), modulated())).toBeLessThan(1e-5);
    expect(Array.from(perToken.toFloat32Array())).toEqual(Array.from(flat.toFloat32Array()));
  });

  it("inFloat32 computes in float32 and rounds once to a bfloat16 input's dtype", () => {
    using input = tensor(x, [B, T, D]).cast('bfloat16');
    using s = tensor(scale, [B, 1, D]);
    using h = tensor(shift, [B, 1, D]);
    using once = modulate(input, s, h, { inFloat32: true });
    using inputF32 = input.cast('float32');
    using reference = modulate(inputF32, s, h);
    using rounded = reference.cast('bfloat16');
    expect(once.dtype).toBe('bfloat16');
    expect(Array.from(once.toFloat32Array())).toEqual(Array.from(rounded.toFloat32Array()));
  });
});

describe('gatedResidual', () => {
  it('is x + gate * update with the gate broadcast over the tokens, in float32 when asked', () => {
    const update = values(B * T * D, 4);
    using input = tensor(x, [B, T, D]);
    using gate = tensor(scale, [B, D]);
    using u = tensor(update, [B, T, D]);
    using out = gatedResidual(input, gate, u);
    const want = x.map((v, i) => v + scale[Math.floor(i / (T * D)) * D + (i % D)] * update[i]);
    expect(maxError(out.toFloat32Array(), want)).toBeLessThan(1e-5);

    using x16 = input.cast('bfloat16');
    using u16 = u.cast('bfloat16');
    using once = gatedResidual(x16, gate.reshape(B, 1, D), u16, { inFloat32: true });
    using x16f = x16.cast('float32');
    using u16f = u16.cast('float32');
    using reference = gatedResidual(x16f, gate, u16f);
    using rounded = reference.cast('bfloat16');
    expect(once.dtype).toBe('bfloat16');
    expect(Array.from(once.toFloat32Array())).toEqual(Array.from(rounded.toFloat32Array()));
  });
});
