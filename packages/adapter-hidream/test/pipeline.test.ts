import { readFileSync } from 'node:fs';

import { afterAll, describe, expect, it } from 'vitest';

import { add, loadSafetensors, memoryStats, mul, neg, tidy, type Tensor } from '@ditcache/cuda-runtime';

import type { HiDreamPipeline, HiDreamTransformerInputs, TransformerCall } from '../src/index.js';
import { goldens, relativeL2, relativeL2Values, snapshot, snapshotError, type Snapshot, loadGoldenPipeline } from './helpers.js';

const dir = `${goldens}/hidream-tiny`;
const meta = JSON.parse(readFileSync(`${dir}/meta.json`, 'utf-8')) as Record<string, number>;
const ref = loadSafetensors(`${dir}/pipeline.safetensors`);
afterAll(() => {
  for (const t of Object.values(ref)) t.dispose();
});

const embeddings = {
  promptEmbedsT5: ref.prompt_embeds_t5,
  promptEmbedsLlama3: ref.prompt_embeds_llama3,
  pooledPromptEmbeds: ref.pooled_prompt_embeds,
  negativePromptEmbedsT5: ref.negative_prompt_embeds_t5,
  negativePromptEmbedsLlama3: ref.negative_prompt_embeds_llama3,
  negativePooledPromptEmbeds: ref.negative_pooled_prompt_embeds,
};

const loadPipeline = (): HiDreamPipeline => loadGoldenPipeline(dir, meta);

/** Copies out every transformer call's timesteps and output. */
function recordTransformer(pipe: HiDreamPipeline): { timesteps: Float32Array[]; outputs: Snapshot[] } {
  const record = { timesteps: [] as Float32Array[], outputs: [] as Snapshot[] };
  const forward = pipe.transformer.forward.bind(pipe.transformer);
  pipe.transformer.forward = (inputs: HiDreamTransformerInputs): Tensor => {
    const out = forward(inputs);
    record.timesteps.push(inputs.timesteps.toFloat32Array());
    record.outputs.push(snapshot(out));
    return out;
  };
  return record;
}

describe('HiDreamPipeline on hidream-tiny', () => {
  it('matches diffusers with batched CFG: schedule, every step, final latents, decoder and image', () => {
    using pipe = loadPipeline();
    const steps = meta.num_inference_steps;
    const record = recordTransformer(pipe);
    const calls: TransformerCall[] = [];
    const off = pipe.onTransformerCall((c) => calls.push(c));
    const stepLatents: Snapshot[] = [];
    const before = memoryStats();
    const out = pipe.generate({
      ...embeddings,
      latents: ref.latents_in,
      height: meta.height,
      width: meta.width,
      numInferenceSteps: steps,
      guidanceScale: meta.guidance_scale,
      callback: ({ latents }) => stepLatents.push(snapshot(latents)),
    });
    off();
    const errors: Record<string, number> = {
      timesteps: relativeL2Values(out.timesteps, ref.timesteps.toFloat32Array()),
      sigmas: relativeL2Values(out.sigmas, ref.sigmas.toFloat32Array()),
      step_timestep_in: relativeL2Values(Float32Array.from(record.timesteps.flatMap((t) => [...t])), ref.step_timestep_in.toFloat32Array()),
      latents_out: relativeL2(out.latents, ref.latents_out),
      image_out: relativeL2(out.image!, ref.image_out),
      vae_decode_out: tidy(() => relativeL2(pipe.vae.decode(ref.vae_decode_in), ref.vae_decode_out)),
    };
    tidy(() => {
      for (let i = 0; i < steps; ++i) {
        errors[`step_model_out.${i}`] = snapshotError(record.outputs[i], ref.step_model_out.narrow(0, i, 1).squeeze(0));
        errors[`step_latents.${i}`] = snapshotError(stepLatents[i], ref.step_latents.narrow(0, i, 1).squeeze(0));
      }
    });
    for (const name of ['timesteps', 'sigmas', 'step_timestep_in']) expect(errors[name], name).toBe(0);
    for (const [name, err] of Object.entries(errors)) expect(err, name).toBeLessThan(/image|vae/.test(name) ? 1e-3 : 1e-4);
    expect([out.height, out.width]).toEqual([meta.height, meta.width]);
    expect(out.seed).toBeNull();
    expect(calls).toEqual(Array.from({ length: steps }, (_, step) => ({ step, numSteps: steps, timestep: out.timesteps[step], branch: 'batched' })));
    out.latents.dispose();
    out.image!.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it('without CFG (guidanceScale 1) makes one conditional call per step: the cond half of the batched one', () => {
    using pipe = loadPipeline();
    const calls: TransformerCall[] = [];
    pipe.onTransformerCall((c) => calls.push(c));
    let firstStep: Snapshot | undefined;
    const before = memoryStats();
    const out = pipe.generate({
      promptEmbedsT5: ref.prompt_embeds_t5,
      promptEmbedsLlama3: ref.prompt_embeds_llama3,
      pooledPromptEmbeds: ref.pooled_prompt_embeds,
      latents: ref.latents_in,
      numInferenceSteps: meta.num_inference_steps,
      guidanceScale: 1,
      decode: false,
      callback: ({ step, latents }) => {
        if (step === 0) firstStep = snapshot(latents);
      },
    });
    expect(out.image).toBeNull();
    expect(calls.every((c) => c.branch === 'cond')).toBe(true);
    // latents + (sigma_1 - sigma_0) * -(the golden's conditional output at step 0)
    const error = tidy(() => {
      const dt = Math.fround(out.sigmas[1] - out.sigmas[0]);
      const cond = ref.step_model_out.narrow(0, 0, 1).narrow(1, 1, 1).squeeze(0);
      return snapshotError(firstStep!, add(ref.latents_in, mul(neg(cond), dt)));
    });
    expect(error).toBeLessThan(1e-5);
    out.latents.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it('rescales the requested size to the default area as diffusers does', () => {
    using pipe = loadPipeline();
    // Expected sizes from diffusers' formula in Python for this VAE (scale factor 2).
    expect(pipe.imageSize()).toEqual({ height: 32, width: 32 });
    expect(pipe.imageSize(768, 1360)).toEqual({ height: 24, width: 40 });
    expect(pipe.imageSize(32, 48)).toEqual({ height: 24, width: 36 });
    expect(pipe.imageSize(33, 32)).toEqual({ height: 32, width: 28 });
    pipe.defaultSampleSize = 128;
    expect(pipe.imageSize()).toEqual({ height: 256, width: 256 });
    expect(pipe.imageSize(768, 1360)).toEqual({ height: 192, width: 340 });
    expect(pipe.imageSize(100, 30)).toEqual({ height: 464, width: 140 });
  });

  it('draws seeded noise for a non-square image and pads its tokens', () => {
    using pipe = loadPipeline();
    const before = memoryStats();
    const out = pipe.generate({ ...embeddings, height: 32, width: 48, numInferenceSteps: 2, seed: 7 });
    expect([out.height, out.width, out.seed]).toEqual([24, 36, 7]);
    expect(out.latents.shape).toEqual([1, 4, 12, 18]);
    expect(out.image!.shape).toEqual([1, 24, 36, 3]);
    expect(out.latents.toFloat32Array().every(Number.isFinite)).toBe(true);
    out.latents.dispose();
    out.image!.dispose();
    expect(memoryStats()).toEqual(before);
  });
});
