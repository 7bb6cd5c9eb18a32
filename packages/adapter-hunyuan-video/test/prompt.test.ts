// HunyuanVideo from text: its Llama 3 and CLIP-L tokenizers and encoders, HunyuanVideoPipeline's
// encode_prompt (the templated prompt, hidden_states[-3], the template's first 95 tokens cropped;
// CLIP's pooled output) and a true-CFG run from a prompt and a negative prompt, against diffusers
// (test/goldens/hunyuan-prompt, written by tools/make_prompt_references.py).
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { HUNYUAN_VIDEO_PROMPT_TEMPLATE, formatPrompt } from '@ditcache/text-encoders';

import family from '../src/cli-family.js';
import { HunyuanVideoPipeline, HunyuanVideoPromptEncoder, TEXT_COMPONENTS, type HunyuanVideoGenerateOptions } from '../src/index.js';
import { goldens, relativeL2 } from './helpers.js';

const data = `${goldens}/hunyuan-prompt`;
const tiny = `${goldens}/hv-tiny`;
const meta = JSON.parse(readFileSync(`${data}/meta.json`, 'utf-8')) as {
  prompts: string[];
  sequence_lengths: number[];
  crop_start: number;
  template_tokens: number;
  llama_truncated_tokens: Record<string, number[]>;
  clip_truncated_tokens: number[];
  run: {
    prompt: string;
    negative_prompt: string;
    true_cfg_scale: number;
    guidance_scale: number;
    num_inference_steps: number;
    height: number;
    width: number;
    num_frames: number;
  };
};
const ref = loadSafetensors(`${data}/prompts.safetensors`);

/** hv-tiny's transformer, VAE and scheduler with the reference's tokenizers and text encoders. */
const folder = mkdtempSync(join(tmpdir(), 'ditcache-hunyuan-text-'));
for (const entry of ['transformer', 'vae', 'scheduler', 'model_index.json']) symlinkSync(join(tiny, entry), join(folder, entry));
for (const entry of TEXT_COMPONENTS) symlinkSync(join(data, entry), join(folder, entry));
afterAll(() => {
  rmSync(folder, { recursive: true, force: true });
  for (const t of Object.values(ref)) t.dispose();
});

const values = (t: Tensor): number[] => Array.from(t.toFloat32Array());
const { run } = meta;
const runOptions = {
  latents: ref.run_latents_in,
  height: run.height,
  width: run.width,
  numFrames: run.num_frames,
  numInferenceSteps: run.num_inference_steps,
  guidanceScale: run.guidance_scale,
  trueCfgScale: run.true_cfg_scale,
  decode: false,
};

describe('HunyuanVideoPipeline from text', () => {
  it.each(meta.sequence_lengths)(
    'tokenizes as transformers at max_sequence_length %i: Llama the templated prompt at L + 95, CLIP the prompt at 77',
    (length) => {
      using encoder = new HunyuanVideoPromptEncoder(folder);
      const [llama, clip] = encoder.tokenizers;
      const texts = meta.prompts.map((p) => formatPrompt(HUNYUAN_VIDEO_PROMPT_TEMPLATE.template, p));
      const llamaIds = texts.map((t) => llama.encodePadded(t, length + meta.crop_start));
      expect(llamaIds.flatMap((e) => e.ids)).toEqual(values(ref[`input_ids_${length}`]));
      expect(llamaIds.map((e) => e.truncatedTokens)).toEqual(meta.llama_truncated_tokens[String(length)]);
      const clipIds = meta.prompts.map((p) => clip.encodePadded(p, 77));
      expect(clipIds.flatMap((e) => e.ids)).toEqual(values(ref.clip_input_ids));
      expect(clipIds.map((e) => e.truncatedTokens)).toEqual(meta.clip_truncated_tokens);
      // The tiny tokenizer splits the template into more than Llama 3's 95 tokens; the crop stays 95, as diffusers passes it.
      expect(llama.encode(HUNYUAN_VIDEO_PROMPT_TEMPLATE.template).length).toBe(meta.template_tokens);
      expect(HUNYUAN_VIDEO_PROMPT_TEMPLATE.dropTokens).toBe(meta.crop_start);
    },
  );

  it.each(meta.sequence_lengths)("encodePrompt at max_sequence_length %i: diffusers' embeddings, pooled embeddings and mask", (length) => {
    using pipe = HunyuanVideoPipeline.fromPretrained(folder);
    expect(pipe.textEncoders?.loaded).toBe(false);
    const before = memoryStats();
    const e = pipe.encodePrompt(meta.prompts, { maxSequenceLength: length });
    expect(e.promptEmbeds.shape).toEqual([4, length, 12]);
    expect(relativeL2(e.promptEmbeds, ref[`prompt_embeds_${length}`])).toBeLessThan(1e-5);
    expect(relativeL2(e.pooledPromptEmbeds, ref[`pooled_prompt_embeds_${length}`])).toBeLessThan(1e-5);
    expect(e.promptAttentionMask.dtype).toBe('int32');
    expect(values(e.promptAttentionMask)).toEqual(values(ref[`prompt_attention_mask_${length}`]));
    expect(e.truncatedTokens).toEqual({ llama: Math.max(...meta.llama_truncated_tokens[String(length)]), clip: Math.max(...meta.clip_truncated_tokens) });
    for (const t of [e.promptEmbeds, e.pooledPromptEmbeds, e.promptAttentionMask]) t.dispose();
    pipe.textEncoders!.release();
    expect(pipe.textEncoders?.loaded).toBe(false);
    expect(memoryStats()).toEqual(before);
  });

  it('generates from a prompt and a negative prompt (true CFG, embedded guidance) what diffusers does, and can release the text encoders after encoding', () => {
    using pipe = HunyuanVideoPipeline.fromPretrained(folder, { releaseTextEncoders: true });
    const out = pipe.generate({ ...runOptions, prompt: run.prompt, negativePrompt: run.negative_prompt });
    expect(relativeL2(out.latents, ref.run_latents_out)).toBeLessThan(1e-4);
    expect(pipe.textEncoders?.loaded).toBe(false);
    // The same run from the embeddings encodePrompt gives: the same latents.
    const positive = pipe.encodePrompt(run.prompt);
    const negative = pipe.encodePrompt(run.negative_prompt);
    const embedded = pipe.generate({
      ...runOptions,
      promptEmbeds: positive.promptEmbeds,
      pooledPromptEmbeds: positive.pooledPromptEmbeds,
      promptAttentionMask: positive.promptAttentionMask,
      negativePromptEmbeds: negative.promptEmbeds,
      negativePooledPromptEmbeds: negative.pooledPromptEmbeds,
      negativePromptAttentionMask: negative.promptAttentionMask,
    });
    expect(relativeL2(embedded.latents, ref.run_latents_out)).toBeLessThan(1e-4);
    // Without the negative prompt there is no true CFG (diffusers has no "" default): another result.
    const plain = pipe.generate({ ...runOptions, prompt: run.prompt });
    expect(relativeL2(plain.latents, ref.run_latents_out)).toBeGreaterThan(1e-2);
    for (const e of [positive, negative]) for (const t of [e.promptEmbeds, e.pooledPromptEmbeds, e.promptAttentionMask]) t.dispose();
    for (const t of [out.latents, embedded.latents, plain.latents]) t.dispose();
  });

  it('encodes in bfloat16 under dtype bfloat16, both encoders in that dtype', () => {
    using pipe = HunyuanVideoPipeline.fromPretrained(folder, { dtype: 'bfloat16', preloadTextEncoders: true });
    expect(pipe.textEncoders?.loaded).toBe(true);
    const e = pipe.encodePrompt(meta.prompts, { maxSequenceLength: 106 });
    expect(e.promptEmbeds.dtype).toBe('bfloat16');
    expect(e.pooledPromptEmbeds.dtype).toBe('bfloat16');
    // bfloat16's rounding through the tiny encoders (each held to transformers' bf16 run in @ditcache/text-encoders).
    for (const [actual, expected] of [
      [e.promptEmbeds, ref.prompt_embeds_106],
      [e.pooledPromptEmbeds, ref.pooled_prompt_embeds_106],
    ]) {
      const error = relativeL2(actual, expected);
      expect(error).toBeGreaterThan(1e-4);
      expect(error).toBeLessThan(2e-2);
    }
    expect(values(e.promptAttentionMask)).toEqual(values(ref.prompt_attention_mask_106));
    for (const t of [e.promptEmbeds, e.pooledPromptEmbeds, e.promptAttentionMask]) t.dispose();
  });

  it('gives ditcache encode-prompt the triple under the pipeline names, with the truncation notes', () => {
    const { tensors, notes } = family.encodePrompt!(folder, [meta.prompts[3]], { maxSequenceLength: 106 });
    expect(Object.keys(tensors).sort()).toEqual(['pooled_prompt_embeds', 'prompt_attention_mask', 'prompt_embeds']);
    tidy(() => {
      expect(relativeL2(tensors.prompt_embeds, ref.prompt_embeds_106.narrow(0, 3, 1))).toBeLessThan(1e-5);
      expect(relativeL2(tensors.pooled_prompt_embeds, ref.pooled_prompt_embeds_106.narrow(0, 3, 1))).toBeLessThan(1e-5);
    });
    expect(values(tensors.prompt_attention_mask)).toEqual(Array(106).fill(1));
    // diffusers cuts Llama silently (the first note is ditcache's) and warns of CLIP's cut, word for word.
    const diffusers = (
      JSON.parse(readFileSync(new URL('../../text-encoders/test/data/pipeline-warnings.json', import.meta.url), 'utf-8')) as {
        hunyuan_video: { prompt: string; max_sequence_length: number; warnings: string[] };
      }
    ).hunyuan_video;
    expect([diffusers.prompt, diffusers.max_sequence_length]).toEqual([meta.prompts[3], 106]);
    expect(notes).toEqual([
      `Llama kept 106 tokens after the template's first 95; ${meta.llama_truncated_tokens['106'][3]} of the prompt were truncated`,
      ...diffusers.warnings,
    ]);
    for (const t of Object.values(tensors)) t.dispose();
  });

  it('turns --prompt, --negative-prompt and --true-cfg-scale into a request that gives diffusers latents', () => {
    const request = family.request({ latents_in: ref.run_latents_in }, 'in.safetensors', {
      prompt: run.prompt,
      negativePrompt: run.negative_prompt,
      trueCfgScale: run.true_cfg_scale,
      guidance: run.guidance_scale,
      height: run.height,
      width: run.width,
      frames: run.num_frames,
      steps: run.num_inference_steps,
    }) as HunyuanVideoGenerateOptions;
    expect(family.batchSize?.(request)).toBe(1);
    using pipe = HunyuanVideoPipeline.fromPretrained(folder);
    const { latents } = pipe.generate({ ...request, decode: false });
    expect(relativeL2(latents, ref.run_latents_out)).toBeLessThan(1e-4);
    latents.dispose();
  });

  it('names the text folders a folder lacks', () => {
    const partial = mkdtempSync(join(tmpdir(), 'ditcache-hunyuan-partial-'));
    try {
      for (const entry of ['transformer', 'vae', 'scheduler', 'tokenizer', 'text_encoder']) symlinkSync(join(folder, entry), join(partial, entry));
      expect(() => new HunyuanVideoPromptEncoder(partial)).toThrow(
        /no tokenizer_2\/, text_encoder_2\/ folder \(prompt encoding needs tokenizer\/, text_encoder\//,
      );
      expect(() => family.checkModel?.(partial, { negativePrompt: 'blur' })).toThrow(/has no tokenizer_2\/, text_encoder_2\/ \(text encoders\)/);
      expect(() => family.encodePrompt?.(partial, ['a cat'], {})).toThrow(/has no tokenizer_2\/, text_encoder_2\/ \(text encoders\)/);
      using pipe = HunyuanVideoPipeline.fromPretrained(partial);
      expect(pipe.textEncoders).toBeNull();
    } finally {
      rmSync(partial, { recursive: true, force: true });
    }
  });

  it('says what is wrong with the text inputs', () => {
    using pipe = HunyuanVideoPipeline.fromPretrained(folder);
    using textless = HunyuanVideoPipeline.fromPretrained(tiny);
    expect(textless.textEncoders).toBeNull();
    const noText = /the folder has no tokenizer\/, text_encoder\/, tokenizer_2\/ and text_encoder_2\/ folders; give promptEmbeds/;
    expect(() => textless.encodePrompt('a cat')).toThrow(noText);
    expect(() => textless.generate({ ...runOptions, prompt: 'a cat' })).toThrow(noText);
    expect(() => pipe.generate({ ...runOptions, prompt: 'a cat', promptEmbeds: ref.prompt_embeds_106 })).toThrow(
      /give either prompt or promptEmbeds \/ pooledPromptEmbeds \/ promptAttentionMask, not both/,
    );
    expect(() => pipe.generate({ ...runOptions, prompt: 'a cat', negativePrompt: 'blur', negativePromptEmbeds: ref.prompt_embeds_106 })).toThrow(
      /give either negativePrompt or negativePromptEmbeds/,
    );
    expect(() => pipe.generate({ ...runOptions })).toThrow(
      /give a prompt \(the folder needs tokenizer\/, text_encoder\/, tokenizer_2\/ and text_encoder_2\/\)/,
    );
    expect(() => pipe.generate({ ...runOptions, prompt: ['a', 'b'], negativePrompt: ['c'] })).toThrow(/1 negative prompts for a batch of 2/);
    expect(() => pipe.encodePrompt('a cat', { maxSequenceLength: 0 })).toThrow(/maxSequenceLength must be a positive integer, got 0/);
    expect(() => pipe.generate({ ...runOptions, prompt: 'a cat', maxSequenceLength: 2.5 })).toThrow(/maxSequenceLength must be a positive integer, got 2.5/);
    expect(() => new HunyuanVideoPromptEncoder(tiny)).toThrow(/no tokenizer\/, text_encoder\/, tokenizer_2\/, text_encoder_2\/ folder/);
    expect(() => family.checkModel?.(tiny, { prompt: 'a cat' })).toThrow(
      /has no tokenizer\/, text_encoder\/, tokenizer_2\/, text_encoder_2\/ \(text encoders\)/,
    );
    expect(() => family.request({ prompt_embeds: ref.prompt_embeds_106 }, 'in.safetensors', { prompt: 'a cat' })).toThrow(/--prompt and the prompt embeddings/);
  });
});
