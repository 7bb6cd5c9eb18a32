// The engine on HiDream: cache-dit's traces for every config of the goldens (two contexts,
// one per block list, each deciding on its own residual), and the invariants.
import { readFileSync } from 'node:fs';

import { afterAll, describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary } from '@ditcache/core';
import { loadSafetensors, memoryStats, type Tensor } from '@ditcache/cuda-runtime';

import { goldens, relativeL2, goldenRequest, loadGoldenPipeline } from './helpers.js';

interface Trace {
  config: Record<string, number>;
  taylorseer_order: number | null;
  stats: { source: string; cached_steps: number[]; residual_diffs: Record<string, number> }[];
}

const dir = `${goldens}/hidream-tiny`;
const meta = JSON.parse(readFileSync(`${dir}/meta.json`, 'utf-8')) as Record<string, number> & { cache_traces: Record<string, Trace> };
const ref = loadSafetensors(`${dir}/pipeline.safetensors`);
const traces = loadSafetensors(`${dir}/cache_traces.safetensors`);
const pipe = loadGoldenPipeline(dir, meta);
afterAll(() => {
  pipe.dispose();
  for (const t of [...Object.values(ref), ...Object.values(traces)]) t.dispose();
});

const request = goldenRequest(ref, meta);
const latentsOf = (): Tensor => pipe.generate(request).latents;

describe('caching HiDream', () => {
  it.each(Object.keys(meta.cache_traces))("%s: cache-dit's cached steps and diffs per block list, and its latents", (name) => {
    const trace = meta.cache_traces[name];
    const before = memoryStats();
    enableCache(pipe, { ...trace.config, ...(trace.taylorseer_order ? { taylorseer_order: trace.taylorseer_order } : {}) });
    const latents = latentsOf();
    const contexts = summary(pipe, { print: false }).contexts;
    expect(contexts.map((c) => c.name)).toEqual(['transformer.doubleStreamBlocks', 'transformer.singleStreamBlocks']);
    trace.stats.forEach((want, i) => {
      expect([...contexts[i].cachedSteps], want.source).toEqual(want.cached_steps);
      expect(Object.keys(contexts[i].residualDiffs).sort()).toEqual(Object.keys(want.residual_diffs).sort());
      for (const [step, diff] of Object.entries(want.residual_diffs)) expect(Math.abs(contexts[i].residualDiffs[step] - diff)).toBeLessThan(1e-3);
      expect(contexts[i].cfgCachedSteps).toEqual([]);
    });
    expect(relativeL2(latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });

  it('threshold 0 is bit-identical to the uncached model; disableCache unpatches exactly', () => {
    const lists = [pipe.transformer.doubleStreamBlocks, pipe.transformer.singleStreamBlocks];
    const plain = latentsOf();
    enableCache(pipe, { residual_diff_threshold: 0, Fn_compute_blocks: 1, max_warmup_steps: 0 });
    const zero = latentsOf();
    expect(Buffer.compare(zero.toBytes(), plain.toBytes())).toBe(0);
    const s = summary(pipe, { print: false });
    expect(s.cachedSteps).toBe(0);
    expect(s.flopsSkippedFraction).toBe(0);
    disableCache(pipe);
    expect(pipe.transformer.doubleStreamBlocks).toBe(lists[0]);
    expect(pipe.transformer.singleStreamBlocks).toBe(lists[1]);
    const after = latentsOf();
    expect(Buffer.compare(after.toBytes(), plain.toBytes())).toBe(0);
    for (const t of [plain, zero, after]) t.dispose();
  });
});
