// The engine on Chroma: cache-dit's traces for every config of the goldens (Fn / Bn, warmup,
// caps, TaylorSeer, ParamsModifiers, a shared CFG diff, and runs without CFG): the same cached
// steps per block list and CFG branch, diffs and latents as cache-dit's. The pipeline announces
// each call's true step and branch, where cache-dit counts calls by position (README, Caching):
// the two agree under CFG with separate CFG; at guidance 1 ours, with or without separate CFG,
// matches cache-dit without it (one call, one step); under CFG without separate CFG cache-dit
// interleaves cond and uncond in one state while ours caches exactly as with separate CFG. And the
// patch functor: the patched model is bit-identical, and disableCache restores the model exactly.
import { readFileSync } from 'node:fs';

import { afterAll, describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary } from '@ditcache/core';
import { loadSafetensors, memoryStats, type Tensor } from '@ditcache/cuda-runtime';

import { ChromaPipeline, patchChromaForCaching, type ChromaGenerateOptions } from '../src/index.js';
import { goldens, relativeL2 } from './helpers.js';

interface ContextTrace {
  name: string;
  cached_steps: number[];
  cfg_cached_steps: number[];
  residual_diffs: Record<string, number>;
  cfg_residual_diffs: Record<string, number>;
}
interface Trace {
  config: Record<string, unknown>;
  taylorseer_order?: number;
  params_modifiers?: Record<string, unknown>[];
  guidance_scale?: number;
  margin: number;
  stats: ContextTrace[];
}

function expectDiffs(got: Readonly<Record<string, number>>, want: Record<string, number>, what: string): void {
  expect(Object.keys(got).sort(), what).toEqual(Object.keys(want).sort());
  for (const [step, diff] of Object.entries(want)) expect(Math.abs(got[step] - diff), `${what} step ${step}`).toBeLessThan(1e-4);
}

describe('caching Chroma (chroma-tiny)', () => {
  const set = `${goldens}/chroma-tiny`;
  const meta = JSON.parse(readFileSync(`${set}/meta.json`, 'utf-8')) as Record<string, number> & { cache_traces: Record<string, Trace> };
  const ref = loadSafetensors(`${set}/pipeline.safetensors`);
  const traces = loadSafetensors(`${set}/cache_traces.safetensors`);
  const pipe = ChromaPipeline.fromPretrained(set);
  afterAll(() => {
    pipe.dispose();
    for (const t of [...Object.values(ref), ...Object.values(traces)]) t.dispose();
  });
  const request = (guidanceScale = meta.guidance_scale): ChromaGenerateOptions => ({
    promptEmbeds: ref.prompt_embeds,
    promptAttentionMask: ref.prompt_attention_mask,
    negativePromptEmbeds: ref.negative_prompt_embeds,
    negativePromptAttentionMask: ref.negative_prompt_attention_mask,
    latents: ref.latents_in,
    height: meta.height,
    width: meta.width,
    numInferenceSteps: meta.num_inference_steps,
    guidanceScale,
    decode: false,
  });
  const latentsOf = (guidanceScale?: number): Tensor => pipe.generate(request(guidanceScale)).latents;

  it('the references keep every diff at least 2% from its threshold, over at least 8 configs', () => {
    expect(Object.keys(meta.cache_traces).length).toBeGreaterThanOrEqual(8);
    expect(meta.min_margin).toBeGreaterThanOrEqual(0.02);
  });

  // Guidance-1 traces are cache-dit's runs without separate CFG; ours must match them with it too.
  const cases = Object.entries(meta.cache_traces).flatMap(([name, trace]): [string, string, boolean | undefined][] =>
    trace.guidance_scale === 1
      ? [
          [name, name, undefined],
          [`${name} (enable_separate_cfg true)`, name, true],
        ]
      : [[name, name, undefined]],
  );

  const expectCacheDitRun = (name: string, separateCfg: boolean | undefined): void => {
    const trace = meta.cache_traces[name];
    const before = memoryStats();
    enableCache(pipe, {
      ...trace.config,
      ...(separateCfg === undefined ? {} : { enable_separate_cfg: separateCfg }),
      ...(trace.taylorseer_order ? { taylorseer_order: trace.taylorseer_order } : {}),
      ...(trace.params_modifiers ? { params_modifiers: trace.params_modifiers } : {}),
    });
    const latents = latentsOf(trace.guidance_scale);
    const contexts = summary(pipe, { print: false }).contexts;
    expect(contexts.map((c) => c.name)).toEqual(['transformer.transformerBlocks', 'transformer.singleTransformerBlocks']);
    trace.stats.forEach((want, i) => {
      const got = contexts[i];
      expect([...got.cachedSteps], `${want.name} cached steps`).toEqual(want.cached_steps);
      expect([...got.cfgCachedSteps], `${want.name} CFG cached steps`).toEqual(want.cfg_cached_steps);
      expectDiffs(got.residualDiffs, want.residual_diffs, want.name);
      expectDiffs(got.cfgResidualDiffs, want.cfg_residual_diffs, `${want.name} CFG`);
    });
    expect(relativeL2(latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  };

  it('has guidance-1 traces, all made by cache-dit without separate CFG, and none with CFG without it', () => {
    const entries = Object.values(meta.cache_traces);
    expect(entries.filter((t) => t.guidance_scale === 1).length).toBeGreaterThanOrEqual(2);
    for (const t of entries) expect(t.config.enable_separate_cfg === false, JSON.stringify(t.config)).toBe(t.guidance_scale === 1);
  });

  it.each(cases)("%s: cache-dit's steps per block list and CFG branch, and its latents", (_label, name, separateCfg) => {
    expectCacheDitRun(name, separateCfg);
  });

  // cache-dit's own run of these configs without separate CFG interleaves cond and uncond in one
  // state (2 steps per CFG step); the announced branches keep them apart, so the run is the
  // separate-CFG trace (core README, "Fixed on purpose"). A shared CFG diff needs separate CFG.
  const cfgTraces = Object.keys(meta.cache_traces).filter((n) => meta.cache_traces[n].guidance_scale === undefined && !n.endsWith('_SHAREDDIFF'));
  it.each(cfgTraces)('%s with enable_separate_cfg false: caches exactly like the separate-CFG trace', (name) => {
    expectCacheDitRun(name, false);
  });

  it('the patched model is bit-identical, threshold 0 too, and disableCache restores the model', () => {
    const t = pipe.transformer;
    const lists = [t.transformerBlocks, t.singleTransformerBlocks];
    const plain = latentsOf();
    const undo = patchChromaForCaching(t);
    const patched = latentsOf();
    undo();
    expect(Buffer.compare(Buffer.from(patched.toBytes()), Buffer.from(plain.toBytes()))).toBe(0);
    enableCache(pipe, { residual_diff_threshold: 0, Fn_compute_blocks: 1, max_warmup_steps: 0 });
    const zero = latentsOf();
    expect(Buffer.compare(Buffer.from(zero.toBytes()), Buffer.from(plain.toBytes()))).toBe(0);
    disableCache(pipe);
    expect([t.transformerBlocks, t.singleTransformerBlocks]).toEqual(lists);
    expect(Object.hasOwn(t, 'runBlocks')).toBe(false);
    const after = latentsOf();
    expect(Buffer.compare(Buffer.from(after.toBytes()), Buffer.from(plain.toBytes()))).toBe(0);
    for (const x of [plain, patched, zero, after]) x.dispose();
  });
});
