// The `scm` cache policy on FLUX against cache-dit 1.5's steps computation masks: for every
// preset, 'static' and 'dynamic', the mask cache-dit's steps_mask gave, the steps it cached, its
// diffs and its final latents (tools/cache-references-scm/scm.py made them, float32).
import { readFileSync } from 'node:fs';

import { afterAll, describe, expect, it } from 'vitest';

import { disableCache, enableCache, scmMask, summary, type ScmPreset } from '@ditcache/core';
import { loadSafetensors, memoryStats, type Tensor } from '@ditcache/cuda-runtime';

import { FluxPipeline } from '../src/index.js';
import { goldens, localGoldens, relativeL2 } from './helpers.js';

interface ScmTrace {
  config: Record<string, unknown> & { mask_policy: ScmPreset; steps_computation_policy: string };
  taylorseer_order: number | null;
  mask: string;
  cached_steps: { non_cfg: number[] };
  residual_diffs: { non_cfg: Record<string, number> };
}

describe('the scm policy on FLUX (flux-tiny)', () => {
  const meta = JSON.parse(readFileSync(`${goldens}/flux-tiny/meta.json`, 'utf-8')) as Record<string, number>;
  const scm = JSON.parse(readFileSync(`${localGoldens}/flux-tiny/cache_traces_scm.json`, 'utf-8')) as { traces: Record<string, ScmTrace> };
  const ref = loadSafetensors(`${goldens}/flux-tiny/pipeline.safetensors`);
  const traces = loadSafetensors(`${localGoldens}/flux-tiny/cache_traces_scm.safetensors`);
  const pipe = FluxPipeline.fromPretrained(`${goldens}/flux-tiny`);
  afterAll(() => {
    pipe.dispose();
    for (const t of [...Object.values(ref), ...Object.values(traces)]) t.dispose();
  });
  const latentsOf = (): Tensor =>
    pipe.generate({
      promptEmbeds: ref.prompt_embeds,
      pooledPromptEmbeds: ref.pooled_prompt_embeds,
      latents: ref.latents_in,
      height: meta.height,
      width: meta.width,
      numInferenceSteps: meta.num_inference_steps,
      guidanceScale: meta.guidance_scale,
      decode: false,
    }).latents;

  it.each(Object.keys(scm.traces))("%s: cache-dit's mask, cached steps, diffs and latents", (name) => {
    const trace = scm.traces[name];
    expect(scmMask(trace.config.mask_policy, meta.num_inference_steps).join('')).toBe(trace.mask);
    const before = memoryStats();
    enableCache(pipe, { policy: 'scm', ...trace.config, ...(trace.taylorseer_order ? { taylorseer_order: trace.taylorseer_order } : {}) });
    const latents = latentsOf();
    const [context] = summary(pipe, { print: false }).contexts;
    expect([...context.cachedSteps]).toEqual(trace.cached_steps.non_cfg);
    const want = trace.residual_diffs.non_cfg;
    expect(Object.keys(context.residualDiffs).sort()).toEqual(Object.keys(want).sort());
    for (const [step, diff] of Object.entries(want)) expect(Math.abs(context.residualDiffs[step] - diff)).toBeLessThan(1e-3);
    expect(relativeL2(latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });
});
