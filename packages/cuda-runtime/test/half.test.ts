// 16-bit compute: bfloat16 / float16 products and attention against float64 references on the
// same (16-bit-rounded) inputs, on every CPU path (AVX512-BF16 dot products where the CPU has
// them, the widen-to-float32 path at every lower ISA, both float32 GEMM backends under it).
// A 16-bit result is one rounding of the float32 sum, so its error against the exact value is
// bounded by half a 16-bit ulp plus the float32 sum's own error.
import { afterAll, describe, expect, it } from 'vitest';

import * as rt from '../src/index.js';
import { rngFor } from './helpers.js';
import { Nd } from './reference.js';
import * as ref from './reference.js';

const rng = rngFor('half');
const detected = rt.devices().cpu.detectedIsa;
const initialBackend = rt.gemmBackend();
const initialHalfBackend = rt.halfGemmBackend();
afterAll(() => {
  rt.setCpuIsa(detected);
  rt.setGemmBackend(initialBackend);
  rt.setHalfGemmBackend(initialHalfBackend);
});

type Half = 'bfloat16' | 'float16';
// Largest relative size of half an ulp: 2^-8 for bfloat16 (8 significant bits), 2^-11 for float16 (11).
const HALF_ULP: Record<Half, number> = { bfloat16: 2 ** -8, float16: 2 ** -11 };

/** The values `x` takes once rounded to `dtype`, as a float64 reference array and a tensor. */
function rounded(x: Nd, dtype: Half): { nd: Nd; t: rt.Tensor } {
  const t = rt.tensor(x.f32(), x.shape).cast(dtype);
  return { nd: new Nd(x.shape, Float64Array.from(t.toFloat32Array())), t };
}

/** |got - want| <= half an ulp of |want| plus `slack` (what the float32 arithmetic before the rounding may add). */
function expectRounded(got: rt.Tensor, want: Nd, dtype: Half, slack: Nd): void {
  expect([...got.shape]).toEqual(want.shape);
  const g = got.toFloat32Array();
  for (let i = 0; i < g.length; ++i) {
    const bound = HALF_ULP[dtype] * Math.abs(want.data[i]) * 1.0001 + slack.data[i];
    if (!(Math.abs(g[i] - want.data[i]) <= bound)) {
      expect.fail(`element ${i}: got ${g[i]}, expected ${want.data[i]} within ${bound} (${dtype})`);
    }
  }
}

// A float32 accumulation's error: a small multiple of the sum of |products| per output.
const sumSlack = (absSums: Nd): Nd => absSums.map((v) => 1e-5 * v);
const absLinear = (x: Nd, w: Nd): Nd => sumSlack(ref.linear(x.map(Math.abs), w.map(Math.abs), null));

const isas = rt.CPU_ISAS.slice(0, rt.CPU_ISAS.indexOf(detected) + 1).reverse();
// The built-in kernels at every ISA over each float32 backend (the widening path uses it), and
// oneDNN where it loads (.ci/run installs it, so CI always runs that path too).
const paths = [
  ...isas.flatMap((isa) =>
    (['blas', 'builtin'] as const)
      .filter((b) => b === 'builtin' || rt.devices().cpu.blasLoaded)
      .map((backend) => ({ name: `${isa} over ${backend}`, isa, backend, half: 'builtin' as const })),
  ),
  ...(rt.devices().cpu.onednnLoaded ? [{ name: 'oneDNN', isa: detected, backend: initialBackend, half: 'onednn' as const }] : []),
];

describe.each(paths)('16-bit products: $name', ({ isa, backend, half }) => {
  const use = () => {
    rt.setCpuIsa(isa);
    rt.setGemmBackend(backend);
    rt.setHalfGemmBackend(half);
  };

  it.each(['bfloat16', 'float16'] as const)('linear in %s: odd sizes, bias, a transposed weight view, one row', (dtype) => {
    use();
    // Sizes straddle the 14 x 32 tile, the 98-row and 1024-deep blocks, odd depths (a half-empty pair) and one-row products.
    for (const [rows, k, n] of [
      [1, 1, 1],
      [1, 77, 45],
      [7, 13, 33],
      [37, 1031, 70],
      [3, 5, 3100],
      [25, 64, 64],
      [110, 1030, 20],
    ]) {
      rt.tidy(() => {
        const x = rounded(rng.nd([rows, k]), dtype),
          w = rounded(rng.nd([n, k]), dtype),
          b = rounded(rng.nd([n]), dtype);
        const y = rt.linear(x.t, w.t, b.t);
        expect(y.dtype).toBe(dtype);
        expectRounded(y, ref.linear(x.nd, w.nd, b.nd), dtype, absLinear(x.nd, w.nd));
        const wt = rt
          .tensor(ref.permute(w.nd, [1, 0]).f32(), [k, n])
          .cast(dtype)
          .transpose(0, 1);
        expectRounded(rt.linear(x.t, wt), ref.linear(x.nd, w.nd, null), dtype, absLinear(x.nd, w.nd));
      });
    }
  });

  it.each(['bfloat16', 'float16'] as const)('batched matmul in %s with transposed and broadcast operands', (dtype) => {
    use();
    rt.tidy(() => {
      const a = rounded(rng.nd([3, 1, 21, 67]), dtype),
        b = rounded(rng.nd([2, 67, 40]), dtype);
      const want = ref.matmul(a.nd, b.nd),
        scale = sumSlack(ref.matmul(a.nd.map(Math.abs), b.nd.map(Math.abs)));
      expectRounded(rt.matmul(a.t, b.t), want, dtype, scale);
      // (k, m)^T and (n, k)^T views read in place.
      const at = rt
        .tensor(ref.permute(a.nd, [0, 1, 3, 2]).f32(), [3, 1, 67, 21])
        .cast(dtype)
        .transpose(-1, -2);
      const bt = rt
        .tensor(ref.permute(b.nd, [0, 2, 1]).f32(), [2, 40, 67])
        .cast(dtype)
        .transpose(-1, -2);
      expectRounded(rt.matmul(at, bt), want, dtype, scale);
    });
  });
});

describe('16-bit attention', () => {
  afterAll(() => rt.setCpuIsa(detected));

  // PyTorch's CPU flash attention for 16-bit inputs: float32 scores and softmax, probabilities
  // exp(s - max) rounded to the 16-bit dtype before the product with V, then divided by the
  // float32 row sum. Modelled here in float64 with that one rounding. A probability whose float32
  // score rounds to the other side of a 16-bit rounding boundary moves by an ulp, so `spread`
  // (sum of p |v| / sum) bounds what such flips can add.
  function reference(q: Nd, k: Nd, v: Nd, dtype: Half): { out: Nd; spread: Nd } {
    const [B, H, S, D] = q.shape,
      Sk = k.shape[2],
      Dv = v.shape[3];
    const out = new Nd([B, H, S, Dv]),
      spread = new Nd([B, H, S, Dv]);
    const round = (x: number) => rt.tensor([x]).cast(dtype).item();
    const softmaxScale = 1 / Math.sqrt(D);
    for (let b = 0; b < B; ++b)
      for (let h = 0; h < H; ++h)
        for (let i = 0; i < S; ++i) {
          const s = Array.from({ length: Sk }, (_, j) => {
            let acc = 0;
            for (let d = 0; d < D; ++d) acc += q.at(b, h, i, d) * k.at(b, h, j, d);
            return acc * softmaxScale;
          });
          const mx = Math.max(...s);
          const e = s.map((x) => Math.exp(x - mx));
          const sum = e.reduce((x, y) => x + y, 0);
          const p = e.map(round);
          for (let c = 0; c < Dv; ++c) {
            let acc = 0,
              abs = 0;
            for (let j = 0; j < Sk; ++j) {
              acc += p[j] * v.at(b, h, j, c);
              abs += p[j] * Math.abs(v.at(b, h, j, c));
            }
            out.data[((b * H + h) * S + i) * Dv + c] = acc / sum;
            spread.data[((b * H + h) * S + i) * Dv + c] = abs / sum;
          }
        }
    return { out, spread };
  }

  it.each(isas.flatMap((isa) => (['bfloat16', 'float16'] as const).map((dtype) => ({ isa, dtype }))))(
    '$dtype at $isa: (B, S, H, D) views in, heads-last out, as the transformers call it',
    ({ isa, dtype }) => {
      rt.setCpuIsa(isa);
      rt.tidy(() => {
        // 150 queries: two query blocks; 70 keys: an odd tile; head dim 40.
        const [B, H, S, Sk, D] = [2, 3, 150, 70, 40];
        const q = rounded(rng.nd([B, S, H, D]), dtype),
          k = rounded(rng.nd([B, Sk, H, D]), dtype),
          v = rounded(rng.nd([B, Sk, H, D]), dtype);
        const bhsd = (x: Nd) => ref.permute(x, [0, 2, 1, 3]);
        const r = reference(bhsd(q.nd), bhsd(k.nd), bhsd(v.nd), dtype);
        const want = ref.permute(r.out, [0, 2, 1, 3]),
          spread = ref.permute(r.spread, [0, 2, 1, 3]);
        const got = rt.attention(q.t.permute([0, 2, 1, 3]), k.t.permute([0, 2, 1, 3]), v.t.permute([0, 2, 1, 3]), { headsLast: true });
        expect(got.dtype).toBe(dtype);
        // A flipped probability moves the output by at most an ulp of p times |v|, over the sum.
        expectRounded(
          got,
          want,
          dtype,
          spread.map((x) => x * (2 * HALF_ULP[dtype] + 1e-5)),
        );
      });
    },
  );
});

describe('16-bit conversions', () => {
  it.each(isas)('round to nearest even, NaN and infinities, subnormals, at %s', (isa) => {
    rt.setCpuIsa(isa);
    // 33 values: a full 16-lane vector twice and a scalar tail.
    const values = [1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -9, -2.5, 65504, 65520, 1e-40, -1e-45, 3.4e38, NaN, Infinity, -Infinity, 0, -0];
    const data = Float32Array.from({ length: 33 }, (_, i) => values[i % values.length] * (i >= values.length ? 1.5 : 1));
    const x = rt.tensor(data);
    const reference = (dtype: Half) => {
      const scalarPath = rt.tensor(data).cast(dtype); // contiguous: the vector path; check against single elements
      return Array.from(data, (v) => rt.tensor([v]).cast(dtype).toFloat32Array()[0]).map((v, i) => [v, scalarPath.toFloat32Array()[i]]);
    };
    for (const dtype of ['bfloat16', 'float16'] as const) {
      const got = x.cast(dtype).toFloat32Array();
      const pairs = reference(dtype);
      got.forEach((g, i) => expect(Object.is(g, pairs[i][0]) || (Number.isNaN(g) && Number.isNaN(pairs[i][0]))).toBe(true));
      // Exact expectations that do not depend on the runtime at all.
      const bf = (v: number) => x.cast('bfloat16').toFloat32Array()[data.indexOf(v)];
      if (dtype === 'bfloat16') {
        expect(bf(1 + 2 ** -9)).toBe(1); // a tie rounds to even
        expect(bf(1 + 3 * 2 ** -8)).toBe(1 + 2 ** -6); // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: rounds to even (up)
      } else {
        expect(got[data.indexOf(65520)]).toBe(Infinity); // 65520 rounds past the largest float16
        expect(got[data.indexOf(65504)]).toBe(65504);
      }
    }
  });
});
