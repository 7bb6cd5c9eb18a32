// CUDA kernels against the CPU ones on the same inputs. These run only where a GPU and driver
// are present (never on the CI machine, which has none); elsewhere they are reported as skipped.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

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

describe('npm run selfcheck', () => {
  it('reports every check ok and points at commands the repository has', () => {
    const cli = fileURLToPath(new URL('../dist/src/selfcheck-cli.js', import.meta.url));
    const r = spawnSync(process.execPath, [cli], { encoding: 'utf-8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const rows = r.stdout.split('\n').filter((l) => /^\| (cpu|cuda)/.test(l));
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) expect(row).toMatch(/\| ok \|$/);
    // Every `npm run X` it suggests exists: at the root, or in the package its -w names.
    const scripts = (dir: string) =>
      Object.keys((JSON.parse(readFileSync(new URL(`../../../${dir}package.json`, import.meta.url), 'utf-8')) as { scripts: object }).scripts);
    const suggested = [...r.stdout.matchAll(/npm run ([\w:-]+)(?: -w @ditcache\/([\w-]+))?/g)];
    expect(suggested.length).toBeGreaterThan(0);
    for (const [, script, pkg] of suggested) expect(scripts(pkg ? `packages/${pkg}/` : '')).toContain(script);
    expect(r.stdout).not.toMatch(/still to come/);
  });
});

describe('TF32 switch', () => {
  it('is off by default, reads back what was set and rejects non-booleans', () => {
    if (process.env.DITCACHE_CUDA_TF32 !== '1') expect(rt.allowTf32()).toBe(false);
    const before = rt.allowTf32();
    try {
      rt.setAllowTf32(true);
      expect(rt.allowTf32()).toBe(true);
      if (cuda.compiled) expect(rt.devices().cuda.tf32).toBe(true);
      rt.setAllowTf32(false);
      expect(rt.allowTf32()).toBe(false);
      expect(() => rt.setAllowTf32('yes' as unknown as boolean)).toThrow(/setAllowTf32: expects true or false/);
    } finally {
      rt.setAllowTf32(before);
    }
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
      const a = rng.nd([1000, 33]),
        b = rng.nd([1000, 33]);
      const [ca, ga] = both(a),
        [cb, gb] = both(b);
      expect(rt.relL1(ga, gb)).toBeCloseTo(rt.relL1(ca, cb), 9);
      expect(rt.meanAbs(ga)).toBeCloseTo(rt.meanAbs(ca), 9);
    });
  });

  it('products, attention, rotary, convolution, resampling, gathers', () => {
    same([rng.nd([70, 300]), rng.nd([90, 300]), rng.nd([90])], (x, w, b) => rt.linear(x, w, b), 1e-5, 1e-5);
    same([rng.nd([3, 20, 9]), rng.nd([3, 11, 20])], (a, b) => rt.matmul(a.transpose(1, 2), b.transpose(1, 2)), 1e-5, 1e-5);
    same([rng.nd([2, 4, 37, 64]), rng.nd([2, 2, 45, 64]), rng.nd([2, 2, 45, 32])], (q, k, v) => rt.attention(q, k, v), 1e-5, 1e-6);
    same(
      [rng.nd([2, 19, 3, 16]), rng.nd([2, 19, 3, 16]), rng.nd([2, 19, 3, 16]), rng.nd([2, 1, 1, 19])],
      (q, k, v, m) => rt.attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), { mask: m, headsLast: true }),
      1e-5,
      1e-6,
    );
    same([rng.nd([2, 3, 5, 8]), rng.nd([5, 8]), rng.nd([5, 8])], (x, c, s) => rt.rope(x, c, s), 1e-6, 1e-6);
    same([rng.nd([2, 3, 5, 8]), rng.nd([5, 8]), rng.nd([5, 8])], (x, c, s) => rt.rope(x, c, s, { interleaved: false }), 1e-6, 1e-6);
    same([rng.nd([2, 6, 9, 11]), rng.nd([8, 3, 3, 3]), rng.nd([8])], (x, w, b) => rt.conv2d(x, w, b, { padding: 1, stride: [2, 1], groups: 2 }), 1e-5, 1e-5);
    same([rng.nd([1, 4, 5, 6, 7]), rng.nd([6, 2, 3, 3, 3]), rng.nd([6])], (x, w, b) => rt.conv3d(x, w, b, { padding: [2, 1, 1], groups: 2 }), 1e-5, 1e-5);
    same([rng.nd([2, 3, 4, 5])], (x) => rt.upsampleNearest2d(x, { size: [9, 7] }), 0, 0);
    same([rng.nd([50, 8])], (x) => rt.topk(x, 3).values, 0, 0);
    rt.tidy(() => {
      const x = rng.nd([50, 8]);
      expect(rt.topk(fromNd(x).to(gpu), 3, { largest: false }).indices.toInt32Array()).toEqual(
        rt.topk(fromNd(x), 3, { largest: false }).indices.toInt32Array(),
      );
    });
    same([rng.nd([10, 6])], (w) => rt.embedding(w, rt.tensor(new Int32Array([3, 0, 9]), [3], { device: w.device })), 0, 0);
    same([rng.nd([4, 6, 5]), rng.nd([4, 2, 5])], (a, b) => rt.concat([a, b], 1), 0, 0);
  });

  // Both devices accumulate in float32 and round the output once: they differ by at most one
  // unit in the last place of the 16-bit type (at most 2^-7 of the value for bfloat16, 2^-10 for
  // float16). Attention also rounds its probabilities, against running maxima that differ
  // between the kernels, by up to a unit of the largest |v| (about 3 here, normal inputs).
  for (const [dtype, step] of [
    ['bfloat16', 2 ** -7],
    ['float16', 2 ** -10],
  ] as const) {
    it(`${dtype} products and attention (tensor cores) equal the CPU's 16-bit kernels`, () => {
      const h = (t: rt.Tensor) => t.cast(dtype);
      same([rng.nd([70, 300]), rng.nd([90, 300]), rng.nd([90])], (x, w, b) => rt.linear(h(x), h(w), h(b)), step, step);
      same([rng.nd([3, 20, 9]), rng.nd([3, 11, 20])], (a, b) => rt.matmul(h(a).transpose(1, 2), h(b).transpose(1, 2)), step, step);
      same([rng.nd([2, 4, 37, 64]), rng.nd([2, 2, 45, 64]), rng.nd([2, 2, 45, 32])], (q, k, v) => rt.attention(h(q), h(k), h(v)), 3 * step, 3 * step);
      // FLUX's layout and head width, several query and key tiles.
      same(
        [rng.nd([1, 150, 3, 128]), rng.nd([1, 150, 3, 128]), rng.nd([1, 150, 3, 128])],
        (q, k, v) => rt.attention(h(q).transpose(1, 2), h(k).transpose(1, 2), h(v).transpose(1, 2), { headsLast: true }),
        3 * step,
        3 * step,
      );
      // A mask that blocks every seventh key, odd head widths (zero-padded tiles), and a head
      // wider than the tensor-core kernel takes.
      const blocked = (m: rt.Tensor) => {
        const d = m.toFloat32Array();
        for (let i = 0; i < d.length; ++i) if ((i % 70) % 7 === 3) d[i] = -Infinity;
        return rt.tensor(d, [...m.shape], { device: m.device });
      };
      same(
        [rng.nd([2, 3, 19, 40]), rng.nd([2, 3, 70, 40]), rng.nd([2, 3, 70, 24]), rng.nd([2, 1, 19, 70])],
        (q, k, v, m) => rt.attention(h(q), h(k), h(v), { mask: blocked(m) }),
        3 * step,
        3 * step,
      );
      same([rng.nd([1, 2, 30, 160]), rng.nd([1, 2, 50, 160]), rng.nd([1, 2, 50, 160])], (q, k, v) => rt.attention(h(q), h(k), h(v)), 3 * step, 3 * step);
    });
  }

  it('float32 products opt into TF32 and back', () => {
    const before = rt.allowTf32();
    try {
      rt.setAllowTf32(true);
      expect(rt.devices().cuda.tf32).toBe(true);
      same([rng.nd([64, 300]), rng.nd([300, 40])], (a, b) => rt.matmul(a, b), 3e-3, 3e-3);
      rt.setAllowTf32(false);
      expect(rt.devices().cuda.tf32).toBe(false);
      same([rng.nd([64, 300]), rng.nd([300, 40])], (a, b) => rt.matmul(a, b), 1e-5, 1e-5);
    } finally {
      rt.setAllowTf32(before);
    }
  });
});
