import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import * as rt from '../src/index.js';
import { fromNd, rngFor } from './helpers.js';

const rng = rngFor('memory');

describe('deterministic memory release', () => {
  it('dispose() frees at once; views keep their storage alive until the last goes', () => {
    const before = rt.memoryStats();
    const t = rt.zeros([256, 256]);
    const v = t.transpose(0, 1);
    expect(rt.memoryStats().liveTensors).toBe(before.liveTensors + 2);
    expect(rt.memoryStats().hostBytes).toBe(before.hostBytes + 256 * 256 * 4);
    t.dispose();
    expect(rt.memoryStats().hostBytes).toBe(before.hostBytes + 256 * 256 * 4);
    v.dispose();
    expect(rt.memoryStats()).toEqual(before);
    expect(t.disposed).toBe(true);
    expect(() => rt.add(t, 1)).toThrow(/the tensor was disposed/);
    t.dispose(); // twice is harmless
  });

  it('large freed blocks are kept for the next tensor of their size, outside memoryStats()', () => {
    const bytes = 3 << 20; // 12 MiB of float32: a large block
    const first = rt.zeros([bytes]);
    const live = rt.memoryStats(),
      cachedLive = rt.hostCachedBytes();
    first.dispose();
    expect(rt.memoryStats().hostBytes).toBe(live.hostBytes - bytes * 4);
    expect(rt.hostCachedBytes()).toBeGreaterThanOrEqual(cachedLive + bytes * 4);
    const second = rt.zeros([bytes]); // takes the cached block
    expect(rt.hostCachedBytes()).toBe(cachedLive);
    expect(second.toFloat32Array().every((v) => v === 0)).toBe(true); // a reused block is filled like a new one
    second.dispose();
  });

  it('tidy() keeps what it returns and frees the rest', () => {
    const before = rt.memoryStats();
    const { out, list } = rt.tidy(() => {
      const a = rt.ones([10]);
      const b = rt.add(a, a);
      rt.mul(b, b);
      return { out: rt.sub(b, 1), list: [rt.zeros([3])] };
    });
    expect(rt.memoryStats().liveTensors).toBe(before.liveTensors + 2);
    expect(Array.from(out.toFloat32Array())).toEqual(Array(10).fill(1));
    out.dispose();
    list[0].dispose();
    expect(rt.memoryStats()).toEqual(before);
  });

  it('TensorScope works with `using`, and keep() lets a tensor outlive it', () => {
    const before = rt.memoryStats();
    let kept: rt.Tensor;
    {
      using scope = new rt.TensorScope();
      const a = rt.ones([4]);
      kept = scope.keep(rt.add(a, 1));
      rt.add(a, 2);
    }
    expect(rt.memoryStats().liveTensors).toBe(before.liveTensors + 1);
    {
      using t = rt.zeros([8]);
      expect(t.size).toBe(8);
    }
    expect(rt.memoryStats().liveTensors).toBe(before.liveTensors + 1);
    kept.dispose();
    expect(rt.memoryStats()).toEqual(before);
  });

  it('tidy() frees everything when the function throws, and refuses async functions', () => {
    const before = rt.memoryStats();
    expect(() =>
      rt.tidy(() => {
        rt.ones([100]);
        rt.add(rt.zeros([2]), rt.zeros([3]));
      }),
    ).toThrow(/do not broadcast/);
    expect(rt.memoryStats()).toEqual(before);
    expect(() => rt.tidy((async () => rt.ones([1])) as never)).toThrow(/synchronous function/);
  });

  it('1,000 iterations of a transformer-block-sized computation leave nothing behind', async () => {
    const [B, S, D, H] = [1, 64, 96, 4];
    const w = {
      qkv: fromNd(rng.nd([3 * D, D], 0.1)),
      out: fromNd(rng.nd([D, D], 0.1)),
      up: fromNd(rng.nd([4 * D, D], 0.1)),
      down: fromNd(rng.nd([D, 4 * D], 0.1)),
      norm: fromNd(rng.nd([D])),
    };
    let x = fromNd(rng.nd([B, S, D]));
    const block = (h: rt.Tensor): rt.Tensor => {
      const n = rt.layerNorm(h, w.norm, null, 1e-6);
      const [q, k, v] = rt
        .linear(n, w.qkv)
        .split(3, -1)
        .map((t) => t.reshape(B, S, H, D / H).transpose(1, 2));
      const a = rt.attention(q, k, v, { headsLast: true }).reshape(B, S, D);
      const h2 = rt.add(h, rt.linear(a, w.out));
      return rt.add(h2, rt.linear(rt.gelu(rt.linear(rt.rmsNorm(h2), w.up), { approximate: 'tanh' }), w.down));
    };
    const step = () => {
      const next = rt.tidy(() => rt.mul(block(x), 0.5));
      x.dispose();
      x = next;
    };
    // Collects garbage and lets finalizers (which run after GC, in their own task) finish.
    const settle = async () => {
      const gc = (globalThis as { gc?: () => void }).gc;
      gc?.();
      await new Promise((r) => setImmediate(r));
      gc?.();
    };
    step(); // lazily created state (thread-local buffers) exists from here on
    const before = rt.memoryStats();
    let rssHalfway = 0;
    for (let i = 1; i <= 1000; ++i) {
      step();
      expect(rt.memoryStats()).toEqual(before);
      if (i === 500) {
        await settle();
        rssHalfway = process.memoryUsage().rss;
      }
    }
    await settle();
    // The process stops growing once the JS heap has sized itself (by about the 500th
    // iteration): leaking one iteration's native buffers (about 400 KB) would add 200 MB.
    expect(process.memoryUsage().rss - rssHalfway).toBeLessThan(8 * 1024 * 1024);
    expect(Number.isFinite(rt.meanAbs(x))).toBe(true);
    x.dispose();
    Object.values(w).forEach((t) => t.dispose());
  });

  it('a synchronous loop of ops (no await, so no finaliser ever runs) keeps the process flat', () => {
    // In a fresh process, so that the RSS is the loop's own. 300,000 ops, each disposed at once:
    // a native handle that outlived dispose() until the event loop turned (about 300 bytes each,
    // as before this was fixed) would add about 90 MB; the loop itself needs no memory at all,
    // and 16 MB leaves room for the JS heap sizing itself.
    const index = fileURLToPath(new URL('../dist/src/index.js', import.meta.url));
    const script = `
      const rt = await import(${JSON.stringify(index)});
      const a = rt.zeros([4]);
      for (let i = 0; i < 1000; ++i) rt.add(a, a).dispose();
      const before = process.memoryUsage().rss;
      for (let i = 0; i < 300000; ++i) rt.add(a, a).dispose();
      console.log(JSON.stringify({ growth: process.memoryUsage().rss - before, live: rt.memoryStats().liveTensors }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf-8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const { growth, live } = JSON.parse(r.stdout) as { growth: number; live: number };
    expect(live).toBe(1);
    expect(growth).toBeLessThan(16 * 1024 * 1024);
  });

  it('a handle the garbage collector takes, never disposed, still frees its tensor', async () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (!gc) throw new Error('run the tests with --expose-gc (vitest.config.ts sets it)');
    const before = rt.memoryStats();
    (() => {
      for (let i = 0; i < 100; ++i) rt.zeros([1000]);
    })();
    expect(rt.memoryStats().liveTensors).toBe(before.liveTensors + 100);
    for (let i = 0; i < 10 && rt.memoryStats().liveTensors > before.liveTensors; ++i) {
      gc();
      await new Promise((r) => setImmediate(r));
    }
    expect(rt.memoryStats()).toEqual(before);
  });
});
