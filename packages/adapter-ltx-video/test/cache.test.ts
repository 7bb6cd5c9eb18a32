// The engine on LTX-Video: cache-dit's traces for every config of the goldens (one context,
// transformer.transformer_blocks; CFG batched, so one decision per step), ParamsModifiers,
// TaylorSeer and a run without CFG included; threshold 0 bit-identical; disableCache restoring the
// very block list.
import { afterAll, describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary } from '@ditcache/core';
import { loadSafetensors, memoryStats, type Tensor } from '@ditcache/cuda-runtime';

import { LtxPipeline } from '../src/index.js';
import meta from './goldens/ltx-tiny/meta.json' with { type: 'json' };
import { goldens, relativeL2, request } from './helpers.js';

interface Trace {
  config: Record<string, unknown>;
  taylorseer_order: number | null;
  params_modifiers: Record<string, unknown>[] | null;
  /** The pipeline's guidance scale where the trace ran with another than the golden run's (1: no CFG). */
  guidance_scale: number | null;
  margin: number;
  stats: { cached_steps: number[]; residual_diffs: Record<string, number> }[];
}
const traces = meta.cache_traces as Record<string, Trace>;

function expectDiffs(got: Readonly<Record<string, number>>, want: Record<string, number>): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const [step, diff] of Object.entries(want)) expect(Math.abs(got[step] - diff) / diff).toBeLessThan(1e-3);
}

describe('caching LTX-Video (ltx-tiny)', () => {
  const ref = loadSafetensors(`${goldens}/ltx-tiny/pipeline.safetensors`);
  const traced = loadSafetensors(`${goldens}/ltx-tiny/cache_traces.safetensors`);
  const pipe = LtxPipeline.fromPretrained(`${goldens}/ltx-tiny`);
  afterAll(() => {
    pipe.dispose();
    for (const t of [...Object.values(ref), ...Object.values(traced)]) t.dispose();
  });
  const latentsOf = (guidanceScale?: number | null): Tensor =>
    pipe.generate({ ...request(ref, 'ltx-tiny'), ...(guidanceScale ? { guidanceScale } : {}), numInferenceSteps: meta.cache_steps, decode: false }).latents;

  it('covers at least 8 configs, ParamsModifiers and TaylorSeer among them, each diff at least 2% from its threshold', () => {
    const all = Object.values(traces);
    expect(all.length).toBeGreaterThanOrEqual(8);
    expect(all.some((t) => t.params_modifiers)).toBe(true);
    expect(all.some((t) => t.taylorseer_order)).toBe(true);
    expect(all.some((t) => t.guidance_scale === 1)).toBe(true);
    expect(Math.min(...all.map((t) => t.margin))).toBeGreaterThanOrEqual(0.02);
    expect(meta.min_margin).toBeGreaterThanOrEqual(0.02);
  });

  it.each(Object.keys(traces))("%s: cache-dit's cached steps, residual diffs and latents", (name) => {
    const trace = traces[name];
    const before = memoryStats();
    enableCache(pipe, {
      ...trace.config,
      ...(trace.taylorseer_order ? { taylorseer_order: trace.taylorseer_order } : {}),
      ...(trace.params_modifiers ? { params_modifiers: trace.params_modifiers } : {}),
    });
    const latents = latentsOf(trace.guidance_scale);
    const contexts = summary(pipe, { print: false }).contexts;
    expect(contexts.map((c) => c.name)).toEqual(['transformer.transformerBlocks']);
    const [want] = trace.stats;
    expect([...contexts[0].cachedSteps]).toEqual(want.cached_steps);
    expect([...contexts[0].cfgCachedSteps]).toEqual([]);
    expectDiffs(contexts[0].residualDiffs, want.residual_diffs);
    expect(relativeL2(latents, traced[`${name}.latents_out`])).toBeLessThan(1e-4);
    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });

  it('threshold 0 is bit-identical to the uncached model, and disableCache restores the block list', () => {
    const blocks = pipe.transformer.transformerBlocks;
    const plain = latentsOf();
    enableCache(pipe, { residual_diff_threshold: 0, Fn_compute_blocks: 1, max_warmup_steps: 0 });
    const zero = latentsOf();
    expect(Buffer.compare(zero.toBytes(), plain.toBytes())).toBe(0);
    disableCache(pipe);
    expect(pipe.transformer.transformerBlocks).toBe(blocks);
    const after = latentsOf();
    expect(Buffer.compare(after.toBytes(), plain.toBytes())).toBe(0);
    for (const t of [plain, zero, after]) t.dispose();
  });
});
