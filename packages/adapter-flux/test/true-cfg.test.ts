import { afterAll, describe, expect, it } from 'vitest';

import { add, full, loadSafetensors, memoryStats, mul, sub, tidy, zeros } from '@ditcache/cuda-runtime';
import { randnTensor } from '@ditcache/diffusion';

import { FluxPipeline, latentImageIds, packLatents, type TransformerCall } from '../src/index.js';
import { goldens, relativeL2 } from './helpers.js';

describe('FluxPipeline true CFG and seeds', () => {
  const ref = loadSafetensors(`${goldens}/flux-tiny-guidance/pipeline.safetensors`);
  const base = { promptEmbeds: ref.prompt_embeds, pooledPromptEmbeds: ref.pooled_prompt_embeds, height: 32, width: 32 };
  afterAll(() => {
    for (const t of Object.values(ref)) t.dispose();
  });

  it('runs cond then uncond each step and combines them as uncond + scale * (cond - uncond)', () => {
    using pipe = FluxPipeline.fromPretrained(`${goldens}/flux-tiny-guidance`);
    using negative = randnTensor([...ref.prompt_embeds.shape], 11);
    using negativePooled = randnTensor([...ref.pooled_prompt_embeds.shape], 12);
    const before = memoryStats();
    const calls: TransformerCall[] = [];
    const off = pipe.onTransformerCall((c) => calls.push(c));
    const cfg = { negativePromptEmbeds: negative, negativePooledPromptEmbeds: negativePooled, trueCfgScale: 4, guidanceScale: 2 };
    const out = pipe.generate({ ...base, ...cfg, latents: ref.latents_in, numInferenceSteps: 1, decode: false });
    off();
    expect(calls.map((c) => `${c.step}:${c.branch}`)).toEqual(['0:cond', '0:uncond']);

    const expected = tidy(() => {
      const predict = (embeds: typeof negative, pooled: typeof negative) =>
        pipe.transformer.forward({
          hiddenStates: ref.latents_in,
          encoderHiddenStates: embeds,
          pooledProjections: pooled,
          timestep: full([1], out.timesteps[0] / 1000),
          imgIds: latentImageIds(8, 8),
          txtIds: zeros([7, 3]),
          guidance: full([1], 2),
        });
      const cond = predict(ref.prompt_embeds, ref.pooled_prompt_embeds);
      const uncond = predict(negative, negativePooled);
      const noise = add(uncond, mul(sub(cond, uncond), 4));
      return add(ref.latents_in, mul(noise, Math.fround(out.sigmas[1] - out.sigmas[0])));
    });
    expect(relativeL2(out.latents, expected)).toBeLessThan(1e-6);
    out.latents.dispose();
    expected.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it('equals the run without CFG when the negative prompt is the prompt, and skips uncond at scale 1', () => {
    using pipe = FluxPipeline.fromPretrained(`${goldens}/flux-tiny-guidance`);
    const plain = pipe.generate({ ...base, latents: ref.latents_in, numInferenceSteps: 3 });
    const same = pipe.generate({
      ...base,
      latents: ref.latents_in,
      numInferenceSteps: 3,
      negativePromptEmbeds: ref.prompt_embeds,
      negativePooledPromptEmbeds: ref.pooled_prompt_embeds,
      trueCfgScale: 5,
    });
    expect(relativeL2(same.image!, plain.image!)).toBe(0);
    const branches: string[] = [];
    const off = pipe.onTransformerCall((c) => branches.push(c.branch));
    const unit = pipe.generate({
      ...base,
      latents: ref.latents_in,
      numInferenceSteps: 3,
      negativePromptEmbeds: ref.prompt_embeds,
      negativePooledPromptEmbeds: ref.pooled_prompt_embeds,
      decode: false,
    });
    off();
    expect(branches).toEqual(['cond', 'cond', 'cond']);
    for (const t of [plain.latents, plain.image!, same.latents, same.image!, unit.latents]) t.dispose();
  });

  it('draws the initial noise of a seed as torch.randn of the unpacked latents', () => {
    using pipe = FluxPipeline.fromPretrained(`${goldens}/flux-tiny`);
    const seeded = pipe.generate({ ...base, seed: 1234, numInferenceSteps: 2, decode: false });
    expect(seeded.seed).toBe(1234);
    using noise = tidy(() => packLatents(randnTensor([1, 4, 16, 16], 1234)));
    const given = pipe.generate({ ...base, latents: noise, numInferenceSteps: 2, decode: false });
    expect(given.seed).toBeNull();
    expect(relativeL2(seeded.latents, given.latents)).toBe(0);
    const random = pipe.generate({ ...base, numInferenceSteps: 1, decode: false });
    expect(Number.isInteger(random.seed)).toBe(true);
    for (const t of [seeded.latents, given.latents, random.latents]) t.dispose();
  });
});
