import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, type Tensor } from '@ditcache/cuda-runtime';

import { LtxPipeline } from '../src/index.js';
import { goldens, metas, relativeL2, relativeL2Values, request } from './helpers.js';
describe.each(['ltx-tiny', 'ltx-095-tiny'] as const)('LtxPipeline on %s', (set) => {
  const ref = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
  const pipe = LtxPipeline.fromPretrained(`${goldens}/${set}`);
  afterAll(() => {
    pipe.dispose();
    for (const t of Object.values(ref)) t.dispose();
  });

  it('matches diffusers: schedule (dynamic and terminal shift), latents under batched CFG, decoded frames', () => {
    const before = memoryStats();
    const out = pipe.generate(request(ref, set));
    expect(relativeL2Values(out.timesteps, ref.timesteps.toFloat32Array())).toBeLessThan(1e-7);
    expect(relativeL2Values(out.sigmas, ref.sigmas.toFloat32Array())).toBeLessThan(1e-7);
    expect(relativeL2(out.latents, ref.latents_out)).toBeLessThan(1e-4);
    expect(out.video?.shape).toEqual(ref.video_out.shape);
    expect(relativeL2(out.video as Tensor, ref.video_out)).toBeLessThan(1e-4);
    out.latents.dispose();
    out.video?.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it('matches diffusers without CFG (guidance 1) and at another frame rate (12), which moves the rotary positions along the frames', () => {
    const noCfg = pipe.generate({ ...request(ref, set), guidanceScale: 1, decode: false });
    expect(relativeL2(noCfg.latents, ref.latents_out_guidance_1)).toBeLessThan(1e-4);
    const fps12 = pipe.generate({ ...request(ref, set), frameRate: 12, decode: false });
    expect(relativeL2(fps12.latents, ref.latents_out_fps_12)).toBeLessThan(1e-4);
    expect(relativeL2(fps12.latents, ref.latents_out)).toBeGreaterThan(1e-3);
    noCfg.latents.dispose();
    fps12.latents.dispose();
  });

  it('matches diffusers at another frame count (its own latent grid, rotary positions and decoded frames)', () => {
    const frames = metas[set].pipeline.other_num_frames;
    const out = pipe.generate({ ...request(ref, set), numFrames: frames, latents: ref[`frames_${frames}.latents_in`] });
    expect(relativeL2(out.latents, ref[`frames_${frames}.latents_out`])).toBeLessThan(1e-4);
    expect(out.video?.shape).toEqual(ref[`frames_${frames}.video_out`].shape);
    expect(relativeL2(out.video as Tensor, ref[`frames_${frames}.video_out`])).toBeLessThan(1e-4);
    out.latents.dispose();
    out.video?.dispose();
  });

  it('floors a frame count that is not (temporal ratio) k + 1, as diffusers does', () => {
    const p = metas[set].pipeline;
    const temporal = pipe.vae.temporalCompressionRatio;
    expect(pipe.latentGrid(p.height, p.width, p.num_frames + temporal - 1)).toEqual(pipe.latentGrid(p.height, p.width, p.num_frames));
    expect(pipe.latentGrid(p.height, p.width, p.num_frames + temporal)[0]).toBe(pipe.latentGrid(p.height, p.width, p.num_frames)[0] + 1);
  });
});

describe('LtxPipeline decoding at a timestep (0.9.5-like VAE)', () => {
  const set = 'ltx-095-tiny';
  const ref = loadSafetensors(`${goldens}/${set}/pipeline.safetensors`);
  afterAll(() => {
    for (const t of Object.values(ref)) t.dispose();
  });

  it('blends the seed-7 noise at decode_noise_scale 0.025 and decodes at timestep 0.05, as diffusers does', () => {
    using pipe = LtxPipeline.fromPretrained(`${goldens}/${set}`);
    const out = pipe.generate({ ...request(ref, set), seed: 7, decodeTimestep: 0.05, decodeNoiseScale: 0.025 });
    expect(relativeL2(out.video as Tensor, ref['video_out_decode_t0.05'])).toBeLessThan(1e-4);
    expect(relativeL2(out.video as Tensor, ref.video_out)).toBeGreaterThan(1e-3);
    out.latents.dispose();
    out.video?.dispose();
  });

  it('draws the initial latents and then the decode noise from one seed-11 generator, as diffusers does', () => {
    using pipe = LtxPipeline.fromPretrained(`${goldens}/${set}`);
    const out = pipe.generate({ ...request(ref, set), latents: undefined, seed: 11, decodeTimestep: 0.05, decodeNoiseScale: 0.025 });
    expect(out.seed).toBe(11);
    expect(relativeL2(out.video as Tensor, ref['video_out_seed_11_decode_t0.05'])).toBeLessThan(1e-4);
    out.latents.dispose();
    out.video?.dispose();
  });
});
