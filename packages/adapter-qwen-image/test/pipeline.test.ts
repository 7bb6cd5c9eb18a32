// QwenImagePipeline against diffusers' QwenImagePipeline on the goldens' four runs: square with
// true CFG (batch 2, padded masks, a negative prompt of another length), non-square without it,
// and Qwen-Image-Lightning's schedule at 4 steps (with true CFG) and 8 (without), on a 34-block
// model. Final latents (output_type="latent") and, where recorded, the decoded image.
import { afterAll, describe, expect, it } from 'vitest';

import { memoryStats } from '@ditcache/cuda-runtime';

import { QwenImagePipeline } from '../src/index.js';
import { goldens, loadReferences, meta, relativeL2, runRequest } from './helpers.js';

const ref = loadReferences();
const pipes = { 'qwen-tiny': QwenImagePipeline.fromPretrained(`${goldens}/qwen-tiny`), 'qwen-deep': QwenImagePipeline.fromPretrained(`${goldens}/qwen-deep`) };
afterAll(() => {
  for (const p of Object.values(pipes)) p.dispose();
  for (const t of Object.values(ref)) t.dispose();
});

describe('QwenImagePipeline', () => {
  it.each(Object.keys(meta.runs))("%s: diffusers' final latents within 1e-4 and its image within 1e-4", (run) => {
    const spec = meta.runs[run];
    const before = memoryStats();
    const decode = `${run}.image` in ref;
    const calls: string[] = [];
    const pipe = pipes[spec.set];
    const stop = pipe.onTransformerCall((c) => calls.push(`${c.step}:${c.branch}`));
    const result = pipe.generate(runRequest(ref, run, decode));
    stop();
    const trueCfg = spec.true_cfg_scale > 1 && `${run}.negative_prompt_embeds` in ref;
    expect(calls).toHaveLength(spec.steps * (trueCfg ? 2 : 1));
    if (trueCfg) expect(calls.slice(0, 2)).toEqual(['0:cond', '0:uncond']);
    expect(relativeL2(result.latents, ref[`${run}.latents_out`])).toBeLessThan(1e-4);
    if (decode) {
      expect(result.image?.shape).toEqual([spec.batch, spec.height, spec.width, 3]);
      expect(relativeL2(result.image as NonNullable<typeof result.image>, ref[`${run}.image`])).toBeLessThan(1e-4);
    } else {
      expect(result.image).toBeNull();
    }
    result.latents.dispose();
    result.image?.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it('runs the norm-rescaled true CFG: without the negative embeddings the latents differ', () => {
    const request = runRequest(ref, 'cfg_square', false);
    const plain = pipes['qwen-tiny'].generate({ ...request, negativePromptEmbeds: undefined, negativePromptEmbedsMask: undefined });
    expect(relativeL2(plain.latents, ref['cfg_square.latents_out'])).toBeGreaterThan(1e-2);
    plain.latents.dispose();
  });
});
