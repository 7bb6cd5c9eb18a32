// The engine on Qwen-Image: cache-dit's cached steps and diffs for every config of the goldens
// (Fn / Bn up to 16 on 34 blocks, warmup, caps, TaylorSeer, a ParamsModifier, shared CFG diffs,
// with and without separate CFG, Qwen-Image-Lightning's 4- and 8-step schedules), per CFG branch:
// the first call of a step (cond) is cache-dit's non-CFG branch, the negative prompt's its CFG one.
import { afterAll, describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary } from '@ditcache/core';
import { loadSafetensors, memoryStats } from '@ditcache/cuda-runtime';

import { QwenImagePipeline } from '../src/index.js';
import { goldens, loadReferences, meta, relativeL2, runRequest } from './helpers.js';

function expectDiffs(got: Readonly<Record<string, number>>, want: Record<string, number>): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const [step, diff] of Object.entries(want)) expect(Math.abs(got[step] - diff)).toBeLessThan(1e-3);
}

const ref = loadReferences();
const traces = loadSafetensors(`${goldens}/cache_traces.safetensors`);
const pipes = { 'qwen-tiny': QwenImagePipeline.fromPretrained(`${goldens}/qwen-tiny`), 'qwen-deep': QwenImagePipeline.fromPretrained(`${goldens}/qwen-deep`) };
afterAll(() => {
  for (const p of Object.values(pipes)) p.dispose();
  for (const t of [...Object.values(ref), ...Object.values(traces)]) t.dispose();
});

describe('caching Qwen-Image', () => {
  it('the references keep every diff at least 2% from its threshold', () => {
    expect(meta.min_margin).toBeGreaterThanOrEqual(0.02);
    expect(Object.keys(meta.cache_traces).length).toBeGreaterThanOrEqual(8);
  });

  it.each(Object.keys(meta.cache_traces))("%s: cache-dit's cached steps and diffs per CFG branch, and its latents", (name) => {
    const trace = meta.cache_traces[name];
    const pipe = pipes[meta.runs[trace.run].set];
    const before = memoryStats();
    enableCache(pipe, {
      ...trace.config,
      ...(trace.taylorseer_order ? { taylorseer_order: trace.taylorseer_order } : {}),
      ...(trace.params_modifiers ? { params_modifiers: trace.params_modifiers } : {}),
    });
    const { latents } = pipe.generate(runRequest(ref, trace.run, false));
    const contexts = summary(pipe, { print: false }).contexts;
    expect(contexts.map((c) => c.name)).toEqual(['transformer.transformerBlocks']);
    const [want] = trace.stats;
    const got = contexts[0];
    expect(got.steps).toBe(want.executed_steps);
    expect([...got.cachedSteps], 'cached steps').toEqual(want.cached_steps);
    expect([...got.cfgCachedSteps], 'CFG cached steps').toEqual(want.cfg_cached_steps);
    expectDiffs(got.residualDiffs, want.residual_diffs);
    expectDiffs(got.cfgResidualDiffs, want.cfg_residual_diffs);
    expect(relativeL2(latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });

  it('threshold 0 is bit-identical to the uncached model, and disableCache restores the blocks', () => {
    const pipe = pipes['qwen-tiny'];
    const request = runRequest(ref, 'cfg_square', false);
    const blocks = pipe.transformer.transformerBlocks;
    const plain = pipe.generate(request).latents;
    enableCache(pipe, { residual_diff_threshold: 0, Fn_compute_blocks: 1, max_warmup_steps: 0 });
    const zero = pipe.generate(request).latents;
    disableCache(pipe);
    expect(pipe.transformer.transformerBlocks).toBe(blocks);
    expect(Buffer.compare(Buffer.from(zero.toBytes()), Buffer.from(plain.toBytes()))).toBe(0);
    plain.dispose();
    zero.dispose();
  });
});
