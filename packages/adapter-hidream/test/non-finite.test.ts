// NaN or Inf in HiDream's inputs or in a step's latents stops the run naming the tensor and the step, instead of a black image.
import { readFileSync } from 'node:fs';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, type Tensor } from '@ditcache/cuda-runtime';

import type { HiDreamPipeline, HiDreamGenerateOptions, HiDreamTransformerInputs } from '../src/index.js';
import { goldens, goldenRequest, loadGoldenPipeline } from './helpers.js';
import { nonFiniteFailure, withValue } from '../../../scripts/testing/non-finite.js';

const dir = `${goldens}/hidream-tiny`;
const meta = JSON.parse(readFileSync(`${dir}/meta.json`, 'utf-8')) as Record<string, number>;
const ref = loadSafetensors(`${dir}/pipeline.safetensors`);
afterAll(() => {
  for (const t of Object.values(ref)) t.dispose();
});
const request = (extra: Partial<HiDreamGenerateOptions> = {}): HiDreamGenerateOptions => goldenRequest(ref, meta, extra);

const loadPipeline = (): HiDreamPipeline => loadGoldenPipeline(dir, meta);

describe('HiDreamPipeline with NaN / Inf', () => {
  it('names latents_in or prompt_embeds_llama3 before the first step', () => {
    using pipe = loadPipeline();
    const before = memoryStats();
    const latents = withValue(ref.latents_in, 2, Infinity);
    const first = nonFiniteFailure(pipe, request({ latents }));
    expect([first.tensor, first.step, first.when]).toEqual(['latents_in', 0, 'before']);
    const llama = withValue(ref.prompt_embeds_llama3, 17, NaN);
    const err = nonFiniteFailure(pipe, request({ promptEmbedsLlama3: llama }));
    expect(err.tensor).toBe('prompt_embeds_llama3');
    expect(err.message).toMatch(new RegExp(`in prompt_embeds_llama3, an input, before step 1 of ${meta.num_inference_steps}`));
    latents.dispose();
    llama.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it('names the step whose transformer output was non-finite', () => {
    using pipe = loadPipeline();
    const forward = pipe.transformer.forward.bind(pipe.transformer);
    let calls = 0;
    pipe.transformer.forward = (inputs: HiDreamTransformerInputs): Tensor => {
      const out = forward(inputs);
      if (calls++ !== 1) return out;
      const bad = withValue(out, 0, NaN);
      out.dispose();
      return bad;
    };
    const err = nonFiniteFailure(pipe, request());
    expect([err.tensor, err.step, err.when]).toEqual(['latents', 1, 'after']);
    expect(err.message).toMatch(
      new RegExp(`^non-finite values \\(NaN or Inf\\) in the latents after step 2 of ${meta.num_inference_steps}; the transformer's output`),
    );
  });
});
