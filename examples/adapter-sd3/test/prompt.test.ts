// Text to image: the two CLIP encoders' penultimate states and projections, T5, and the
// StableDiffusion3Pipeline's encode_prompt, against diffusers (test/goldens/sd3-prompt, written by
// tools/make_prompt_references.py), and a run from text.
import { readFileSync, rmSync } from 'node:fs';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats } from '@ditcache/cuda-runtime';

import sd3CliFamily from '../src/cli-family.js';
import { StableDiffusion3Pipeline } from '../src/index.js';
import { TEXT_COMPONENTS, goldens, relativeL2, sd3FolderWith } from './helpers.js';

const data = `${goldens}/sd3-prompt`;
const meta = JSON.parse(readFileSync(`${data}/meta.json`, 'utf-8')) as {
  prompts: string[];
  sequence_lengths: number[];
  run: { prompt: string; negative_prompt: string; num_inference_steps: number; guidance_scale: number; height: number; width: number };
};
const ref = loadSafetensors(`${data}/prompts.safetensors`);
const folder = sd3FolderWith(TEXT_COMPONENTS);
afterAll(() => {
  rmSync(folder, { recursive: true, force: true });
  for (const t of Object.values(ref)) t.dispose();
});

describe('StableDiffusion3Pipeline from text', () => {
  it.each(meta.sequence_lengths)("encodePrompt at max_sequence_length %i: diffusers' joint and pooled embeddings", (length) => {
    using pipe = StableDiffusion3Pipeline.fromPretrained(folder);
    const { promptEmbeds, pooledPromptEmbeds } = pipe.encodePrompt(meta.prompts, { maxSequenceLength: length });
    expect(promptEmbeds.shape).toEqual(ref[`prompt_embeds_${length}`].shape);
    expect(relativeL2(promptEmbeds, ref[`prompt_embeds_${length}`])).toBeLessThan(1e-5);
    expect(relativeL2(pooledPromptEmbeds, ref[`pooled_prompt_embeds_${length}`])).toBeLessThan(1e-5);
    promptEmbeds.dispose();
    pooledPromptEmbeds.dispose();
  });

  it('encodes in bfloat16 under dtype bfloat16: two CLIPs and T5 in that dtype, as diffusers under torch_dtype', () => {
    using pipe = StableDiffusion3Pipeline.fromPretrained(folder, { dtype: 'bfloat16' });
    const length = meta.sequence_lengths[0];
    const { promptEmbeds, pooledPromptEmbeds } = pipe.encodePrompt(meta.prompts, { maxSequenceLength: length });
    expect([promptEmbeds.dtype, pooledPromptEmbeds.dtype]).toEqual(['bfloat16', 'bfloat16']);
    // bfloat16's rounding through the tiny encoders (each held to transformers' bfloat16 run in @ditcache/text-encoders).
    expect(relativeL2(promptEmbeds, ref[`prompt_embeds_${length}`])).toBeLessThan(3e-2);
    expect(relativeL2(pooledPromptEmbeds, ref[`pooled_prompt_embeds_${length}`])).toBeLessThan(3e-2);
    promptEmbeds.dispose();
    pooledPromptEmbeds.dispose();
  });

  it('tokenizes as transformers does, the CLIP-G tokenizer padding with "!"', () => {
    using pipe = StableDiffusion3Pipeline.fromPretrained(folder);
    const encoder = pipe.promptEncoder!;
    for (const [i, tokenizer] of encoder.clipTokenizers.entries()) {
      expect(meta.prompts.flatMap((p) => tokenizer.encodePadded(p, 77).ids)).toEqual(Array.from(ref[`clip_input_ids_${i + 1}`].toFloat32Array()));
    }
    expect(meta.prompts.flatMap((p) => encoder.t5Tokenizer!.encodePadded(p, 12).ids)).toEqual(Array.from(ref.t5_input_ids_12.toFloat32Array()));
  });

  it('generates from a prompt and a negative prompt what diffusers does, and can release the text encoders after encoding', () => {
    using pipe = StableDiffusion3Pipeline.fromPretrained(folder, { releaseTextEncoders: true });
    const { run } = meta;
    const before = memoryStats();
    const { latents } = pipe.generate({
      prompt: run.prompt,
      negativePrompt: run.negative_prompt,
      latents: ref.run_latents_in,
      height: run.height,
      width: run.width,
      numInferenceSteps: run.num_inference_steps,
      guidanceScale: run.guidance_scale,
      decode: false,
    });
    expect(relativeL2(latents, ref.run_latents_out)).toBeLessThan(1e-4);
    expect(pipe.promptEncoder!.loaded).toBe(false);
    latents.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it('gives ditcache encode-prompt the same embeddings through its CLI family', () => {
    const { tensors, notes } = sd3CliFamily.encodePrompt!(folder, [meta.prompts[0]], { maxSequenceLength: 12 });
    expect(Object.keys(tensors).sort()).toEqual(['pooled_prompt_embeds', 'prompt_embeds']);
    expect(notes).toEqual([]);
    expect(relativeL2(tensors.prompt_embeds, ref.prompt_embeds_12.slice(0, 0, 1))).toBeLessThan(1e-5);
    expect(relativeL2(tensors.pooled_prompt_embeds, ref.pooled_prompt_embeds_12.slice(0, 0, 1))).toBeLessThan(1e-5);
    for (const t of Object.values(tensors)) t.dispose();
  });

  it('runs without T5, as SD3 can: 77 zero tokens in its place', () => {
    const dir = sd3FolderWith(TEXT_COMPONENTS.filter((n) => !n.endsWith('_3')));
    try {
      using pipe = StableDiffusion3Pipeline.fromPretrained(dir);
      const { promptEmbeds, pooledPromptEmbeds } = pipe.encodePrompt('a cat');
      expect(promptEmbeds.shape).toEqual([1, 77 + 77, 32]);
      expect(Math.max(...promptEmbeds.slice(1, 77).toFloat32Array().map(Math.abs))).toBe(0);
      expect(pooledPromptEmbeds.shape).toEqual([1, 24]);
      promptEmbeds.dispose();
      pooledPromptEmbeds.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says what is wrong with the text inputs', () => {
    using pipe = StableDiffusion3Pipeline.fromPretrained(folder);
    using textless = StableDiffusion3Pipeline.fromPretrained(`${goldens}/sd3-tiny`);
    expect(textless.promptEncoder).toBeNull();
    const request = { latents: ref.run_latents_in, height: meta.run.height, width: meta.run.width, numInferenceSteps: 1 };
    expect(() => pipe.generate(request)).toThrow(/give either prompt or promptEmbeds/);
    expect(() => pipe.generate({ ...request, prompt: ['a', 'b'], negativePrompt: ['c'] })).toThrow(/negativePrompt has 1 prompts for a batch of 2/);
    expect(() => textless.generate({ ...request, prompt: 'a' })).toThrow(/has no tokenizers \/ text encoders, so it takes prompt embeddings, not a prompt/);
  });
});
