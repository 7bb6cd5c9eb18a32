// HunyuanVideoPipeline against diffusers (tools/make_references.py): the final latents
// (output_type="latent") and the decoded frames (output_type="np") of three runs: embedded
// guidance alone, embedded guidance with true CFG on two videos, and true CFG on one frame of a
// model without a guidance embedding.
import { afterAll, describe, expect, it } from 'vitest';

import { memoryStats, type Tensor } from '@ditcache/cuda-runtime';

import { HunyuanVideoPipeline, type TransformerCall } from '../src/index.js';
import { goldens, meta, references, relativeL2, requestOf, type RunName } from './helpers.js';

for (const run of Object.keys(meta.runs) as RunName[]) {
  const spec = meta.runs[run];
  describe(`HunyuanVideoPipeline, run ${run} (${spec.set}: ${spec.height} x ${spec.width}, ${spec.num_frames} frames, ${spec.steps} steps, guidance ${spec.guidance_scale}, true CFG ${spec.true_cfg_scale})`, () => {
    const ref = references(run);
    afterAll(() => {
      for (const t of Object.values(ref)) t.dispose();
    });

    it('returns the latents (within 1e-4) and frames (within 1e-4) diffusers does, calling the transformer once per step and branch', () => {
      using pipe = HunyuanVideoPipeline.fromPretrained(`${goldens}/${spec.set}`);
      const calls: TransformerCall[] = [];
      const unsubscribe = pipe.onTransformerCall((c) => void calls.push(c));
      const before = memoryStats();
      const out = pipe.generate(requestOf(run, ref));
      unsubscribe();
      expect(out.latents.shape).toEqual(ref.latents_out.shape);
      expect(relativeL2(out.latents, ref.latents_out)).toBeLessThan(1e-4);
      expect(out.video?.shape).toEqual(ref.video.shape);
      expect(relativeL2(out.video as Tensor, ref.video)).toBeLessThan(1e-4);
      const trueCfg = spec.true_cfg_scale > 1;
      expect(calls.map((c) => `${c.step}${c.branch}`)).toEqual(
        Array.from({ length: spec.steps }, (_, i) => (trueCfg ? [`${i}cond`, `${i}uncond`] : [`${i}cond`])).flat(),
      );
      expect(out.seed).toBeNull();
      out.latents.dispose();
      out.video?.dispose();
      expect(memoryStats()).toEqual(before);
    });
  });
}

describe('HunyuanVideoPipeline input checks', () => {
  const ref = references('guided_cfg');
  afterAll(() => {
    for (const t of Object.values(ref)) t.dispose();
  });

  it('names what is wrong: size, frame count, a partial negative triple, latents of another shape, masks of another length', () => {
    using pipe = HunyuanVideoPipeline.fromPretrained(`${goldens}/hv-tiny`);
    const request = requestOf('guided_cfg', ref);
    expect(() => pipe.generate({ ...request, height: 40 })).toThrow(/height must be a positive multiple of 16, got 40/);
    expect(() => pipe.generate({ ...request, numFrames: 0 })).toThrow(/numFrames must be 4k \+ 1 \(1, 5, 9, \.\.\., 129\), got 0/);
    expect(() => pipe.generate({ ...request, numFrames: 6 })).toThrow(/numFrames must be 4k \+ 1 \(1, 5, 9, \.\.\., 129\), got 6/);
    expect(() => pipe.generate({ ...request, negativePromptAttentionMask: undefined })).toThrow(
      /negativePromptEmbeds, negativePooledPromptEmbeds, negativePromptAttentionMask come together: give all three \(missing negativePromptAttentionMask\)/,
    );
    expect(() => pipe.generate({ ...request, numFrames: 9 })).toThrow(
      /latents must be \(2, 4, 3, 4, 4\) for this size, frame count and batch, got \(2, 4, 2, 4, 4\)/,
    );
    expect(() => pipe.generate({ ...request, promptAttentionMask: ref.negative_prompt_attention_mask })).toThrow(
      /promptAttentionMask must be \(2, 6\), got \(2, 5\)/,
    );
  });
});
