// Prompts as text: ChromaPromptEncoder against diffusers' ChromaPipeline.encode_prompt (T5 masked
// to the prompt's tokens; the transformer's mask keeping them and one pad token, none when the
// prompt fills max_sequence_length), and a pipeline call from text with a negative prompt. The
// tiny T5 and tokenizer are @ditcache/text-encoders' reference data.
import { readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors } from '@ditcache/cuda-runtime';

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
