import { spawnSync } from 'node:child_process';

import { afterAll, describe, expect, it } from 'vitest';

import * as rt from '../src/index.js';
import { expectClose, fromNd, rngFor } from './helpers.js';
import * as ref from './reference.js';

const rng = rngFor('linalg');

// Float32 sums of k products of unit-normal values: the error grows like sqrt(k).
const dotTol = (k: number): [number, number] => [1e-5, 2e-6 * Math.sqrt(k) * 4];

const backends = (['blas', 'builtin'] as const).filter((b) => b === 'builtin' || rt.devices().cpu.blasLoaded);
const detected = rt.devices().cpu.detectedIsa;
// Every level up to the detected one, highest first (avx512bf16 runs the float32 GEMM's AVX-512 code).
const isas = rt.CPU_ISAS.slice(0, rt.CPU_ISAS.indexOf(detected) + 1).reverse();

afterAll(() => {
  rt.setGemmBackend(backends[0]);
  rt.setCpuIsa(detected);
});

// Each GEMM path is tested: the BLAS, and the built-in kernel at every ISA the CPU has.
const paths = [
  ...backends.filter((b) => b === 'blas').map((b) => ({ name: 'blas', backend: b, isa: detected })),
  ...isas.map((isa) => ({ name: `builtin/${isa}`, backend: 'builtin' as const, isa })),
];

describe.each(paths)('GEMM through $name', ({ backend, isa }) => {
  const use = () => {
    rt.setGemmBackend(backend);
    rt.setCpuIsa(isa);
  };

  it('linear over odd sizes, with and without bias, and a transposed weight view', () => {
    use();
    // Sizes straddle the micro-kernel tiles and the 256-deep / 192-row packing blocks.
    for (const [rows, k, n] of [
      [1, 1, 1],
      [7, 13, 33],
      [200, 300, 70],
      [3, 5, 3100],
      [64, 257, 48],
    ]) {
      const x = rng.nd([rows, k]),
        w = rng.nd([n, k]),
        b = rng.nd([n]);
      const [rtol, atol] = dotTol(k);
      rt.tidy(() => {
        expectClose(rt.linear(fromNd(x), fromNd(w), fromNd(b)), ref.linear(x, w, b), rtol, atol);
        const wt = fromNd(ref.permute(w, [1, 0])).transpose(0, 1); // (n, k) view of a (k, n) buffer
        expectClose(rt.linear(fromNd(x), wt), ref.linear(x, w, null), rtol, atol);
      });
    }
  });

  it('linear over leading batch dimensions', () => {
    use();
    const x = rng.nd([2, 3, 5, 24]),
      w = rng.nd([16, 24]),
      b = rng.nd([16]);
    rt.tidy(() => expectClose(rt.linear(fromNd(x), fromNd(w), fromNd(b)), ref.linear(x, w, b), ...dotTol(24)));
  });

  it('matmul with broadcast batches, transposed operands and vectors', () => {
    use();
    rt.tidy(() => {
      const a = rng.nd([4, 1, 9, 20]),
        b = rng.nd([3, 20, 11]);
      expectClose(rt.matmul(fromNd(a), fromNd(b)), ref.matmul(a, b), ...dotTol(20));
      // A transposed on both operands: (B, k, m)^T x (B, n, k)^T
      const at = rng.nd([5, 20, 9]),
        bt = rng.nd([5, 11, 20]);
      const got = rt.matmul(fromNd(at).transpose(1, 2), fromNd(bt).transpose(1, 2));
      expectClose(got, ref.matmul(ref.permute(at, [0, 2, 1]), ref.permute(bt, [0, 2, 1])), ...dotTol(20));
      // Many small products run as one batch per task.
      const sa = rng.nd([64, 4, 8]),
        sb = rng.nd([64, 8, 4]);
      expectClose(rt.matmul(fromNd(sa), fromNd(sb)), ref.matmul(sa, sb), ...dotTol(8));
      // 1-D operands follow NumPy: (k) x (k, n) -> (n); (m, k) x (k) -> (m).
      const v = rng.nd([20]),
        m2 = rng.nd([20, 6]);
      expectClose(rt.matmul(fromNd(v), fromNd(m2)), new ref.Nd([6], ref.matmul(new ref.Nd([1, 20], v.data), m2).data), ...dotTol(20));
      expectClose(
        rt.matmul(fromNd(ref.permute(m2, [1, 0])), fromNd(v)),
        new ref.Nd([6], ref.matmul(ref.permute(m2, [1, 0]), new ref.Nd([20, 1], v.data)).data),
        ...dotTol(20),
      );
    });
  });

  it('attention through the same GEMM path', () => {
    use();
    const q = rng.nd([2, 4, 37, 16]),
      k = rng.nd([2, 4, 45, 16]),
      v = rng.nd([2, 4, 45, 24]);
    rt.tidy(() => expectClose(rt.attention(fromNd(q), fromNd(k), fromNd(v)), ref.attention(q, k, v, null), 1e-5, 2e-6));
  });
});

describe('without OpenBLAS', () => {
  it('the addon still loads, falls back to the built-in GEMM and says why', () => {
    // DITCACHE_BLAS_PATH makes the runtime look only there: a missing file is a machine without OpenBLAS.
    const script = `
      const rt = await import(${JSON.stringify(new URL('../dist/src/index.js', import.meta.url).href)});
      const cpu = rt.devices().cpu;
      const a = rt.tensor([1, 2, 3, 4], [2, 2]);
      let refused = '';
      try { rt.setGemmBackend('blas'); } catch (e) { refused = e.message; }
      console.log(JSON.stringify({ loaded: cpu.blasLoaded, gemm: cpu.gemm, blas: cpu.blas, product: Array.from(rt.matmul(a, a).toFloat32Array()), refused }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf-8',
      env: { ...process.env, DITCACHE_BLAS_PATH: '/nonexistent/libopenblas.so.0' },
    });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { loaded: boolean; gemm: string; blas: string; product: number[]; refused: string };
    expect(out).toMatchObject({ loaded: false, gemm: 'builtin', product: [7, 10, 15, 22] });
    expect(out.blas).toMatch(/^none: no OpenBLAS found \(tried \/nonexistent\/libopenblas.so.0/);
    expect(out.refused).toMatch(/setGemmBackend: no BLAS is loaded/);
  });
});

describe('products: validation', () => {
  it('names the op and the shapes', () => {
    rt.tidy(() => {
      expect(() => rt.linear(rt.zeros([2, 3]), rt.zeros([4, 5]))).toThrow(/linear: input \(2, 3\) has 3 features but weight \(4, 5\) expects 5/);
      expect(() => rt.linear(rt.zeros([2, 3]), rt.zeros([3]))).toThrow(/linear: weight must be 2-D \(out, in\), got \(3,\)/);
      expect(() => rt.matmul(rt.zeros([2, 3]), rt.zeros([4, 5]))).toThrow(/matmul: shapes \(2, 3\) and \(4, 5\) cannot be multiplied/);
      expect(() => rt.matmul(rt.zeros([2, 2, 3]), rt.zeros([3, 3, 5]))).toThrow(/matmul: shapes \(2,\) and \(3,\) do not broadcast/);
    });
  });
});

describe('attention', () => {
  it('with an additive mask, grouped-query heads and a non-default scale', () => {
    const q = rng.nd([2, 6, 9, 8]),
      k = rng.nd([2, 3, 12, 8]),
      v = rng.nd([2, 3, 12, 5]);
    // A per-(batch, key) mask that blocks some keys, broadcast over heads and queries.
    const mask = new ref.Nd(
      [2, 1, 1, 12],
      Array.from({ length: 24 }, (_, i) => (i % 5 === 3 ? -Infinity : Math.fround(0.1 * (i % 7)))),
    );
    rt.tidy(() => {
      const got = rt.attention(fromNd(q), fromNd(k), fromNd(v), { mask: fromNd(mask), scale: 0.3 });
      expectClose(got, ref.attention(q, k, v, mask, 0.3), 1e-5, 2e-6);
    });
  });

  it('reads (batch, seq, heads, dim) views in place and can return heads-last output', () => {
    const [B, S, H, D] = [2, 19, 3, 16];
    const qs = rng.nd([B, S, H, D]),
      ks = rng.nd([B, S, H, D]),
      vs = rng.nd([B, S, H, D]);
    rt.tidy(() => {
      const view = (x: ref.Nd) => fromNd(x).transpose(1, 2);
      const want = ref.attention(ref.permute(qs, [0, 2, 1, 3]), ref.permute(ks, [0, 2, 1, 3]), ref.permute(vs, [0, 2, 1, 3]), null);
      expectClose(rt.attention(view(qs), view(ks), view(vs)), want, 1e-5, 2e-6);
      const hl = rt.attention(view(qs), view(ks), view(vs), { headsLast: true });
      expectClose(hl, ref.permute(want, [0, 2, 1, 3]), 1e-5, 2e-6);
    });
  });

  it('rejects mismatched shapes', () => {
    rt.tidy(() => {
      expect(() => rt.attention(rt.zeros([1, 2, 3, 4]), rt.zeros([1, 2, 3, 5]), rt.zeros([1, 2, 3, 4]))).toThrow(
        /attention: query dim 4 differs from key dim 5/,
      );
      expect(() => rt.attention(rt.zeros([1, 3, 3, 4]), rt.zeros([1, 2, 3, 4]), rt.zeros([1, 2, 3, 4]))).toThrow(
        /query heads \(3\) must be a multiple of key heads \(2\)/,
      );
      expect(() => rt.attention(rt.zeros([1, 2, 3, 4]), rt.zeros([1, 2, 3, 4]), rt.zeros([1, 2, 3, 4]), { mask: rt.zeros([2, 3]) })).toThrow(
        /attention: shapes \(2, 3\) and \(1, 2, 3, 3\) do not broadcast/,
      );
    });
  });
});

describe('convolution, resampling, embedding', () => {
  const configs: { name: string; x: number[]; w: number[]; stride: [number, number]; padding: [number, number]; dilation: [number, number]; groups: number }[] =
    [
      { name: '3x3 same padding', x: [2, 5, 9, 11], w: [7, 5, 3, 3], stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1 },
      { name: 'strided, asymmetric kernel', x: [1, 4, 10, 9], w: [6, 4, 3, 2], stride: [2, 3], padding: [0, 1], dilation: [1, 1], groups: 1 },
      { name: 'dilated', x: [1, 3, 12, 12], w: [4, 3, 3, 3], stride: [1, 1], padding: [2, 2], dilation: [2, 2], groups: 1 },
      { name: 'grouped', x: [2, 6, 7, 7], w: [9, 2, 3, 3], stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 3 },
      { name: 'pointwise 1x1', x: [2, 8, 5, 6], w: [3, 8, 1, 1], stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 },
    ];
  for (const c of configs) {
    it(`conv2d ${c.name}`, () => {
      const x = rng.nd(c.x),
        w = rng.nd(c.w),
        b = rng.nd([c.w[0]]);
      rt.tidy(() => {
        const got = rt.conv2d(fromNd(x), fromNd(w), fromNd(b), { stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups });
        expectClose(got, ref.conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups), ...dotTol(c.w[1] * c.w[2] * c.w[3]));
      });
    });
  }

  it('conv2d names what does not fit', () => {
    rt.tidy(() => {
      expect(() => rt.conv2d(rt.zeros([1, 3, 4, 4]), rt.zeros([2, 4, 3, 3]))).toThrow(
        /conv2d: weight \(2, 4, 3, 3\) expects 4 input channels per group, input \(1, 3, 4, 4\) has 3/,
      );
      expect(() => rt.conv2d(rt.zeros([1, 3, 2, 2]), rt.zeros([2, 3, 3, 3]))).toThrow(/conv2d: kernel \(2, 3, 3, 3\) does not fit the padded input/);
    });
  });

  it('conv3d: causal-style time kernel, strides, padding, dilation and groups', () => {
    const cases: {
      x: number[];
      w: number[];
      stride: [number, number, number];
      padding: [number, number, number];
      dilation: [number, number, number];
      groups: number;
    }[] = [
      { x: [1, 3, 5, 6, 7], w: [4, 3, 3, 3, 3], stride: [1, 1, 1], padding: [1, 1, 1], dilation: [1, 1, 1], groups: 1 },
      { x: [2, 4, 3, 8, 6], w: [6, 2, 1, 2, 2], stride: [1, 2, 2], padding: [0, 0, 0], dilation: [1, 1, 1], groups: 2 },
      { x: [1, 2, 6, 5, 5], w: [3, 2, 2, 3, 1], stride: [2, 1, 1], padding: [1, 2, 0], dilation: [2, 1, 1], groups: 1 },
    ];
    for (const c of cases) {
      const x = rng.nd(c.x),
        w = rng.nd(c.w),
        b = rng.nd([c.w[0]]);
      rt.tidy(() => {
        const got = rt.conv3d(fromNd(x), fromNd(w), fromNd(b), { stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups });
        expectClose(got, ref.conv3d(x, w, b, c.stride, c.padding, c.dilation, c.groups), ...dotTol(c.w.slice(1).reduce((p, q) => p * q, 1)));
      });
    }
    rt.tidy(() => {
      expect(() => rt.conv3d(rt.zeros([1, 2, 3, 4]), rt.zeros([1, 2, 1, 1, 1]))).toThrow(/conv3d: input must be 5-D \(N, C, D, H, W\), got \(1, 2, 3, 4\)/);
    });
  });

  it('topk in rank order along any dimension, ties by index, NaN first', () => {
    const x = rng.nd([5, 4, 9]);
    rt.tidy(() => {
      for (const [dim, largest] of [
        [-1, true],
        [-1, false],
        [1, true],
      ] as const) {
        const { values, indices } = rt.topk(fromNd(x), 3, { dim, largest });
        const moved = dim === 1 ? ref.permute(x, [0, 2, 1]) : x;
        const n = moved.shape[2];
        const want = new ref.Nd([moved.shape[0], moved.shape[1], 3]);
        const wantIdx: number[] = [];
        for (let r = 0; r < moved.size / n; ++r) {
          const row = Array.from(moved.data.subarray(r * n, r * n + n)).map((v, i) => [v, i]);
          row.sort((a, b) => (largest ? b[0] - a[0] : a[0] - b[0]) || a[1] - b[1]);
          row.slice(0, 3).forEach(([v, i], j) => {
            want.data[r * 3 + j] = v;
            wantIdx.push(i);
          });
        }
        const wantT = dim === 1 ? ref.permute(want, [0, 2, 1]) : want;
        const idxT = dim === 1 ? ref.permute(new ref.Nd(want.shape, wantIdx), [0, 2, 1]) : new ref.Nd(want.shape, wantIdx);
        expectClose(values, wantT, 0, 0);
        expect(Array.from(indices.toInt32Array())).toEqual(Array.from(idxT.data));
      }
      const { values, indices } = rt.topk(rt.tensor([1, NaN, 3, 3, -1]), 3);
      expect(Array.from(values.toFloat32Array())).toEqual([NaN, 3, 3]);
      expect(Array.from(indices.toInt32Array())).toEqual([1, 2, 3]);
      expect(() => rt.topk(rt.zeros([2, 3]), 4)).toThrow(/topk: k = 4 is outside \[0, 3\] for dimension -1 of \(2, 3\)/);
    });
  });

  it('nearest upsampling by integer and fractional factors follows PyTorch', () => {
    const x = rng.nd([2, 3, 4, 5]);
    rt.tidy(() => {
      const up = rt.upsampleNearest2d(fromNd(x), { scale: 2 });
      const want = new ref.Nd([2, 3, 8, 10]);
      for (let i = 0; i < want.size; ++i) {
        const [n, c, y, xx] = ref.unravel(i, want.shape);
        want.data[i] = x.at(n, c, y >> 1, xx >> 1);
      }
      expectClose(up, want, 0, 0);
      const odd = rt.upsampleNearest2d(fromNd(x), { size: [7, 3] });
      const want2 = new ref.Nd([2, 3, 7, 3]);
      for (let i = 0; i < want2.size; ++i) {
        const [n, c, y, xx] = ref.unravel(i, want2.shape);
        want2.data[i] = x.at(n, c, Math.min(Math.floor(y * Math.fround(4 / 7)), 3), Math.min(Math.floor(xx * Math.fround(5 / 3)), 4));
      }
      expectClose(odd, want2, 0, 0);
    });
  });

  it('embedding gathers rows and rejects out-of-range indices', () => {
    const w = rng.nd([10, 6]);
    rt.tidy(() => {
      const idx = rt.tensor(new Int32Array([3, 0, 9, 3, 7, 1]), [2, 3]);
      const got = rt.embedding(fromNd(w), idx);
      const want = new ref.Nd([2, 3, 6]);
      [3, 0, 9, 3, 7, 1].forEach((r, i) => want.data.set(w.data.subarray(r * 6, r * 6 + 6), i * 6));
      expectClose(got, want, 0, 0);
      expect(() => rt.embedding(fromNd(w), rt.tensor(new Int32Array([1, 10])))).toThrow(/embedding: 1 of 2 indices lie outside \[0, 10\)/);
      expect(() => rt.embedding(fromNd(w), rt.tensor([1, 2]))).toThrow(/embedding: indices must be int32/);
    });
  });
});
