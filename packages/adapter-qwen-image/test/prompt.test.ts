// Qwen-Image from text: its Qwen2 tokenizer and Qwen2.5-VL text encoder, QwenImagePipeline's
// encode_prompt and a true-CFG run from a prompt and a negative prompt, against diffusers
// (test/goldens/qwen-prompt, written by tools/make_prompt_references.py).
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { QWEN_IMAGE_PROMPT_TEMPLATE, formatPrompt, loadTokenizer } from '@ditcache/text-encoders';

import qwenImageCliFamily from '../src/cli-family.js';
import { QwenImagePipeline, TEXT_COMPONENTS } from '../src/index.js';
import { goldens, relativeL2 } from './helpers.js';

const data = `${goldens}/qwen-prompt`;
const tiny = `${goldens}/qwen-tiny`;
const meta = JSON.parse(readFileSync(`${data}/meta.json`, 'utf-8')) as {
  prompts: string[];
  sequence_lengths: number[];
  mask_is_none: Record<string, boolean>;
  overlong_prompt: string;
  overlong_tail: number;
  run: { prompt: string; negative_prompt: string; true_cfg_scale: number; num_inference_steps: number; height: number; width: number };
};
const ref = loadSafetensors(`${data}/prompts.safetensors`);

/** qwen-tiny's transformer, VAE and scheduler with the reference's tokenizer and text encoder. */
const folder = mkdtempSync(join(tmpdir(), 'ditcache-qwen-text-'));
for (const entry of ['transformer', 'vae', 'scheduler', 'model_index.json']) symlinkSync(join(tiny, entry), join(folder, entry));
for (const entry of TEXT_COMPONENTS) symlinkSync(join(data, entry), join(folder, entry));
afterAll(() => {
  rmSync(folder, { recursive: true, force: true });
  for (const t of Object.values(ref)) t.dispose();
});

const values = (t: Tensor): number[] => Array.from(t.toFloat32Array());

describe('QwenImagePipeline from text', () => {
  it("tokenizes the templated prompts as transformers does: padded to the longest, the template's tokens included", () => {
    const tokenizer = loadTokenizer(join(data, 'tokenizer'));
    const texts = meta.prompts.map((p) => formatPrompt(QWEN_IMAGE_PROMPT_TEMPLATE.template, p));
    const batch = tokenizer.encodeBatch(texts, { padding: 'longest', maxLength: 1024 + 34, truncation: true });
    expect(batch.ids.flat()).toEqual(values(ref.input_ids));
    expect(batch.attentionMask.flat()).toEqual(values(ref.attention_mask));
  });

  it.each(meta.sequence_lengths)("encodePrompt at max_sequence_length %i: diffusers' embeddings and mask", (length) => {
    using pipe = QwenImagePipeline.fromPretrained(folder);
    expect(pipe.textEncoders?.loaded).toBe(false);
    const before = memoryStats();
    const e = pipe.encodePrompt(meta.prompts, { maxSequenceLength: length });
    expect(e.promptEmbeds.shape).toEqual(ref[`prompt_embeds_${length}`].shape);
    expect(relativeL2(e.promptEmbeds, ref[`prompt_embeds_${length}`])).toBeLessThan(1e-5);
    // At 1024 the prompts' lengths differ and diffusers returns the mask; at 8 every prompt fills
    // the 8 (the tiny tokenizer leaves part of the system prompt past the 34 dropped) and it returns None.
    expect(meta.mask_is_none).toEqual({ '1024': false, '8': true });
    if (meta.mask_is_none[String(length)]) expect(e.promptEmbedsMask).toBeNull();
    else {
      expect(e.promptEmbedsMask?.dtype).toBe('int32');
      expect(values(e.promptEmbedsMask as Tensor)).toEqual(values(ref[`prompt_embeds_mask_${length}`]));
    }
    // The long prompt loses what is past the limit: none at 1024, all but 8 tokens at 8.
    const longest = values(ref.prompt_embeds_mask_1024).slice(-ref.prompt_embeds_mask_1024.shape[1]);
    expect(e.truncatedTokens).toBe(length === 8 ? longest.filter((m) => m === 1).length - 8 : 0);
    e.promptEmbeds.dispose();
    e.promptEmbedsMask?.dispose();
    pipe.textEncoders!.release();
    expect(pipe.textEncoders?.loaded).toBe(false);
    expect(memoryStats()).toEqual(before);
  });

  it('cuts a prompt past 1024 + 34 tokens where the tokenizer does (the template tail with it), and returns no mask for one prompt', () => {
    using pipe = QwenImagePipeline.fromPretrained(folder);
    const e = pipe.encodePrompt(meta.overlong_prompt, { maxSequenceLength: 1024 });
    expect(e.promptEmbeds.shape).toEqual([1, 1024, 24]);
    expect(e.promptEmbedsMask).toBeNull();
    expect(e.truncatedTokens).toBeGreaterThan(0);
    tidy(() => {
      const tail = e.promptEmbeds.narrow(1, 1024 - meta.overlong_tail, meta.overlong_tail);
      expect(relativeL2(tail, ref.overlong_prompt_embeds_tail)).toBeLessThan(1e-5);
    });
    e.promptEmbeds.dispose();
  });

  it('generates from a prompt and a negative prompt (true CFG) what diffusers does, and can release the text encoder after encoding', () => {
    using pipe = QwenImagePipeline.fromPretrained(folder, { releaseTextEncoders: true });
    const { run } = meta;
    const out = pipe.generate({
      prompt: run.prompt,
      negativePrompt: run.negative_prompt,
      trueCfgScale: run.true_cfg_scale,
      latents: ref.run_latents_in,
      height: run.height,
      width: run.width,
      numInferenceSteps: run.num_inference_steps,
      decode: false,
    });
    expect(relativeL2(out.latents, ref.run_latents_out)).toBeLessThan(1e-4);
    expect(pipe.textEncoders?.loaded).toBe(false);
    // Without the negative prompt there is no true CFG (diffusers uses no "" default): another result.
    const plain = pipe.generate({
      prompt: run.prompt,
      trueCfgScale: run.true_cfg_scale,
      latents: ref.run_latents_in,
      height: run.height,
      width: run.width,
      numInferenceSteps: run.num_inference_steps,
      decode: false,
    });
    expect(relativeL2(plain.latents, ref.run_latents_out)).toBeGreaterThan(1e-2);
    out.latents.dispose();
    plain.latents.dispose();
  });

  it('encodes in bfloat16 under dtype bfloat16', () => {
    using pipe = QwenImagePipeline.fromPretrained(folder, { dtype: 'bfloat16', preloadTextEncoders: true });
    expect(pipe.textEncoders?.loaded).toBe(true);
    const e = pipe.encodePrompt(meta.prompts, { maxSequenceLength: 8 });
    expect(e.promptEmbeds.dtype).toBe('bfloat16');
    // bfloat16's rounding through the tiny encoder (held to transformers' bf16 run in @ditcache/text-encoders).
    const error = relativeL2(e.promptEmbeds, ref.prompt_embeds_8);
    expect(error).toBeGreaterThan(1e-4);
    expect(error).toBeLessThan(1e-2);
    e.promptEmbeds.dispose();
    e.promptEmbedsMask?.dispose();
  });

  it('gives ditcache encode-prompt prompt_embeds and prompt_embeds_mask, with the truncation note', () => {
    const { tensors, notes } = qwenImageCliFamily.encodePrompt!(folder, [meta.prompts[3]], { maxSequenceLength: 8 });
    expect(Object.keys(tensors).sort()).toEqual(['prompt_embeds', 'prompt_embeds_mask']);
    tidy(() => expect(relativeL2(tensors.prompt_embeds, ref.prompt_embeds_8.narrow(0, 3, 1))).toBeLessThan(1e-5));
    expect(values(tensors.prompt_embeds_mask)).toEqual(Array(8).fill(1));
    expect(notes).toEqual([expect.stringMatching(/^Qwen2.5-VL kept 8 tokens of the prompt \(at most 8\); \d+ were truncated$/)]);
    for (const t of Object.values(tensors)) t.dispose();
  });

  it('says what is wrong with the text inputs', () => {
    using pipe = QwenImagePipeline.fromPretrained(folder);
    using textless = QwenImagePipeline.fromPretrained(tiny);
    expect(textless.textEncoders).toBeNull();
    expect(() => textless.encodePrompt('a cat')).toThrow(/the folder has no tokenizer\/ and text_encoder\/ folders; give promptEmbeds/);
    expect(() => textless.generate({ prompt: 'a cat', numInferenceSteps: 1 })).toThrow(/the folder has no tokenizer\/ and text_encoder\/ folders/);
    expect(() => pipe.generate({ prompt: 'a cat', promptEmbeds: ref.prompt_embeds_8, numInferenceSteps: 1 })).toThrow(
      /give either prompt or promptEmbeds \/ promptEmbedsMask, not both/,
    );
    expect(() => pipe.generate({ prompt: 'a cat', negativePrompt: 'blur', negativePromptEmbeds: ref.prompt_embeds_8, numInferenceSteps: 1 })).toThrow(
      /give either negativePrompt or negativePromptEmbeds/,
    );
    expect(() => pipe.generate({ numInferenceSteps: 1 })).toThrow(/give a prompt \(the folder needs tokenizer\/ and text_encoder\/\) or promptEmbeds/);
    expect(() => pipe.generate({ prompt: ['a', 'b'], negativePrompt: ['c'], numInferenceSteps: 1, height: 32, width: 32 })).toThrow(
      /1 negative prompts for a batch of 2/,
    );
    expect(() => pipe.encodePrompt('a cat', { maxSequenceLength: 1025 })).toThrow(/maxSequenceLength must be an integer from 1 to 1024, got 1025/);
    expect(() => pipe.generate({ prompt: 'a cat', maxSequenceLength: 1025 })).toThrow(/maxSequenceLength must be an integer from 1 to 1024, got 1025/);
    expect(() => qwenImageCliFamily.checkModel?.(tiny, { prompt: 'a cat' })).toThrow(/has no tokenizer\/, text_encoder\/ \(text encoder\)/);
  });
});
