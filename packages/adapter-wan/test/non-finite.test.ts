// NaN or Inf in Wan's inputs or in a step's latents stops the run naming the tensor and the step, instead of a black video.
import { readFileSync } from 'node:fs';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, type Tensor } from '@ditcache/cuda-runtime';

import { WanPipeline, type WanGenerateOptions, type WanTransformerInputs } from '../src/index.js';
import { goldens } from './helpers.js';
import { nonFiniteFailure, withValue } from '../../../scripts/testing/non-finite.js';

const set = `${goldens}/wan-tiny`;
const meta = JSON.parse(readFileSync(`${set}/meta.json`, 'utf-8')) as Record<string, number>;
const ref = loadSafetensors(`${set}/pipeline.safetensors`);
afterAll(() => {
  for (const t of Object.values(ref)) t.dispose();
});
const request = (extra: Partial<WanGenerateOptions> = {}): WanGenerateOptions => ({
  promptEmbeds: ref.prompt_embeds,
  negativePromptEmbeds: ref.negative_prompt_embeds,
  latents: ref.latents_in,
  height: meta.height,
  width: meta.width,
  numFrames: meta.num_frames,
  numInferenceSteps: meta.num_inference_steps,
  guidanceScale: meta.guidance_scale,
  decode: false,
  ...extra,
});

describe('WanPipeline with NaN / Inf', () => {
  it('names latents_in or negative_prompt_embeds before the first step', () => {
    using pipe = WanPipeline.fromPretrained(set);
    const before = memoryStats();
    const latents = withValue(ref.latents_in, 11, NaN);
    const first = nonFiniteFailure(pipe, request({ latents }));
    expect([first.tensor, first.step, first.when]).toEqual(['latents_in', 0, 'before']);
    const negative = withValue(ref.negative_prompt_embeds, 3, -Infinity);
    const err = nonFiniteFailure(pipe, request({ negativePromptEmbeds: negative }));
    expect(err.tensor).toBe('negative_prompt_embeds');
    expect(err.message).toMatch(new RegExp(`in negative_prompt_embeds, an input, before step 1 of ${meta.num_inference_steps}`));
    latents.dispose();
    negative.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it('names the step whose transformer output was non-finite', () => {
    using pipe = WanPipeline.fromPretrained(set);
    const forward = pipe.transformer.forward.bind(pipe.transformer);
    let calls = 0;
    pipe.transformer.forward = (inputs: WanTransformerInputs): Tensor => {
      const out = forward(inputs);
      // Two calls per step (CFG): the uncond call of the third step.
      if (calls++ !== 5) return out;
      const bad = withValue(out, 0, NaN);
      out.dispose();
      return bad;
    };
    const err = nonFiniteFailure(pipe, request());
    expect([err.tensor, err.step, err.when]).toEqual(['latents', 2, 'after']);
    expect(err.message).toMatch(
      new RegExp(`^non-finite values \\(NaN or Inf\\) in the latents after step 3 of ${meta.num_inference_steps}; the transformer's output`),
    );
  });
});
