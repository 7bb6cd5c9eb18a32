// HunyuanVideoPipeline.spawn: generation in a worker thread, which loads the built package by
// name (as users do), with the one-line cache API reaching the worker's two contexts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary } from '@ditcache/core';
import { memoryStats, type Tensor } from '@ditcache/cuda-runtime';
import type { RemotePipeline } from '@ditcache/diffusion';

import { HunyuanVideoPipeline, type HunyuanVideoGenerateOptions, type HunyuanVideoGenerateResult } from '../src/index.js';
import { goldens, meta, references, relativeL2, requestOf } from './helpers.js';

describe('HunyuanVideoPipeline.spawn (generation in a worker thread)', () => {
  let remote: RemotePipeline<HunyuanVideoGenerateOptions, HunyuanVideoGenerateResult>;
  let ref: Record<string, Tensor>;
  beforeAll(async () => {
    remote = await HunyuanVideoPipeline.spawn(`${goldens}/hv-tiny`);
    ref = references('guided');
  });
  afterAll(async () => {
    await remote.close();
    for (const t of Object.values(ref)) t.dispose();
  });

  it("gives diffusers' latents and frames, with a progress event per step", async () => {
    const before = memoryStats();
    const steps: number[] = [];
    remote.on('progress', (p: { step: number }) => steps.push(p.step));
    const out = await remote.generate(requestOf('guided', ref));
    remote.removeAllListeners('progress');
    expect(steps).toEqual([...Array(meta.runs.guided.steps).keys()]);
    expect(relativeL2(out.latents, ref.latents_out)).toBeLessThan(1e-4);
    expect(relativeL2(out.video as Tensor, ref.video)).toBeLessThan(1e-4);
    out.latents.dispose();
    out.video?.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it("caches cache-dit's steps in both contexts of the worker's transformer, ParamsModifiers included", async () => {
    const trace = meta.cache_traces.PM_dual_F2B0_single_F1B1;
    enableCache(remote, { ...trace.config, params_modifiers: trace.params_modifiers });
    const out = await remote.generate({ ...requestOf('guided', ref), decode: false });
    const contexts = summary(remote, { print: false }).contexts;
    expect(contexts.map((c) => [c.name, [...c.cachedSteps]])).toEqual([
      ['transformer.transformerBlocks', trace.stats[0].cached_steps],
      ['transformer.singleTransformerBlocks', trace.stats[1].cached_steps],
    ]);
    out.latents.dispose();
    expect(disableCache(remote)).toBe(true);
  });
});
