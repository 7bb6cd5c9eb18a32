// ChromaPipeline against diffusers' ChromaPipeline (with the boolean key mask) on both reference
// folders: final latents with CFG (two calls per step, each with its own padded mask) and without
// it (guidance 1), the decoded image, the schedule and the calls it announces.
import { readFileSync } from 'node:fs';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats } from '@ditcache/cuda-runtime';

import { ChromaPipeline, type ChromaGenerateOptions, type TransformerCall } from '../src/index.js';
import { SETS, goldens, relativeL2 } from './helpers.js';

describe.each(SETS)('ChromaPipeline on %s', (set) => {
  const meta = JSON.parse(readFileSync(`${goldens}/${set}/meta.json`, 'utf-8')) as Record<string, number>;
  const ref = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
  const pipe = ChromaPipeline.fromPretrained(`${goldens}/${set}`);
  afterAll(() => {
    pipe.dispose();
    for (const t of Object.values(ref)) t.dispose();
  });
  const request = (guidanceScale: number): ChromaGenerateOptions => ({
    promptEmbeds: ref.prompt_embeds,
    promptAttentionMask: ref.prompt_attention_mask,
    negativePromptEmbeds: ref.negative_prompt_embeds,
    negativePromptAttentionMask: ref.negative_prompt_attention_mask,
    latents: ref.latents_in,
    height: meta.height,
    width: meta.width,
    numInferenceSteps: meta.num_inference_steps,
    guidanceScale,
  });

  it('with CFG: latents, image and schedule as diffusers, two announced calls per step', () => {
    const calls: TransformerCall[] = [];
    const stop = pipe.onTransformerCall((c) => calls.push(c));
    const before = memoryStats();
    const out = pipe.generate(request(meta.guidance_scale));
    stop();
    expect(relativeL2(out.latents, ref.latents_out)).toBeLessThan(1e-4);
    expect(relativeL2(out.image as NonNullable<typeof out.image>, ref.image_out)).toBeLessThan(1e-4);
    expect(Array.from(out.timesteps)).toEqual(Array.from(ref.timesteps.toFloat32Array()));
    expect(calls.map((c) => `${c.step}${c.branch}`)).toEqual(Array.from({ length: meta.num_inference_steps }, (_, i) => [`${i}cond`, `${i}uncond`]).flat());
    out.latents.dispose();
    out.image?.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it('guidance 1 runs no CFG: one call per step, the latents diffusers returns', () => {
    const calls: TransformerCall[] = [];
    const stop = pipe.onTransformerCall((c) => calls.push(c));
    using latents = pipe.generate({ ...request(1), decode: false }).latents;
    stop();
    expect(relativeL2(latents, ref.latents_out_guidance_1)).toBeLessThan(1e-4);
    expect(calls.map((c) => c.branch)).toEqual(Array(meta.num_inference_steps).fill('cond'));
  });
});
