// Prompts as text: ChromaPromptEncoder against diffusers' ChromaPipeline.encode_prompt (T5 masked
// to the prompt's tokens; the transformer's mask keeping them and one pad token, none when the
// prompt fills max_sequence_length), a pipeline call from text with a negative prompt, and the CLI
// family's encode-prompt (generate --prompt through the bin: packages/cli's test/prompt-t5.test.ts).
// The tiny T5 and tokenizer are @ditcache/text-encoders' reference data.
import { readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, tensor } from '@ditcache/cuda-runtime';
import { T5Encoder } from '@ditcache/text-encoders';

import family from '../src/cli-family.js';
import { ChromaPipeline } from '../src/index.js';
import { goldens, relativeL2 } from './helpers.js';
import { scratchDir } from '../../../scripts/testing/scratch-dir.js';

const textData = new URL('../../text-encoders/test/data/', import.meta.url).pathname;

/** chroma-tiny with the tiny T5 and its tokenizer. */
function chromaWithText(): string {
  const dir = scratchDir('ditcache-chroma-text-');
  for (const entry of ['transformer', 'vae', 'scheduler']) symlinkSync(`${goldens}/chroma-tiny/${entry}`, join(dir, entry));
  symlinkSync(join(textData, 't5-tokenizer'), join(dir, 'tokenizer'));
  symlinkSync(join(textData, 't5-encoder'), join(dir, 'text_encoder'));
  return dir;
}

describe('ChromaPipeline with T5', () => {
  const meta = JSON.parse(readFileSync(`${goldens}/chroma-prompt/meta.json`, 'utf-8')) as {
    prompts: string[];
    negative_prompt: string;
    max_sequence_length: number;
    height: number;
    width: number;
    num_inference_steps: number;
    guidance_scale: number;
  };
  const ref = loadSafetensors(`${goldens}/chroma-prompt/prompts.safetensors`);
  const pipe = ChromaPipeline.fromPretrained(chromaWithText());
  afterAll(() => {
    pipe.dispose();
    for (const t of Object.values(ref)) t.dispose();
  });

  it("encodes prompts as diffusers' encode_prompt: embeddings, and the mask with one pad token", () => {
    const e = pipe.encodePrompt(meta.prompts, { maxSequenceLength: meta.max_sequence_length });
    expect(relativeL2(e.promptEmbeds, ref.prompt_embeds)).toBeLessThan(1e-5);
    expect(Array.from(e.promptAttentionMask.toFloat32Array())).toEqual(Array.from(ref.prompt_attention_mask.toFloat32Array()));
    expect(e.textIds.shape).toEqual([meta.max_sequence_length, 3]);
    for (const t of [e.promptEmbeds, e.promptAttentionMask, e.textIds, e.inputIds]) t.dispose();
  });

  it('encodes in bfloat16 under dtype bfloat16: T5 on the same tokens and mask, not widened', () => {
    using bf16 = ChromaPipeline.fromPretrained(chromaWithText(), { dtype: 'bfloat16' });
    const e = bf16.encodePrompt(meta.prompts, { maxSequenceLength: meta.max_sequence_length });
    expect(e.promptEmbeds.dtype).toBe('bfloat16');
    using t5 = T5Encoder.load(join(textData, 't5-encoder'), { dtype: 'bfloat16' });
    // The tokenizer's mask: every token but T5's pad (id 0).
    using tokenizerMask = tensor(Int32Array.from(e.inputIds.toFloat32Array().map((id) => (id !== 0 ? 1 : 0))), e.inputIds.shape, { dtype: 'int32' });
    using direct = t5.forward(e.inputIds, { attentionMask: tokenizerMask });
    expect(relativeL2(e.promptEmbeds, direct)).toBe(0);
    for (const t of [e.promptEmbeds, e.promptAttentionMask, e.textIds, e.inputIds]) t.dispose();
  });

  it('generates from a prompt and a negative prompt as diffusers does', () => {
    using latents = pipe.generate({
      prompt: meta.prompts[0],
      negativePrompt: meta.negative_prompt,
      maxSequenceLength: meta.max_sequence_length,
      latents: ref.latents_in,
      height: meta.height,
      width: meta.width,
      numInferenceSteps: meta.num_inference_steps,
      guidanceScale: meta.guidance_scale,
      decode: false,
    }).latents;
    expect(relativeL2(latents, ref.latents_out)).toBeLessThan(1e-4);
  });
});

describe('the CLI with T5: encode-prompt and generate --prompt', () => {
  const meta = JSON.parse(readFileSync(`${goldens}/chroma-prompt/meta.json`, 'utf-8')) as {
    prompts: string[];
    negative_prompt: string;
    max_sequence_length: number;
    height: number;
    width: number;
    num_inference_steps: number;
    guidance_scale: number;
  };
  const ref = loadSafetensors(`${goldens}/chroma-prompt/prompts.safetensors`);
  const dir = chromaWithText();
  afterAll(() => {
    for (const t of Object.values(ref)) t.dispose();
  });

  it("encode-prompt writes the pipeline's prompt_embeds and prompt_attention_mask", () => {
    const encoded = family.encodePrompt?.(dir, [meta.prompts[0]], { maxSequenceLength: meta.max_sequence_length });
    expect(encoded).toBeDefined();
    const { tensors } = encoded as NonNullable<typeof encoded>;
    expect(Object.keys(tensors).sort()).toEqual(['input_ids', 'prompt_attention_mask', 'prompt_embeds', 'text_ids']);
    using first = ref.prompt_embeds.narrow(0, 0, 1).clone();
    expect(relativeL2(tensors.prompt_embeds, first)).toBeLessThan(1e-5);
    expect(Array.from(tensors.prompt_attention_mask.toFloat32Array())).toEqual(
      Array.from(ref.prompt_attention_mask.toFloat32Array().subarray(0, meta.max_sequence_length)),
    );
    for (const t of Object.values(tensors)) t.dispose();
  });

  it('encode-prompt says how many tokens T5 cut, which diffusers truncates without a warning', () => {
    // What diffusers' ChromaPipeline.encode_prompt logs on this folder (text-encoders' tools/capture_pipeline_warnings.py): nothing.
    const diffusers = (
      JSON.parse(readFileSync(join(textData, 'pipeline-warnings.json'), 'utf-8')) as {
        chroma: { prompt: string; max_sequence_length: number; warnings: string[] };
      }
    ).chroma;
    expect(diffusers.warnings).toEqual([]);
    const { tensors, notes } = family.encodePrompt!(dir, [diffusers.prompt], { maxSequenceLength: diffusers.max_sequence_length });
    for (const t of Object.values(tensors)) t.dispose();
    expect(notes).toEqual([expect.stringMatching(/^T5 kept 16 tokens of the prompt; \d+ were truncated$/)]);
  });
});
