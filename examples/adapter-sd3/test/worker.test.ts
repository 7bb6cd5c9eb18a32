// StableDiffusion3Pipeline.spawn: generation in a worker thread, which loads this package (built,
// as users get it) by the file URL of its entry point.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary } from '@ditcache/core';
import { loadSafetensors, memoryStats, type Tensor } from '@ditcache/cuda-runtime';
import type { RemotePipeline } from '@ditcache/diffusion';

import { StableDiffusion3Pipeline, type SD3GenerateOptions, type SD3GenerateResult } from 'ditcache-adapter-sd3';

import { goldenRequest, goldens, metaOf } from './helpers.js';

const set = 'sd35-tiny';
const meta = metaOf(set);

describe('StableDiffusion3Pipeline.spawn (generation in a worker thread)', () => {
  let remote: RemotePipeline<SD3GenerateOptions, SD3GenerateResult>;
  let ref: Record<string, Tensor>;
  let request: SD3GenerateOptions;
  beforeAll(async () => {
    remote = await StableDiffusion3Pipeline.spawn(`${goldens}/${set}`);
    ref = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
    request = { ...goldenRequest(ref, meta), decode: false };
  });
  afterAll(async () => {
    await remote.close();
    for (const t of Object.values(ref)) t.dispose();
  });

  it("gives what in-thread generation gives, cached with cache-dit's decisions through the one-line API", async () => {
    using local = StableDiffusion3Pipeline.fromPretrained(`${goldens}/${set}`);
    const before = memoryStats();
    const plain = await remote.generate(request);
    const name = 'F1B0_W2_R0.057';
    enableCache(remote, meta.cache_traces[name].config);
    const cached = await remote.generate(request);
    expect([...summary(remote, { print: false }).contexts[0].cachedSteps]).toEqual(meta.cache_traces[name].stats[0].cached_steps);
    disableCache(remote);
    const inThread = local.generate(request);
    expect(Buffer.compare(plain.latents.toBytes(), inThread.latents.toBytes())).toBe(0);
    for (const t of [plain.latents, cached.latents, inThread.latents]) t.dispose();
    // The results' tensors belong to the caller; the worker's never show up here.
    expect(memoryStats()).toEqual(before);
  });

  it('loads with the dtype it is given: a bfloat16 worker generates what a bfloat16 pipeline here does, bit for bit', async () => {
    const bf16 = await StableDiffusion3Pipeline.spawn(`${goldens}/${set}`, { dtype: 'bfloat16' });
    using local = StableDiffusion3Pipeline.fromPretrained(`${goldens}/${set}`, { dtype: 'bfloat16' });
    try {
      const short = { ...request, numInferenceSteps: 3, decode: true };
      const [got, want] = [await bf16.generate(short), local.generate(short)];
      expect([got.latents.dtype, got.image!.dtype]).toEqual(['bfloat16', 'float32']);
      expect(Buffer.compare(got.latents.toBytes(), want.latents.toBytes())).toBe(0);
      expect(Buffer.compare(got.image!.toBytes(), want.image!.toBytes())).toBe(0);
      for (const t of [got.latents, got.image!, want.latents, want.image!]) t.dispose();
    } finally {
      await bf16.close();
    }
  });
});
