import { readFileSync } from 'node:fs';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { randnTensor } from '@ditcache/diffusion';

import { WanPipeline, type TransformerCall, type WanTransformer, type WanTransformerInputs } from '../src/index.js';
import { goldens, relativeL2, relativeL2Values } from './helpers.js';

/** Wraps a transformer's forward so that each output is copied into `into`. */
function recordOutputs(transformer: WanTransformer, into: Tensor[]): void {
  const forward = transformer.forward.bind(transformer);
  transformer.forward = (inputs: WanTransformerInputs): Tensor => {
    const out = forward(inputs);
    into.push(out.clone().keep());
    return out;
  };
}

describe.each([
  ['Wan 2.1, FlowMatchEuler', 'wan-tiny'],
  ['Wan 2.2, two experts, UniPC', 'wan-tiny/wan22'],
])('WanPipeline (%s)', (_, set) => {
  it('matches diffusers step by step, in the final latents, the decoder input and output, and the frames', () => {
    const meta = JSON.parse(readFileSync(`${goldens}/${set}/meta.json`, 'utf-8')) as Record<string, unknown>;
    const ref = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
    using pipe = WanPipeline.fromPretrained(`${goldens}/${set}`);
    const outputs: Tensor[] = [];
    recordOutputs(pipe.transformer, outputs);
    if (pipe.transformer2) recordOutputs(pipe.transformer2, outputs);
    const decoded: Tensor[] = [];
    const decode = pipe.vae.decode.bind(pipe.vae);
    pipe.vae.decode = (latents: Tensor): Tensor => {
      const video = decode(latents);
      decoded.push(latents.clone().keep(), video.clone().keep());
      return video;
    };
    const before = memoryStats();
    const calls: TransformerCall[] = [];
    const off = pipe.onTransformerCall((c) => calls.push(c));
    const stepLatents: Tensor[] = [];
    const numSteps = meta.num_inference_steps as number;
    const out = pipe.generate({
      promptEmbeds: ref.prompt_embeds,
      negativePromptEmbeds: ref.negative_prompt_embeds,
      latents: ref.latents_in,
      height: meta.height as number,
      width: meta.width as number,
      numFrames: meta.num_frames as number,
      numInferenceSteps: numSteps,
      guidanceScale: meta.guidance_scale as number,
      guidanceScale2: meta.guidance_scale_2 as number | undefined,
      callback: ({ latents }) => void stepLatents.push(latents.clone().keep()),
    });
    off();
    const errors: Record<string, number> = {
      timesteps: relativeL2Values(out.timesteps, ref.timesteps.toFloat32Array()),
      sigmas: relativeL2Values(out.sigmas, ref.sigmas.toFloat32Array()),
      latents_out: relativeL2(out.latents, ref.latents_out),
      vae_decode_in: relativeL2(decoded[0], ref.vae_decode_in),
      vae_decode_out: relativeL2(decoded[1], ref.vae_decode_out),
      video_out: relativeL2(out.video!, ref.video_out),
    };
    const steps = (name: string, of: (i: number) => Tensor): void => {
      for (let i = 0; i < numSteps; ++i) errors[`${name}.${i}`] = tidy(() => relativeL2(of(i), ref[name].narrow(0, i, 1).squeeze(0)));
    };
    steps('step_noise_pred_cond', (i) => outputs[2 * i]);
    steps('step_noise_pred_uncond', (i) => outputs[2 * i + 1]);
    steps('step_latents', (i) => stepLatents[i]);
    for (const [name, err] of Object.entries(errors)) expect(err, name).toBeLessThan(/^(vae_decode|video)/.test(name) ? 1e-3 : 1e-4);
    expect([errors.timesteps, errors.sigmas]).toEqual([0, 0]);
    expect(calls.map((c) => c.step)).toEqual([...Array(numSteps).keys()].flatMap((s) => [s, s]));
    expect(calls.map((c) => c.branch)).toEqual(Array(numSteps).fill(['cond', 'uncond']).flat());
    expect(calls.filter((c) => c.branch === 'cond').map((c) => c.expert)).toEqual(meta.transformer_used_per_step);
    expect(calls.filter((c) => c.branch === 'cond').map((c) => c.timestep)).toEqual([...ref.step_timestep_in.toFloat32Array()]);
    for (const t of [out.latents, out.video!, ...outputs, ...stepLatents, ...decoded]) t.dispose();
    expect(memoryStats()).toEqual(before);
    for (const t of Object.values(ref)) t.dispose();
  });
});

describe('WanPipeline without CFG, with seeds', () => {
  const ref = loadSafetensors(`${goldens}/wan-tiny/pipeline.safetensors`);
  const base = { promptEmbeds: ref.prompt_embeds, height: 32, width: 48, numFrames: 9, numInferenceSteps: 2, decode: false };
  afterAll(() => {
    for (const t of Object.values(ref)) t.dispose();
  });

  it('calls the transformer once per step when guidanceScale is at most 1', () => {
    using pipe = WanPipeline.fromPretrained(`${goldens}/wan-tiny`);
    const calls: TransformerCall[] = [];
    const off = pipe.onTransformerCall((c) => calls.push(c));
    const out = pipe.generate({ ...base, latents: ref.latents_in, guidanceScale: 1, negativePromptEmbeds: ref.negative_prompt_embeds });
    off();
    expect(calls.map((c) => [c.step, c.branch, c.expert])).toEqual([
      [0, 'cond', 'transformer'],
      [1, 'cond', 'transformer'],
    ]);
    expect(out.video).toBeNull();
    out.latents.dispose();
  });

  it('draws the initial noise of a seed as torch.randn of the latent shape', () => {
    using pipe = WanPipeline.fromPretrained(`${goldens}/wan-tiny`);
    const seeded = pipe.generate({ ...base, guidanceScale: 1, seed: 1234 });
    expect(seeded.seed).toBe(1234);
    using noise = randnTensor([1, 16, 3, 4, 6], 1234);
    const given = pipe.generate({ ...base, guidanceScale: 1, latents: noise });
    expect(given.seed).toBeNull();
    expect(relativeL2(seeded.latents, given.latents)).toBe(0);
    const random = pipe.generate({ ...base, guidanceScale: 1, numInferenceSteps: 1 });
    expect(Number.isInteger(random.seed)).toBe(true);
    for (const t of [seeded.latents, given.latents, random.latents]) t.dispose();
  });
});
