// Text to video: the UMT5 encoder, WanPipeline's prompt cleaning and encoding, and a run from text,
// against diffusers and transformers (test/goldens/wan-prompt, written by tools/make_prompt_references.py).
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats } from '@ditcache/cuda-runtime';
import { T5Encoder } from '@ditcache/text-encoders';

import { WanPipeline, cleanPrompt } from '../src/index.js';
import { goldens, localGoldens, relativeL2 } from './helpers.js';

const data = `${localGoldens}/wan-prompt`;
const meta = JSON.parse(readFileSync(`${data}/meta.json`, 'utf-8')) as {
  prompts: { prompt: string; cleaned: string }[];
  cleaned_only: { prompt: string; cleaned: string }[];
  sequence_lengths: number[];
  run: { prompt: string; negative_prompt: string; num_inference_steps: number; guidance_scale: number; height: number; width: number; num_frames: number };
};
const ref = loadSafetensors(`${data}/prompts.safetensors`);
const prompts = meta.prompts.map((p) => p.prompt);

/** wan-tiny with the tokenizer and UMT5 encoder of the reference data: a pipeline folder that encodes prompts. */
const folder = mkdtempSync(join(tmpdir(), 'ditcache-wan-prompt-'));
for (const name of ['transformer', 'vae', 'scheduler']) symlinkSync(`${goldens}/wan-tiny/${name}`, join(folder, name));
for (const name of ['tokenizer', 'text_encoder']) symlinkSync(`${data}/${name}`, join(folder, name));
const index = JSON.parse(readFileSync(`${goldens}/wan-tiny/model_index.json`, 'utf-8')) as Record<string, unknown>;
const textIndex = { ...index, tokenizer: ['transformers', 'T5TokenizerFast'], text_encoder: ['transformers', 'UMT5EncoderModel'] };
writeFileSync(join(folder, 'model_index.json'), JSON.stringify(textIndex));

afterAll(() => {
  rmSync(folder, { recursive: true, force: true });
  for (const t of Object.values(ref)) t.dispose();
});

describe('cleanPrompt', () => {
  it('cleans prompts as diffusers does with ftfy: quotes, ligatures, widths, HTML entities twice, whitespace runs, the ends', () => {
    expect(prompts.map(cleanPrompt)).toEqual(meta.prompts.map((p) => p.cleaned));
  });

  it("agrees with diffusers where Python's whitespace and control characters differ from JavaScript's", () => {
    expect(meta.cleaned_only.map((p) => cleanPrompt(p.prompt))).toEqual(meta.cleaned_only.map((p) => p.cleaned));
  });
});

describe('UMT5EncoderModel', () => {
  it("gives transformers' last hidden state, with a relative position bias in every layer and the padding masked", () => {
    using encoder = T5Encoder.load(`${data}/text_encoder`);
    expect(encoder.config.biasPerLayer).toBe(true);
    const length = Math.min(...meta.sequence_lengths);
    using ids = ref[`input_ids_${length}`].cast('int32');
    using mask = ref[`attention_mask_${length}`].cast('int32');
    using hidden = encoder.forward(ids, { attentionMask: mask });
    expect(relativeL2(hidden, ref[`last_hidden_state_${length}`])).toBeLessThan(1e-5);
  });
});

describe('WanPipeline from text', () => {
  it.each(meta.sequence_lengths)('encodePrompt at max_sequence_length %i: the token ids exactly, the embeddings with zeros past each prompt', (length) => {
    using pipe = WanPipeline.fromPretrained(folder);
    const before = memoryStats();
    const { promptEmbeds, inputIds, attentionMask, truncatedTokens } = pipe.encodePrompt(prompts, { maxSequenceLength: length });
    expect(Array.from(inputIds.toFloat32Array())).toEqual(Array.from(ref[`input_ids_${length}`].toFloat32Array()));
    expect(Array.from(attentionMask.toFloat32Array())).toEqual(Array.from(ref[`attention_mask_${length}`].toFloat32Array()));
    expect(relativeL2(promptEmbeds, ref[`prompt_embeds_${length}`])).toBeLessThan(1e-5);
    expect(truncatedTokens > 0).toBe(length < 512);
    for (const t of [promptEmbeds, inputIds, attentionMask]) t.dispose();
    pipe.promptEncoder!.release();
    expect(memoryStats()).toEqual(before);
  });

  it('encodes in bfloat16 under dtype bfloat16 (UMT5 in that dtype, as diffusers under torch_dtype), zeros past each prompt', () => {
    using pipe = WanPipeline.fromPretrained(folder, { dtype: 'bfloat16' });
    const length = meta.sequence_lengths[0];
    const { promptEmbeds, inputIds, attentionMask } = pipe.encodePrompt(prompts, { maxSequenceLength: length });
    expect(promptEmbeds.dtype).toBe('bfloat16');
    // bfloat16's rounding through the tiny UMT5 (transformers' own bfloat16 run: text-encoders' sixteen-bit tests).
    expect(relativeL2(promptEmbeds, ref[`prompt_embeds_${length}`])).toBeLessThan(3e-2);
    const reference = ref[`prompt_embeds_${length}`].toFloat32Array();
    const ours = promptEmbeds.toFloat32Array();
    expect(ours.every((v, i) => (reference[i] === 0 ? v === 0 : true))).toBe(true);
    for (const t of [promptEmbeds, inputIds, attentionMask]) t.dispose();
  });

  it('generates from a prompt and a negative prompt what diffusers does, and can release the text encoder after encoding', () => {
    using pipe = WanPipeline.fromPretrained(folder, { releaseTextEncoder: true });
    const { run } = meta;
    const before = memoryStats();
    const { latents, video } = pipe.generate({
      prompt: run.prompt,
      negativePrompt: run.negative_prompt,
      latents: ref.run_latents_in,
      height: run.height,
      width: run.width,
      numFrames: run.num_frames,
      numInferenceSteps: run.num_inference_steps,
      guidanceScale: run.guidance_scale,
      decode: false,
    });
    expect(video).toBeNull();
    expect(relativeL2(latents, ref.run_latents_out)).toBeLessThan(1e-4);
    expect(pipe.promptEncoder!.loaded).toBe(false);
    const negative = pipe.encodePrompt(run.negative_prompt);
    expect(relativeL2(negative.promptEmbeds, ref.run_negative_prompt_embeds)).toBeLessThan(1e-5);
    for (const t of [latents, negative.promptEmbeds, negative.inputIds, negative.attentionMask]) t.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it('encodes the empty negative prompt for CFG when only prompt embeddings are given, as diffusers does', () => {
    using pipe = WanPipeline.fromPretrained(folder);
    const { run } = meta;
    const request = {
      latents: ref.run_latents_in,
      height: run.height,
      width: run.width,
      numFrames: run.num_frames,
      numInferenceSteps: 2,
      guidanceScale: run.guidance_scale,
      decode: false,
    };
    using fromEmbeds = pipe.generate({ ...request, promptEmbeds: ref.run_prompt_embeds }).latents;
    using fromText = pipe.generate({ ...request, prompt: run.prompt, negativePrompt: '' }).latents;
    expect(relativeL2(fromEmbeds, fromText)).toBeLessThan(1e-6);
  });

  it('says what is wrong with the text inputs', () => {
    using pipe = WanPipeline.fromPretrained(folder);
    using textless = WanPipeline.fromPretrained(`${goldens}/wan-tiny`);
    expect(textless.promptEncoder).toBeNull();
    const request = { latents: ref.run_latents_in, height: 32, width: 48, numFrames: 9, numInferenceSteps: 1 };
    expect(() => pipe.generate({ ...request, prompt: 'a', promptEmbeds: ref.run_prompt_embeds })).toThrow(/give either prompt or promptEmbeds/);
    expect(() => pipe.generate(request)).toThrow(/give either prompt or promptEmbeds/);
    expect(() => pipe.generate({ ...request, prompt: ['a', 'b'], negativePrompt: ['c'] })).toThrow(/negativePrompt has 1 prompts for a batch of 2/);
    expect(() => textless.generate({ ...request, prompt: 'a' })).toThrow(/has no tokenizer \/ text_encoder, so it takes promptEmbeds, not a prompt/);
    expect(() => textless.generate({ ...request, promptEmbeds: ref.run_prompt_embeds })).toThrow(
      /needs negativePromptEmbeds .*this pipeline has no text encoder/,
    );
    writeFileSync(join(folder, 'model_index.json'), JSON.stringify({ ...index, tokenizer: ['transformers', 'T5TokenizerFast'] }));
    try {
      expect(() => WanPipeline.fromPretrained(folder)).toThrow(/lists only one of tokenizer and text_encoder; prompt encoding needs both/);
    } finally {
      writeFileSync(join(folder, 'model_index.json'), JSON.stringify(textIndex));
    }
  });
});
