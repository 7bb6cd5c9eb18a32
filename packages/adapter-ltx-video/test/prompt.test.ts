// Prompts as text: LtxPromptEncoder against diffusers' LTXPipeline.encode_prompt (T5 on every
// token, pads included; the tokenizer's mask), its truncation warning, pipeline calls from text with
// and without a negative prompt, and the CLI family's encode-prompt (generate --prompt through the
// bin: packages/cli's test/prompt-t5.test.ts). tools/make_prompt_references.py wrote the tiny T5
// (width 12, ltx-tiny's caption_channels) and the references.
import { readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats } from '@ditcache/cuda-runtime';
import { UsageError } from '@ditcache/diffusion/cli';
import { T5Encoder } from '@ditcache/text-encoders';

import family from '../src/cli-family.js';
import { LtxPipeline, type LtxLoadOptions } from '../src/index.js';
import { goldens, relativeL2 } from './helpers.js';
import { scratchDir } from '../../../scripts/testing/scratch-dir.js';

const text = `${goldens}/ltx-prompt`;
const meta = JSON.parse(readFileSync(`${text}/meta.json`, 'utf-8')) as {
  prompts: string[];
  negative_prompt: string;
  max_sequence_length: number;
  warnings: string[];
  height: number;
  width: number;
  num_frames: number;
  frame_rate: number;
  num_inference_steps: number;
  guidance_scale: number;
};

/** ltx-tiny with the tiny T5 and its tokenizer. */
function ltxWithText(): string {
  const dir = scratchDir('ditcache-ltx-text-');
  for (const entry of ['model_index.json', 'transformer', 'vae', 'scheduler']) symlinkSync(`${goldens}/ltx-tiny/${entry}`, join(dir, entry));
  for (const entry of ['tokenizer', 'text_encoder']) symlinkSync(join(text, entry), join(dir, entry));
  return dir;
}

const dir = ltxWithText();
const ref = loadSafetensors(`${text}/prompts.safetensors`);
const load = (opts: LtxLoadOptions = {}): LtxPipeline => LtxPipeline.fromPretrained(dir, opts);
const run = {
  latents: ref.latents_in,
  height: meta.height,
  width: meta.width,
  numFrames: meta.num_frames,
  frameRate: meta.frame_rate,
  numInferenceSteps: meta.num_inference_steps,
  guidanceScale: meta.guidance_scale,
  decode: false,
};
afterAll(() => {
  for (const t of Object.values(ref)) t.dispose();
});

describe('LtxPipeline with T5', () => {
  it("encodes prompts as diffusers' encode_prompt: token ids, embeddings, masks, truncation warning", () => {
    using pipe = load();
    expect(pipe.textEncoders?.loaded).toBe(false);
    const before = memoryStats();
    const e = pipe.encodePrompt(meta.prompts, { maxSequenceLength: meta.max_sequence_length });
    expect(Array.from(e.inputIds.toInt32Array())).toEqual(Array.from(ref.input_ids.toInt32Array()));
    expect(relativeL2(e.promptEmbeds, ref.prompt_embeds)).toBeLessThan(1e-5);
    expect(Array.from(e.promptAttentionMask.toFloat32Array())).toEqual(Array.from(ref.prompt_attention_mask.toFloat32Array()));
    expect(e.warning).toBe(meta.warnings[0]);
    for (const t of [e.promptEmbeds, e.promptAttentionMask, e.inputIds]) t.dispose();
    // release() gives back all T5 took.
    pipe.textEncoders?.release();
    expect(pipe.textEncoders?.loaded).toBe(false);
    expect(memoryStats()).toEqual(before);
  });

  it('pads to 128 tokens by default, as LTXPipeline does', () => {
    using pipe = load();
    const e = pipe.encodePrompt(meta.prompts[0]);
    expect(e.promptEmbeds.shape).toEqual(ref.prompt_embeds_128.shape);
    expect(relativeL2(e.promptEmbeds, ref.prompt_embeds_128)).toBeLessThan(1e-5);
    expect(Array.from(e.promptAttentionMask.toFloat32Array())).toEqual(Array.from(ref.prompt_attention_mask_128.toFloat32Array()));
    expect(e.warning).toBeNull();
    for (const t of [e.promptEmbeds, e.promptAttentionMask, e.inputIds]) t.dispose();
  });

  it('encodes in bfloat16 under dtype bfloat16: T5 on the same tokens, unmasked, not widened', () => {
    using pipe = load({ dtype: 'bfloat16' });
    const e = pipe.encodePrompt(meta.prompts, { maxSequenceLength: meta.max_sequence_length });
    expect(e.promptEmbeds.dtype).toBe('bfloat16');
    using t5 = T5Encoder.load(join(text, 'text_encoder'), { dtype: 'bfloat16' });
    using direct = t5.forward(e.inputIds);
    expect(relativeL2(e.promptEmbeds, direct)).toBe(0);
    expect(relativeL2(e.promptEmbeds, ref.prompt_embeds)).toBeLessThan(2e-2);
    for (const t of [e.promptEmbeds, e.promptAttentionMask, e.inputIds]) t.dispose();
  });

  it('generates from a prompt and a negative prompt as diffusers does, releasing T5 after encoding', () => {
    using pipe = load({ releaseTextEncoders: true });
    using latents = pipe.generate({
      prompt: meta.prompts[0],
      negativePrompt: meta.negative_prompt,
      maxSequenceLength: meta.max_sequence_length,
      ...run,
    }).latents;
    expect(relativeL2(latents, ref.latents_out)).toBeLessThan(1e-4);
    expect(pipe.textEncoders?.loaded).toBe(false);
  });

  it('encodes "" as the negative prompt when none is given', () => {
    using pipe = load();
    using latents = pipe.generate({ prompt: meta.prompts[0], maxSequenceLength: meta.max_sequence_length, ...run }).latents;
    expect(relativeL2(latents, ref.latents_out_no_negative)).toBeLessThan(1e-4);
  });

  it('refuses a prompt with embeddings, and a prompt for a folder without text encoders, naming the missing folders', () => {
    using pipe = load();
    expect(() => pipe.generate({ ...run, prompt: 'a cat', promptEmbeds: ref.prompt_embeds, promptAttentionMask: ref.prompt_attention_mask })).toThrow(
      /give either prompt or promptEmbeds \/ promptAttentionMask, not both/,
    );
    expect(() => pipe.generate({ ...run, negativePrompt: 'x', promptEmbeds: ref.prompt_embeds })).toThrow(/give a prompt, or both/);
    using bare = LtxPipeline.fromPretrained(`${goldens}/ltx-tiny`);
    expect(bare.textEncoders).toBeNull();
    expect(() => bare.generate({ ...run, prompt: 'a cat' })).toThrow(/ltx-tiny has no tokenizer\/, text_encoder\/; give promptEmbeds/);
    expect(() => bare.encodePrompt('a cat')).toThrow(/has no tokenizer\/, text_encoder\//);
    expect(() => family.checkModel?.(`${goldens}/ltx-tiny`, { prompt: 'a cat' })).toThrow(UsageError);
    expect(() => family.checkModel?.(`${goldens}/ltx-tiny`, { prompt: 'a cat' })).toThrow(/has no tokenizer\/, text_encoder\/ \(LTX-Video encodes prompts/);
  });
});

describe('the CLI with T5: encode-prompt and generate --prompt', () => {
  it("encode-prompt writes the pipeline's prompt_embeds and prompt_attention_mask, and diffusers' warning", () => {
    const { tensors, notes } = family.encodePrompt!(dir, [meta.prompts[3]], { maxSequenceLength: meta.max_sequence_length });
    expect(Object.keys(tensors).sort()).toEqual(['prompt_attention_mask', 'prompt_embeds']);
    using last = ref.prompt_embeds.narrow(0, 3, 1).clone();
    expect(relativeL2(tensors.prompt_embeds, last)).toBeLessThan(1e-5);
    // Alone, the longest prompt of the batch is quoted as in diffusers' batch warning.
    const quoted = meta.warnings[0].slice(meta.warnings[0].lastIndexOf(", '") + 2, -1);
    expect(notes).toEqual([`${meta.warnings[0].slice(0, meta.warnings[0].indexOf('['))}[${quoted}]`]);
    for (const t of Object.values(tensors)) t.dispose();
  });
});
