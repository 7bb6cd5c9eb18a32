import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats } from '@ditcache/cuda-runtime';

import { FluxPipeline, type TransformerCall } from '../src/index.js';
import { goldens, relativeL2, relativeL2Values } from './helpers.js';

describe.each(['flux-tiny', 'flux-tiny-guidance'])('FluxPipeline on %s', (set) => {
  it('matches diffusers: timesteps, sigmas, final latents and image', () => {
    const meta = JSON.parse(readFileSync(`${goldens}/${set}/meta.json`, 'utf-8')) as Record<string, number>;
    const ref = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
    using pipe = FluxPipeline.fromPretrained(`${goldens}/${set}`);
    const before = memoryStats();
    const calls: TransformerCall[] = [];
    const off = pipe.onTransformerCall((c) => calls.push(c));
    const steps: number[] = [];
    const out = pipe.generate({
      promptEmbeds: ref.prompt_embeds,
      pooledPromptEmbeds: ref.pooled_prompt_embeds,
      latents: ref.latents_in,
      height: meta.height,
      width: meta.width,
      numInferenceSteps: meta.num_inference_steps,
      guidanceScale: meta.guidance_scale,
      callback: ({ step }) => steps.push(step),
    });
    off();
    const errors = {
      timesteps: relativeL2Values(out.timesteps, ref.timesteps.toFloat32Array()),
      sigmas: relativeL2Values(out.sigmas, ref.sigmas.toFloat32Array()),
      latents_out: relativeL2(out.latents, ref.latents_out),
      image_out: relativeL2(out.image!, ref.image_out),
    };
    expect(errors.timesteps).toBeLessThan(1e-6);
    expect(errors.sigmas).toBeLessThan(1e-6);
    expect(errors.latents_out).toBeLessThan(1e-4);
    expect(errors.image_out).toBeLessThan(1e-3);
    expect(calls.map((c) => c.branch)).toEqual(Array(meta.num_inference_steps).fill('cond'));
    expect(calls.map((c) => c.step)).toEqual([...Array(meta.num_inference_steps).keys()]);
    expect(steps).toEqual([...Array(meta.num_inference_steps).keys()]);
    out.latents.dispose();
    out.image!.dispose();
    expect(memoryStats()).toEqual(before);
    for (const t of Object.values(ref)) t.dispose();
  });
});
