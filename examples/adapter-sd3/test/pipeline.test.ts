// StableDiffusion3Pipeline against diffusers' StableDiffusion3Pipeline: batched CFG, the
// scheduler's shifted sigmas, the final latents and the decoded image.
import { describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats } from '@ditcache/cuda-runtime';

import { StableDiffusion3Pipeline, type TransformerCall } from '../src/index.js';
import { SETS, goldenRequest, goldens, metaOf, relativeL2, relativeL2Values } from './helpers.js';

describe.each(SETS)('StableDiffusion3Pipeline on %s', (set) => {
  const meta = metaOf(set);

  it('matches diffusers: timesteps, sigmas, final latents and image, with and without CFG', () => {
    const ref = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
    using pipe = StableDiffusion3Pipeline.fromPretrained(`${goldens}/${set}`);
    const before = memoryStats();
    const calls: TransformerCall[] = [];
    const off = pipe.onTransformerCall((c) => calls.push(c));
    const steps: number[] = [];
    const request = goldenRequest(ref, meta);
    const out = pipe.generate({ ...request, callback: ({ step }) => steps.push(step) });
    off();
    const withoutCfg = pipe.generate({ ...request, guidanceScale: 1, decode: false });
    const errors = {
      timesteps: relativeL2Values(out.timesteps, ref.timesteps.toFloat32Array()),
      sigmas: relativeL2Values(out.sigmas, ref.sigmas.toFloat32Array()),
      latents_out: relativeL2(out.latents, ref.latents_out),
      image_out: relativeL2(out.image!, ref.image_out),
      latents_out_guidance_1: relativeL2(withoutCfg.latents, ref.latents_out_guidance_1),
    };
    expect(errors.timesteps).toBeLessThan(1e-6);
    expect(errors.sigmas).toBeLessThan(1e-6);
    expect(errors.latents_out).toBeLessThan(1e-4);
    expect(errors.image_out).toBeLessThan(1e-3);
    expect(errors.latents_out_guidance_1).toBeLessThan(1e-4);
    const n = meta.num_inference_steps;
    expect(calls.map((c) => c.branch)).toEqual(Array(n).fill('batched'));
    expect(calls.map((c) => c.step)).toEqual([...Array(n).keys()]);
    expect(steps).toEqual([...Array(n).keys()]);
    for (const t of [out.latents, out.image!, withoutCfg.latents]) t.dispose();
    expect(memoryStats()).toEqual(before);
    for (const t of Object.values(ref)) t.dispose();
  });
});
