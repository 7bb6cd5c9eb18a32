// FluxPipeline.spawn: generation in a worker thread. Imports the built package (as users do):
// the worker loads it by name.
import { readFileSync } from 'node:fs';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { disableCache, enableCache, strify, summary } from '@ditcache/core';
import { full, loadSafetensors, memoryStats, type Tensor } from '@ditcache/cuda-runtime';
import { FluxPipeline, type FluxGenerateOptions, type FluxGenerateResult } from '@ditcache/adapter-flux';
import { NonFiniteError, type RemotePipeline } from '@ditcache/diffusion';

import { goldens, relativeL2 } from './helpers.js';

const set = `${goldens}/flux-tiny`;
const meta = JSON.parse(readFileSync(`${set}/meta.json`, 'utf-8')) as Record<string, number> & {
  cache_traces: Record<string, { config: Record<string, number>; stats: { cached_steps: number[] }[] }>;
};

describe('FluxPipeline.spawn (generation in a worker thread)', () => {
  let remote: RemotePipeline<FluxGenerateOptions, FluxGenerateResult>;
  let ref: Record<string, Tensor>;
  let request: FluxGenerateOptions;
  beforeAll(async () => {
    remote = await FluxPipeline.spawn(set);
    ref = loadSafetensors(`${set}/pipeline.safetensors`);
    request = {
      promptEmbeds: ref.prompt_embeds,
      pooledPromptEmbeds: ref.pooled_prompt_embeds,
      latents: ref.latents_in,
      height: meta.height,
      width: meta.width,
      numInferenceSteps: meta.num_inference_steps,
      guidanceScale: meta.guidance_scale,
    };
  });
  afterAll(async () => {
    await remote.close();
    for (const t of Object.values(ref)) t.dispose();
  });

  it('gives the same result as in-thread generation, with progress events, leaving the event loop free', async () => {
    const before = memoryStats();
    const steps: number[] = [];
    remote.on('progress', (p: { step: number }) => steps.push(p.step));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const t0 = performance.now();
    const out = await remote.generate(request);
    const elapsed = performance.now() - t0;
    clearInterval(timer);
    remote.removeAllListeners('progress');
    expect(steps).toEqual([...Array(meta.num_inference_steps).keys()]);
    expect(relativeL2(out.latents, ref.latents_out)).toBeLessThan(1e-4);
    expect(relativeL2(out.image!, ref.image_out)).toBeLessThan(1e-3);
    // A 1 ms timer kept firing while the worker generated (a blocked loop would fire it once).
    expect(ticks).toBeGreaterThan(Math.min(20, elapsed / 4));
    out.latents.dispose();
    out.image!.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it('brings a NaN found in the worker back as the NonFiniteError it was, naming the tensor and step', async () => {
    using poisoned = full(ref.prompt_embeds.shape, Number.NaN);
    const err = await remote.generate({ ...request, promptEmbeds: poisoned }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonFiniteError);
    const e = err as NonFiniteError;
    expect([e.name, e.tensor, e.step, e.numSteps, e.when]).toEqual(['NonFiniteError', 'prompt_embeds', 0, meta.num_inference_steps, 'before']);
    expect(e.message).toMatch(/non-finite values \(NaN or Inf\) in prompt_embeds, an input, before step 1/);
  });

  it('stops on an AbortSignal and frees everything the run held in the worker', async () => {
    const workerBefore = await remote.memoryStats();
    const controller = new AbortController();
    const seen: number[] = [];
    const run = remote.generate(request, {
      signal: controller.signal,
      onProgress: (p) => {
        seen.push(p.step);
        if (p.step === 1) controller.abort();
      },
    });
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
    expect(seen.length).toBeLessThan(meta.num_inference_steps);
    expect(await remote.memoryStats()).toEqual(workerBefore);
    await expect(remote.generate(request, { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
  });

  it("takes the one-line cache API: the worker caches cache-dit's steps and reports them", async () => {
    const [name, trace] = Object.entries(meta.cache_traces).find(([n]) => n.includes('MC2'))!;
    enableCache(remote, trace.config);
    const out = await remote.generate({ ...request, decode: false });
    expect([...summary(remote, { print: false }).contexts[0].cachedSteps]).toEqual(trace.stats[0].cached_steps);
    expect(strify(remote)).toMatch(/MC2_R0.7_.*_S\d+$/);
    expect(name).toContain('MC2');
    out.latents.dispose();
    expect(disableCache(remote)).toBe(true);
    expect(() => enableCache(remote, { Fn_compute_blocks: -1 })).toThrow(/Fn_compute_blocks/);
  });
});
