// HiDream from text: its four tokenizers and encoders (two CLIPs with projection, T5, Llama 3.1),
// HiDreamImagePipeline's encode_prompt and a run from a prompt and a negative prompt, against
// diffusers (test/goldens/hidream-prompt, written by tools/make_prompt_references.py).
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, tidy } from '@ditcache/cuda-runtime';

import hidreamCliFamily from '../src/cli-family.js';
import { HiDreamPipeline, HiDreamPromptEncoder, TEXT_COMPONENTS } from '../src/index.js';
import { goldens, localGoldens, relativeL2 } from './helpers.js';

const data = `${localGoldens}/hidream-prompt`;
const tiny = `${goldens}/hidream-tiny`;
const meta = JSON.parse(readFileSync(`${data}/meta.json`, 'utf-8')) as {
  prompts: string[];
  sequence_lengths: number[];
  default_sample_size: number;
  run: { prompt: string; negative_prompt: string; num_inference_steps: number; guidance_scale: number; height: number; width: number };
};
const ref = loadSafetensors(`${data}/prompts.safetensors`);
/** What diffusers' encode_prompt logs for prompts[3] and prompts[1] on this folder (@ditcache/text-encoders' tools/capture_pipeline_warnings.py). */
const { hidream: diffusersWarnings, hidream_short: diffusersShortWarnings } = JSON.parse(
  readFileSync(new URL('../../text-encoders/test/data/pipeline-warnings.json', import.meta.url), 'utf-8'),
) as Record<'hidream' | 'hidream_short', { prompt: string; max_sequence_length: number; warnings: string[] }>;

/** hidream-tiny's transformer, VAE and scheduler with the reference's tokenizers and text encoders. */
const folder = mkdtempSync(join(tmpdir(), 'ditcache-hidream-text-'));
for (const entry of ['transformer', 'vae', 'scheduler', 'model_index.json']) symlinkSync(join(tiny, entry), join(folder, entry));
for (const entry of TEXT_COMPONENTS) symlinkSync(join(data, entry), join(folder, entry));
afterAll(() => {
  rmSync(folder, { recursive: true, force: true });
  for (const t of Object.values(ref)) t.dispose();
});

function loadPipeline(opts: Parameters<typeof HiDreamPipeline.fromPretrained>[1] = {}): HiDreamPipeline {
  const pipe = HiDreamPipeline.fromPretrained(folder, opts);
  pipe.defaultSampleSize = meta.default_sample_size;
  return pipe;
}

describe('HiDreamImagePipeline from text', () => {
  it.each(meta.sequence_lengths)('tokenizes as transformers at max_sequence_length %i: CLIPs at min(L, 218), T5 and Llama at L', (length) => {
    const limits = [218, 218, Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY];
    // The encoder's tokenizers: Llama's pads with its eos token, as the pipeline makes it.
    using encoder = new HiDreamPromptEncoder(folder);
    encoder.tokenizers.forEach((tokenizer, i) => {
      const ids = meta.prompts.flatMap((p) => tokenizer.encodePadded(p, Math.min(length, limits[i])).ids);
      expect(ids, TEXT_COMPONENTS[i]).toEqual(Array.from(ref[`input_ids_${i + 1}_${length}`].toFloat32Array()));
    });
  });

  it.each(meta.sequence_lengths)("encodePrompt at max_sequence_length %i: diffusers' T5, stacked Llama and pooled CLIP embeddings", (length) => {
    using pipe = loadPipeline();
    expect(pipe.textEncoders?.loaded).toBe(false);
    const before = memoryStats();
    const e = pipe.encodePrompt(meta.prompts, { maxSequenceLength: length });
    expect(e.promptEmbedsLlama3.shape).toEqual(ref[`prompt_embeds_llama3_${length}`].shape);
    expect(relativeL2(e.promptEmbedsT5, ref[`prompt_embeds_t5_${length}`])).toBeLessThan(1e-5);
    expect(relativeL2(e.promptEmbedsLlama3, ref[`prompt_embeds_llama3_${length}`])).toBeLessThan(1e-5);
    expect(relativeL2(e.pooledPromptEmbeds, ref[`pooled_prompt_embeds_${length}`])).toBeLessThan(1e-5);
    // The 300-token prompt is cut at 128 (12) tokens by every tokenizer, as diffusers warns.
    expect(e.truncatedTokens.t5 > 0 && e.truncatedTokens.llama > 0 && e.truncatedTokens.clip > 0).toBe(true);
    for (const t of [e.promptEmbedsT5, e.promptEmbedsLlama3, e.pooledPromptEmbeds]) t.dispose();
    pipe.textEncoders!.release();
    expect(memoryStats()).toEqual(before);
  });

  it('generates from a prompt and a negative prompt what diffusers does, and can release the text encoders after encoding', () => {
    using pipe = loadPipeline({ releaseTextEncoders: true });
    const { run } = meta;
    const out = pipe.generate({
      prompt: run.prompt,
      negativePrompt: run.negative_prompt,
      latents: ref.run_latents_in,
      height: run.height,
      width: run.width,
      numInferenceSteps: run.num_inference_steps,
      guidanceScale: run.guidance_scale,
      decode: false,
    });
    expect(relativeL2(out.latents, ref.run_latents_out)).toBeLessThan(1e-4);
    expect(pipe.textEncoders?.loaded).toBe(false);
    out.latents.dispose();
  });

  it('encodes in bfloat16 under dtype bfloat16, all four encoders in that dtype', () => {
    using pipe = loadPipeline({ dtype: 'bfloat16' });
    const e = pipe.encodePrompt(meta.prompts.slice(0, 2), { maxSequenceLength: 12 });
    for (const t of [e.promptEmbedsT5, e.promptEmbedsLlama3, e.pooledPromptEmbeds]) expect(t.dtype).toBe('bfloat16');
    // bfloat16's rounding through the tiny encoders (each held to transformers' bf16 run in @ditcache/text-encoders).
    tidy(() => {
      expect(relativeL2(e.promptEmbedsT5, ref.prompt_embeds_t5_12.narrow(0, 0, 2))).toBeLessThan(3e-2);
      expect(relativeL2(e.promptEmbedsLlama3, ref.prompt_embeds_llama3_12.narrow(1, 0, 2))).toBeLessThan(3e-2);
      expect(relativeL2(e.pooledPromptEmbeds, ref.pooled_prompt_embeds_12.narrow(0, 0, 2))).toBeLessThan(3e-2);
    });
    for (const t of [e.promptEmbedsT5, e.promptEmbedsLlama3, e.pooledPromptEmbeds]) t.dispose();
  });

  it("gives ditcache encode-prompt the embeddings under the pipeline's names, with diffusers' truncation warnings", () => {
    expect([diffusersWarnings.prompt, diffusersWarnings.max_sequence_length]).toEqual([meta.prompts[3], 12]);
    const { tensors, notes } = hidreamCliFamily.encodePrompt!(folder, [meta.prompts[3]], { maxSequenceLength: 12 });
    expect(Object.keys(tensors).sort()).toEqual(['pooled_prompt_embeds', 'prompt_embeds_llama3', 'prompt_embeds_t5']);
    tidy(() => {
      expect(relativeL2(tensors.prompt_embeds_t5, ref.prompt_embeds_t5_12.narrow(0, 3, 1))).toBeLessThan(1e-5);
      expect(relativeL2(tensors.prompt_embeds_llama3, ref.prompt_embeds_llama3_12.narrow(1, 3, 1))).toBeLessThan(1e-5);
    });
    // Both CLIPs' (cut at 12, quoted from token 217), T5's and Llama's, word for word.
    expect(diffusersWarnings.warnings).toHaveLength(4);
    expect(notes).toEqual(diffusersWarnings.warnings);
    for (const t of Object.values(tensors)) t.dispose();
  });

  it("warns as diffusers of CLIP cuts that leave nothing past token 217 to quote, and of T5's unknown pieces", () => {
    expect([diffusersShortWarnings.prompt, diffusersShortWarnings.max_sequence_length]).toEqual([meta.prompts[1], 12]);
    const { tensors, notes } = hidreamCliFamily.encodePrompt!(folder, [meta.prompts[1]], { maxSequenceLength: 12 });
    for (const t of Object.values(tensors)) t.dispose();
    expect(diffusersShortWarnings.warnings[0]).toMatch(/up to 218 tokens: \[''\]$/);
    expect(notes).toEqual(diffusersShortWarnings.warnings);
  });

  it('says what is wrong with the text inputs', () => {
    using pipe = loadPipeline();
    using textless = HiDreamPipeline.fromPretrained(tiny);
    expect(() => textless.encodePrompt('a cat')).toThrow(
      /the folder has no tokenizer\/ \.\.\. tokenizer_4\/ and text_encoder\/ \.\.\. text_encoder_4\/ folders/,
    );
    expect(() => pipe.generate({ prompt: 'a cat', promptEmbedsT5: ref.prompt_embeds_t5_12, numInferenceSteps: 1 })).toThrow(/either prompt or promptEmbedsT5/);
    expect(() => pipe.generate({ numInferenceSteps: 1 })).toThrow(/give a prompt, or all of promptEmbedsT5, promptEmbedsLlama3 and pooledPromptEmbeds/);
    expect(() => pipe.encodePrompt('a cat', { maxSequenceLength: 0 })).toThrow(/maxSequenceLength must be a positive integer, got 0/);
  });
});
