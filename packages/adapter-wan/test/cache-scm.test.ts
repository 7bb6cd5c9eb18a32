// The `scm` cache policy on Wan (video, separate CFG branches) against cache-dit 1.5's steps
// computation masks: for every preset, 'static' and 'dynamic', the mask cache-dit's steps_mask
// gave, the steps it cached per CFG branch (cond is its non-CFG branch), its diffs and its final
// latents (tools/cache-references-scm/scm.py made them, float32).
import { readFileSync } from 'node:fs';

import { afterAll, describe, expect, it } from 'vitest';

import { disableCache, enableCache, scmMask, summary, type ScmPreset } from '@ditcache/core';
import { loadSafetensors, memoryStats, type Tensor } from '@ditcache/cuda-runtime';

import { WanPipeline } from '../src/index.js';
import { goldens, localGoldens, relativeL2 } from './helpers.js';

type Branches<T> = { non_cfg: T; cfg: T };
interface ScmTrace {
  config: Record<string, unknown> & { mask_policy: ScmPreset };
  taylorseer_order: number | null;
  mask: string;
  cached_steps: Branches<number[]>;
  residual_diffs: Branches<Record<string, number>>;
}

function expectDiffs(got: Readonly<Record<string, number>>, want: Record<string, number>): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const [step, diff] of Object.entries(want)) expect(Math.abs(got[step] - diff)).toBeLessThan(1e-3);
}

describe('the scm policy on Wan (wan-tiny)', () => {
  const meta = JSON.parse(readFileSync(`${goldens}/wan-tiny/meta.json`, 'utf-8')) as Record<string, number>;
  const scm = JSON.parse(readFileSync(`${localGoldens}/wan-tiny/cache_traces_scm.json`, 'utf-8')) as { traces: Record<string, ScmTrace> };
  const ref = loadSafetensors(`${goldens}/wan-tiny/pipeline.safetensors`);
  const traces = loadSafetensors(`${localGoldens}/wan-tiny/cache_traces_scm.safetensors`);
  const pipe = WanPipeline.fromPretrained(`${goldens}/wan-tiny`);
  afterAll(() => {
    pipe.dispose();
    for (const t of [...Object.values(ref), ...Object.values(traces)]) t.dispose();
  });
  const latentsOf = (): Tensor =>
    pipe.generate({
      promptEmbeds: ref.prompt_embeds,
      negativePromptEmbeds: ref.negative_prompt_embeds,
      latents: ref.latents_in,
      height: meta.height,
      width: meta.width,
      numFrames: meta.num_frames,
      numInferenceSteps: meta.num_inference_steps,
      guidanceScale: meta.guidance_scale,
      decode: false,
    }).latents;

  it.each(Object.keys(scm.traces))("%s: cache-dit's mask, cached steps and diffs per CFG branch, and latents", (name) => {
    const trace = scm.traces[name];
    expect(scmMask(trace.config.mask_policy, meta.num_inference_steps).join('')).toBe(trace.mask);
    const before = memoryStats();
    enableCache(pipe, { policy: 'scm', ...trace.config, ...(trace.taylorseer_order ? { taylorseer_order: trace.taylorseer_order } : {}) });
    const latents = latentsOf();
    const [context] = summary(pipe, { print: false }).contexts;
    expect(context.name).toBe('transformer.blocks');
    expect([...context.cachedSteps], 'cond (non-CFG) cached steps').toEqual(trace.cached_steps.non_cfg);
    expect([...context.cfgCachedSteps], 'uncond (CFG) cached steps').toEqual(trace.cached_steps.cfg);
    expectDiffs(context.residualDiffs, trace.residual_diffs.non_cfg);
    expectDiffs(context.cfgResidualDiffs, trace.residual_diffs.cfg);
    expect(relativeL2(latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });
});
