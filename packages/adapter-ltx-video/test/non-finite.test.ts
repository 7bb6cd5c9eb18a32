// NaN or Inf in LTX-Video's inputs or in a step's latents stops the run naming the tensor and the step, instead of a black video.
import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats } from '@ditcache/cuda-runtime';

import { LtxPipeline } from '../src/index.js';
import { goldens, request } from './helpers.js';
import { nonFiniteFailure, withValue } from '../../../scripts/testing/non-finite.js';

describe('LtxPipeline with NaN / Inf', () => {
  const ref = loadSafetensors(`${goldens}/ltx-tiny/pipeline.safetensors`);
  afterAll(() => {
    for (const t of Object.values(ref)) t.dispose();
  });

  it('names latents_in, prompt_embeds or negative_prompt_embeds before the first step', () => {
    using pipe = LtxPipeline.fromPretrained(`${goldens}/ltx-tiny`);
    const before = memoryStats();
    const base = { ...request(ref, 'ltx-tiny'), decode: false };
    for (const [name, key, value] of [
      ['latents_in', 'latents', Number.NaN],
      ['prompt_embeds', 'promptEmbeds', Number.POSITIVE_INFINITY],
      ['negative_prompt_embeds', 'negativePromptEmbeds', Number.NEGATIVE_INFINITY],
    ] as const) {
      using poisoned = withValue(ref[name], 5, value);
      const err = nonFiniteFailure(pipe, { ...base, [key]: poisoned });
      expect([err.tensor, err.step, err.when]).toEqual([name, 0, 'before']);
    }
    expect(memoryStats()).toEqual(before);
  });

  it('leaves a poisoned negative prompt alone without CFG (guidance 1 never reads it)', () => {
    using pipe = LtxPipeline.fromPretrained(`${goldens}/ltx-tiny`);
    using poisoned = withValue(ref.negative_prompt_embeds, 5, Number.NaN);
    const out = pipe.generate({ ...request(ref, 'ltx-tiny'), negativePromptEmbeds: poisoned, guidanceScale: 1, decode: false });
    out.latents.dispose();
  });
});
