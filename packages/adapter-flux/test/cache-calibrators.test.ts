// The FoCa and DMD calibrators on FLUX against cache-dit's: per config, the steps it cached, its
// diffs and its final latents (tools/cache-references-calibrators/calibrators.py made them,
// float32). FLUX's encoder stream is forecast too where the config says so.
import { readFileSync } from 'node:fs';

import { afterAll, describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary } from '@ditcache/core';
import { loadSafetensors, memoryStats, type Tensor } from '@ditcache/cuda-runtime';

import { FluxPipeline } from '../src/index.js';
import { goldens, localGoldens, relativeL2 } from './helpers.js';

interface CalibratorTrace {
  cache_config: Record<string, unknown>;
  calibrator_config: Record<string, unknown> & { calibrator_type: 'foca' | 'dmd' };
  cached_steps: { non_cfg: number[] };
  residual_diffs: { non_cfg: Record<string, number> };
}

describe('the FoCa and DMD calibrators on FLUX (flux-tiny)', () => {
  const meta = JSON.parse(readFileSync(`${goldens}/flux-tiny/meta.json`, 'utf-8')) as Record<string, number>;
  const references = JSON.parse(readFileSync(`${localGoldens}/flux-tiny/cache_traces_calibrators.json`, 'utf-8')) as {
    traces: Record<string, CalibratorTrace>;
  };
  const ref = loadSafetensors(`${goldens}/flux-tiny/pipeline.safetensors`);
  const traces = loadSafetensors(`${localGoldens}/flux-tiny/cache_traces_calibrators.safetensors`);
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

  it('covers both calibrators', () => {
    const types = new Set(Object.values(references.traces).map((t) => t.calibrator_config.calibrator_type));
    expect([...types].sort()).toEqual(['dmd', 'foca']);
  });

  it.each(Object.keys(references.traces))("%s: cache-dit's cached steps, diffs and latents", (name) => {
    const trace = references.traces[name];
    const before = memoryStats();
    // cache-dit's two sections, as its summary dumps them, are a config ditcache reads as they are.
    enableCache(pipe, { cache_config: trace.cache_config, calibrator_config: trace.calibrator_config });
    const latents = latentsOf();
    const [context] = summary(pipe, { print: false }).contexts;
    expect(context.config.calibratorType).toBe(trace.calibrator_config.calibrator_type);
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
