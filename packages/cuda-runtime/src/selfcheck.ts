// A quick check that this installation computes correctly on this machine: every CPU GEMM path
// against a float64 product, fused kernels against their definitions composed from simpler
// ops, and (when a GPU is present) every CUDA kernel against the CPU.
import { CPU_ISAS, native } from './native.js';
import * as ops from './ops.js';
import { allowTf32, cpuIsa, devices, gemmBackend, setAllowTf32, setCpuIsa, setGemmBackend } from './runtime.js';
import { tidy } from './scope.js';
import type { Device, Tensor } from './tensor.js';

export interface CheckResult {
  name: string;
  /** Largest |got - want| / (1 + |want|) over the elements. */
  error: number;
  tolerance: number;
  ok: boolean;
}

function maxError(got: Float32Array, want: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < got.length; ++i) {
    const e = Math.abs(got[i] - want[i]) / (1 + Math.abs(want[i]));
    worst = Number.isNaN(e) ? Infinity : Math.max(worst, e);
  }
  return worst;
}

function random(shape: number[], seed: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; ++i) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    d[i] = s / 2 ** 32 - 0.5;
  }
  return ops.tensor(d, shape);
}

function float64Product(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; ++i)
    for (let p = 0; p < k; ++p) {
      const av = a[i * k + p];
      for (let j = 0; j < n; ++j) out[i * n + j] += av * b[p * n + j];
    }
  return out;
}

/** Runs the checks; each result says whether its error is within tolerance. */
export function selfCheck(): CheckResult[] {
  const results: CheckResult[] = [];
  const record = (name: string, error: number, tolerance: number) => results.push({ name, error, tolerance, ok: error <= tolerance });
  const report = devices();
  const [backend0, isa0] = [gemmBackend(), cpuIsa()];
  const levels = CPU_ISAS.slice(0, CPU_ISAS.indexOf(report.cpu.detectedIsa) + 1);
  try {
    tidy(() => {
      const [m, k, n] = [67, 301, 45];
      const a = random([m, k], 1),
        b = random([k, n], 2);
      const want = float64Product(a.toFloat32Array(), b.toFloat32Array(), m, k, n);
      const paths = [...(report.cpu.blasLoaded ? [['blas', report.cpu.detectedIsa] as const] : []), ...levels.map((isa) => ['builtin', isa] as const)];
      for (const [backend, isa] of paths) {
        setGemmBackend(backend);
        setCpuIsa(isa);
        record(`cpu gemm (${backend}${backend === 'builtin' ? `, ${isa}` : ''})`, maxError(ops.matmul(a, b).toFloat32Array(), want), 1e-5);
      }
    });
  } finally {
    setGemmBackend(backend0);
    setCpuIsa(isa0);
  }

  // Fused kernels against compositions of simpler ops, on each device present.
  const targets: Device[] = ['cpu', ...(report.cuda.available ? report.cuda.devices.map((d) => d.device as Device) : [])];
  // The float32 checks expect true FP32 products, whatever DITCACHE_CUDA_TF32 asked for.
  const tf32Before = allowTf32();
  setAllowTf32(false);
  for (const device of targets) {
    tidy(() => {
      const on = (t: Tensor) => (device === 'cpu' ? t : t.to(device));
      const q = random([2, 3, 40, 16], 3),
        k = random([2, 3, 52, 16], 4),
        v = random([2, 3, 52, 16], 5);
      const scores = ops.mul(ops.matmul(q, k.transpose(2, 3)), 0.25);
      const composed = ops.matmul(ops.softmax(scores, -1), v);
      record(`${device} attention`, maxError(ops.attention(on(q), on(k), on(v)).toFloat32Array(), composed.toFloat32Array()), 1e-5);
      const x = random([5, 64], 6),
        w = random([64], 7);
      const mean = ops.mean(x, -1, true);
      const centred = ops.sub(x, mean);
      const variance = ops.mean(ops.square(centred), -1, true);
      const ln = ops.mul(ops.mul(centred, ops.rsqrt(ops.add(variance, 1e-6))), w);
      record(`${device} layer norm`, maxError(ops.layerNorm(on(x), on(w), null, 1e-6).toFloat32Array(), ln.toFloat32Array()), 1e-5);
      const rms = ops.mul(ops.mul(x, ops.rsqrt(ops.add(ops.mean(ops.square(x), -1, true), 1e-6))), w);
      record(`${device} rms norm`, maxError(ops.rmsNorm(on(x), on(w), 1e-6).toFloat32Array(), rms.toFloat32Array()), 1e-5);
      const a = random([4, 33], 8),
        b = random([4, 33], 9);
      const rel = ops.meanAbs(ops.sub(a, b)) / ops.meanAbs(a);
      record(`${device} relative L1`, Math.abs(ops.relL1(on(a), on(b)) - rel) / rel, 1e-6);
      if (device !== 'cpu') {
        // Every other CUDA kernel against the CPU on the same inputs.
        const img = random([1, 6, 9, 9], 10),
          kern = random([4, 3, 3, 3], 11);
        const conv = (t: Tensor, kk: Tensor) => ops.conv2d(t, kk, null, { padding: 1, groups: 2 });
        record(`${device} conv2d`, maxError(conv(on(img), on(kern)).toFloat32Array(), conv(img, kern).toFloat32Array()), 1e-5);
        record(`${device} group norm`, maxError(ops.groupNorm(on(img), 3).toFloat32Array(), ops.groupNorm(img, 3).toFloat32Array()), 1e-5);
        const cs = random([40, 16], 12),
          sn = random([40, 16], 13);
        record(`${device} rope`, maxError(ops.rope(on(q), on(cs), on(sn)).toFloat32Array(), ops.rope(q, cs, sn).toFloat32Array()), 1e-6);
        record(`${device} gelu`, maxError(ops.gelu(on(x)).toFloat32Array(), ops.gelu(x).toFloat32Array()), 1e-6);
        record(`${device} broadcast add`, maxError(ops.add(on(x), on(w)).toFloat32Array(), ops.add(x, w).toFloat32Array()), 0);
        record(`${device} float16 cast`, maxError(on(x).cast('float16').toFloat32Array(), x.cast('float16').toFloat32Array()), 0);
        record(`${device} softmax`, maxError(ops.softmax(on(scores)).toFloat32Array(), ops.softmax(scores).toFloat32Array()), 1e-6);
        record(`${device} sum`, maxError(ops.sum(on(img), [1, 3]).toFloat32Array(), ops.sum(img, [1, 3]).toFloat32Array()), 1e-6);
        record(`${device} topk`, maxError(ops.topk(on(a), 5).values.toFloat32Array(), ops.topk(a, 5).values.toFloat32Array()), 0);
        record(
          `${device} upsample`,
          maxError(ops.upsampleNearest2d(on(img), { size: [13, 5] }).toFloat32Array(), ops.upsampleNearest2d(img, { size: [13, 5] }).toFloat32Array()),
          0,
        );
        const idx = ops.tensor(new Int32Array([3, 0, 2]), [3]);
        record(`${device} embedding`, maxError(ops.embedding(on(a), on(idx)).toFloat32Array(), ops.embedding(a, idx).toFloat32Array()), 0);
        const [ma, mb] = [random([3, 20, 9], 16), random([3, 11, 20], 17)];
        const bmm = (p: Tensor, r: Tensor) => ops.matmul(p.transpose(1, 2), r.transpose(1, 2));
        record(`${device} batched matmul, transposed views`, maxError(bmm(on(ma), on(mb)).toFloat32Array(), bmm(ma, mb).toFloat32Array()), 1e-5);
        const [ga, gb] = [random([67, 301], 18), random([301, 45], 19)];
        const fp32 = ops.matmul(ga, gb).toFloat32Array();
        try {
          // TF32 rounds the inputs to 10-bit mantissas: about 1e-3 relative on these products.
          setAllowTf32(true);
          record(`${device} matmul, TF32 allowed`, maxError(ops.matmul(on(ga), on(gb)).toFloat32Array(), fp32), 3e-3);
        } finally {
          setAllowTf32(false);
        }
        // 16-bit products and attention (tensor cores) against the CPU's 16-bit kernels. Both
        // accumulate in float32 and round the output once, so they differ by at most one unit in
        // the last place of the 16-bit type (at most 2^-7 of the value for bfloat16, 2^-10 for
        // float16); attention also rounds its probabilities, against running maxima that differ.
        for (const [dtype, step] of [
          ['bfloat16', 2 ** -7],
          ['float16', 2 ** -10],
        ] as const) {
          const h = (t: Tensor) => t.cast(dtype);
          const check = (name: string, run: (...ts: Tensor[]) => Tensor, inputs: Tensor[], tolerance: number) =>
            record(`${device} ${dtype} ${name}`, maxError(run(...inputs.map(on)).toFloat32Array(), run(...inputs).toFloat32Array()), tolerance);
          check('matmul', ops.matmul, [h(ga), h(gb)], step);
          check('linear', ops.linear, [h(random([70, 300], 20)), h(random([90, 300], 21)), h(random([90], 22))], step);
          check('batched matmul, transposed views', bmm, [h(ma), h(mb)], step);
          check('attention', (p, r, s) => ops.attention(p, r, s), [h(q), h(k), h(v)], 2 * step);
          // FLUX's layout: (B, S, H, 128) views, heads-last output; and a masked head wider than
          // the tensor-core kernel takes (the CUDA-core 16-bit path).
          const [fq, fk, fv] = [random([1, 150, 2, 128], 23), random([1, 150, 2, 128], 24), random([1, 150, 2, 128], 25)];
          check(
            'attention, FLUX layout',
            (p, r, s) => ops.attention(p.transpose(1, 2), r.transpose(1, 2), s.transpose(1, 2), { headsLast: true }),
            [h(fq), h(fk), h(fv)],
            2 * step,
          );
          const [wq, wk, wv, wm] = [random([1, 2, 30, 160], 26), random([1, 2, 70, 160], 27), random([1, 2, 70, 160], 28), random([1, 1, 30, 70], 29)];
          check('attention, head dim 160, mask', (p, r, s, m) => ops.attention(p, r, s, { mask: m }), [h(wq), h(wk), h(wv), wm], 2 * step);
        }
      }
    });
  }
  setAllowTf32(tf32Before);
  return results;
}

/** The raw build facts, for reports next to self-check results. */
export function buildSummary(): string {
  const b = native.buildInfo();
  return `BLAS: ${b.blas}; CUDA kernels: ${b.cuda === 'none' ? 'not compiled' : `compiled for ${b.cuda}`}`;
}
