// CUDA kernels against the CPU ones on the same inputs. These run only where a GPU and driver
// are present (never on the CI machine, which has none); elsewhere they are reported as skipped.
import { describe, expect, it } from 'vitest';

import * as rt from '../src/index.js';
import { selfCheck } from '../src/selfcheck.js';
import { expectClose, fromNd, rngFor } from './helpers.js';
import * as ref from './reference.js';

const cuda = rt.devices().cuda;
const rng = rngFor('cuda');

describe('self-check', () => {
  it('passes every check on this machine', () => {
    const results = selfCheck();
    const failed = results.filter((r) => !r.ok);
    expect(failed).toEqual([]);
    // CPU GEMM paths always; CUDA kernels too when a device is present.
    expect(results.some((r) => r.name.startsWith('cpu gemm'))).toBe(true);
    expect(results.some((r) => r.name.startsWith('cuda:'))).toBe(cuda.available);
  });
});

describe.skipIf(!cuda.available)('CUDA kernels equal the CPU kernels', () => {
  const gpu = 'cuda:0' as const;
  const both = (x: ref.Nd) => [fromNd(x), fromNd(x).to(gpu)] as const;
  /** Runs `op` on CPU and GPU copies of the inputs and compares. */
  const same = (inputs: ref.Nd[], op: (...ts: rt.Tensor[]) => rt.Tensor, rtol = 1e-5, atol = 1e-6) =>
    rt.tidy(() => {
      const cpu = op(...inputs.map(fromNd));
      const dev = op(...inputs.map((x) => fromNd(x).to(gpu)));
      expect(dev.device).toBe(gpu);
      expectClose(dev.to('cpu'), new ref.Nd([...cpu.shape], Float64Array.from(cpu.toFloat32Array())), rtol, atol);
    });

  it('moves tensors both ways and keeps them on the device between ops', () => {
    rt.tidy(() => {
      const x = rng.nd([3, 5]);
      const [c, g] = both(x);
      expect(g.device).toBe(gpu);
      expect(rt.add(g, g).device).toBe(gpu);
      expect(g.to('cpu').toFloat32Array()).toEqual(c.toFloat32Array());
      expect(rt.memoryStats().deviceBytes).toBeGreaterThan(0);
    });
  });

  it('elementwise and broadcasting, strided views, casts', () => {
    same([rng.nd([4, 1, 6]), rng.nd([5, 1])], (a, b) => rt.mul(a, b), 0, 0);
    same([rng.nd([6, 7])], (a) => rt.add(a.transpose(0, 1), 1), 0, 0);
    for (const f of [rt.exp, rt.tanh, rt.silu, rt.sigmoid, (t: rt.Tensor) => rt.gelu(t), (t: rt.Tensor) => rt.gelu(t, { approximate: 'tanh' })]) {
      same([rng.nd([33, 17])], f, 2e-6, 1e-6);
    }
    same([rng.nd([8, 9])], (a) => a.cast('bfloat16').cast('float32'), 0, 0);
    same([rng.nd([8, 9])], (a) => a.cast('float16').slice(1, 2, 9, 3).contiguous().cast('float32'), 0, 0);
  });

  it('reductions, softmax and norms', () => {
    same([rng.nd([4, 300])], (a) => rt.sum(a, -1));
    same([rng.nd([4, 5, 6])], (a) => rt.max(a, [0, 2]), 0, 0);
    same([rng.nd([7, 129])], (a) => rt.softmax(a, -1));
    same([rng.nd([7, 96]), rng.nd([96]), rng.nd([96])], (a, w, b) => rt.layerNorm(a, w, b, 1e-6));
    same([rng.nd([7, 96]), rng.nd([96])], (a, w) => rt.rmsNorm(a, w, 1e-6));
    same([rng.nd([2, 8, 5, 5]), rng.nd([8]), rng.nd([8])], (a, w, b) => rt.groupNorm(a, 4, w, b, 1e-6));
    rt.tidy(() => {
      const a = rng.nd([1000, 33]), b = rng.nd([1000, 33]);
      const [ca, ga] = both(a), [cb, gb] = both(b);
      expect(rt.relL1(ga, gb)).toBeCloseTo(rt.relL1(ca, cb), 9);
      expect(rt.meanAbs(ga)).toBeCloseTo(rt.meanAbs(ca), 9);
    });
  });

  it('products, attention, rotary, convolution, resampling, gathers', () => {
    same([rng.nd([70, 300]), rng.nd([90, 300]), rng.nd([90])], (x, w, b) => rt.linear(x, w, b), 1e-5, 1e-5);
    same([rng.nd([3, 20, 9]), rng.nd([3, 11, 20])], (a, b) => rt.matmul(a.transpose(1, 2), b.transpose(1, 2)), 1e-5, 1e-5);
    same([rng.nd([2, 4, 37, 64]), rng.nd([2, 2, 45, 64]), rng.nd([2, 2, 45, 32])], (q, k, v) => rt.attention(q, k, v), 1e-5, 1e-6);
    same([rng.nd([2, 19, 3, 16]), rng.nd([2, 19, 3, 16]), rng.nd([2, 19, 3, 16]), rng.nd([2, 1, 1, 19])], (q, k, v, m) =>
      rt.attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), { mask: m, headsLast: true }), 1e-5, 1e-6);
    same([rng.nd([2, 3, 5, 8]), rng.nd([5, 8]), rng.nd([5, 8])], (x, c, s) => rt.rope(x, c, s), 1e-6, 1e-6);
    same([rng.nd([2, 3, 5, 8]), rng.nd([5, 8]), rng.nd([5, 8])], (x, c, s) => rt.rope(x, c, s, { interleaved: false }), 1e-6, 1e-6);
    same([rng.nd([2, 6, 9, 11]), rng.nd([8, 3, 3, 3]), rng.nd([8])], (x, w, b) => rt.conv2d(x, w, b, { padding: 1, stride: [2, 1], groups: 2 }), 1e-5, 1e-5);
    same([rng.nd([1, 4, 5, 6, 7]), rng.nd([6, 2, 3, 3, 3]), rng.nd([6])], (x, w, b) => rt.conv3d(x, w, b, { padding: [2, 1, 1], groups: 2 }), 1e-5, 1e-5);
    same([rng.nd([2, 3, 4, 5])], (x) => rt.upsampleNearest2d(x, { size: [9, 7] }), 0, 0);
    same([rng.nd([50, 8])], (x) => rt.topk(x, 3).values, 0, 0);
    rt.tidy(() => {
      const x = rng.nd([50, 8]);
      expect(rt.topk(fromNd(x).to(gpu), 3, { largest: false }).indices.toInt32Array()).toEqual(rt.topk(fromNd(x), 3, { largest: false }).indices.toInt32Array());
    });
    same([rng.nd([10, 6])], (w) => rt.embedding(w, rt.tensor(new Int32Array([3, 0, 9]), [3], { device: w.device })), 0, 0);
    same([rng.nd([4, 6, 5]), rng.nd([4, 2, 5])], (a, b) => rt.concat([a, b], 1), 0, 0);
  });
});
