import { readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, memoryStats, tensor } from '@ditcache/cuda-runtime';
import { randnTensor } from '@ditcache/diffusion';
import { ClipTextModel, T5Encoder, loadTokenizer } from '@ditcache/text-encoders';

import fluxCliFamily from '../src/cli-family.js';
import { FluxPipeline, FluxPromptEncoder, type TransformerCall } from '../src/index.js';
import { goldens, relativeL2, relativeL2Values } from './helpers.js';
import { scratchDir } from '../../../scripts/testing/scratch-dir.js';

const textData = new URL('../../text-encoders/test/data/', import.meta.url).pathname;

/**
 * flux-tiny-guidance with the tiny text encoders of @ditcache/text-encoders' reference data,
 * whose widths fit it (CLIP 24 = pooled_projection_dim, T5 32 = joint_attention_dim).
 */
function fluxWithText(): string {
  const dir = scratchDir('ditcache-flux-text-');
  for (const entry of ['transformer', 'vae', 'scheduler']) symlinkSync(`${goldens}/flux-tiny-guidance/${entry}`, join(dir, entry));
  const text = { tokenizer: 'clip-tokenizer', tokenizer_2: 't5-tokenizer', text_encoder: 'clip-text-model', text_encoder_2: 't5-encoder' };
  for (const [entry, source] of Object.entries(text)) symlinkSync(join(textData, source), join(dir, entry));
  return dir;
}

const PROMPT = 'a photo of a cat';
const NEGATIVE = 'blurry, low quality';

describe('FluxPipeline with text encoders', () => {
  const dir = fluxWithText();
  const reference = loadSafetensors(join(textData, 'outputs.safetensors'));
  const noise = randnTensor([1, 64, 16], 5);
  const base = { height: 32, width: 32, numInferenceSteps: 2, latents: noise, maxSequenceLength: 24 };
  afterAll(() => {
    for (const t of Object.values(reference)) t.dispose();
    noise.dispose();
  });

  it('encodes a prompt as diffusers: CLIP pooled at 77 tokens, T5 at maxSequenceLength, zero text ids', () => {
    using pipe = FluxPipeline.fromPretrained(dir);
    expect(pipe.textEncoders?.loaded).toBe(false);
    const e = pipe.encodePrompt(PROMPT, { maxSequenceLength: 24 });
    expect(pipe.textEncoders?.loaded).toBe(true);
    expect(e.promptEmbeds.shape).toEqual([1, 24, 32]);
    expect(e.textIds.shape).toEqual([24, 3]);
    expect(e.clipInputIds.shape).toEqual([1, 77]);
    expect(e.clipInputIds.dtype).toBe('int32');
    expect(relativeL2(e.pooledPromptEmbeds, reference['clip.cat.pooled'])).toBeLessThan(1e-5);
    // The same T5 run directly on the same tokens.
    const t5Ids = loadTokenizer(join(dir, 'tokenizer_2')).encodePadded(PROMPT, 24).ids;
    expect([...e.t5InputIds.toInt32Array()]).toEqual(t5Ids);
    using t5 = T5Encoder.load(join(dir, 'text_encoder_2'));
    using ids = tensor(Int32Array.from(t5Ids), [1, 24]);
    using direct = t5.forward(ids);
    expect(relativeL2(e.promptEmbeds, direct)).toBe(0);
    expect(e.truncatedTokens).toEqual({ clip: 0, t5: 0 });
    for (const t of [e.promptEmbeds, e.pooledPromptEmbeds, e.textIds, e.clipInputIds, e.t5InputIds]) t.dispose();
  });

  it('encodes in bfloat16 under dtype bfloat16, as diffusers runs the text encoders of a pipeline loaded with that torch_dtype', () => {
    using pipe = FluxPipeline.fromPretrained(dir, { dtype: 'bfloat16' });
    const e = pipe.encodePrompt(PROMPT, { maxSequenceLength: 16 });
    expect(e.promptEmbeds.dtype).toBe('bfloat16');
    expect(e.pooledPromptEmbeds.dtype).toBe('bfloat16');
    // transformers' CLIP loaded with torch_dtype=torch.bfloat16 on the same 77 tokens (text-encoders' tools/make_16bit_references.py).
    const sixteen = loadSafetensors(join(textData, 'outputs_16bit.safetensors'));
    expect(relativeL2(e.pooledPromptEmbeds, sixteen['clip.cat.bfloat16.pooled'])).toBeLessThan(1.5e-2);
    // T5 (whose bfloat16 run the text-encoders tests hold to transformers') in bfloat16 on the same tokens, not widened.
    using t5 = T5Encoder.load(join(dir, 'text_encoder_2'), { dtype: 'bfloat16' });
    using direct = t5.forward(e.t5InputIds);
    expect(relativeL2(e.promptEmbeds, direct)).toBe(0);
    for (const t of [...Object.values(sixteen), e.promptEmbeds, e.pooledPromptEmbeds, e.textIds, e.clipInputIds, e.t5InputIds]) t.dispose();
  });

  it('generates from text exactly as from the embeddings of that text, and frees them', () => {
    using pipe = FluxPipeline.fromPretrained(dir, { preloadTextEncoders: true });
    const e = pipe.encodePrompt(PROMPT, { maxSequenceLength: 24 });
    const fromEmbeds = pipe.generate({ ...base, maxSequenceLength: undefined, promptEmbeds: e.promptEmbeds, pooledPromptEmbeds: e.pooledPromptEmbeds });
    const before = memoryStats();
    const fromText = pipe.generate({ ...base, prompt: PROMPT });
    expect(relativeL2(fromText.latents, fromEmbeds.latents)).toBe(0);
    expect(relativeL2(fromText.image!, fromEmbeds.image!)).toBe(0);
    fromText.latents.dispose();
    fromText.image!.dispose();
    expect(memoryStats()).toEqual(before);
    for (const t of [fromEmbeds.latents, fromEmbeds.image!, e.promptEmbeds, e.pooledPromptEmbeds, e.textIds, e.clipInputIds, e.t5InputIds]) t.dispose();
  });

  it('runs true CFG on a negative prompt with two transformer calls per step, as with its embeddings', () => {
    using pipe = FluxPipeline.fromPretrained(dir);
    const calls: TransformerCall[] = [];
    const off = pipe.onTransformerCall((c) => calls.push(c));
    const fromText = pipe.generate({ ...base, prompt: PROMPT, negativePrompt: NEGATIVE, trueCfgScale: 4, decode: false });
    off();
    expect(calls.map((c) => `${c.step}:${c.branch}`)).toEqual(['0:cond', '0:uncond', '1:cond', '1:uncond']);
    const p = pipe.encodePrompt(PROMPT, { maxSequenceLength: 24 });
    const n = pipe.encodePrompt(NEGATIVE, { maxSequenceLength: 24 });
    const fromEmbeds = pipe.generate({
      ...base,
      maxSequenceLength: undefined,
      promptEmbeds: p.promptEmbeds,
      pooledPromptEmbeds: p.pooledPromptEmbeds,
      negativePromptEmbeds: n.promptEmbeds,
      negativePooledPromptEmbeds: n.pooledPromptEmbeds,
      trueCfgScale: 4,
      decode: false,
    });
    expect(relativeL2(fromText.latents, fromEmbeds.latents)).toBe(0);
    // At scale 1 the negative prompt is not even encoded: one call per step.
    const plainCalls: string[] = [];
    const off2 = pipe.onTransformerCall((c) => plainCalls.push(c.branch));
    const plain = pipe.generate({ ...base, prompt: PROMPT, negativePrompt: NEGATIVE, decode: false });
    off2();
    expect(plainCalls).toEqual(['cond', 'cond']);
    for (const t of [fromText.latents, fromEmbeds.latents, plain.latents]) t.dispose();
    for (const e of [p, n]) for (const t of [e.promptEmbeds, e.pooledPromptEmbeds, e.textIds, e.clipInputIds, e.t5InputIds]) t.dispose();
  });

  it('loads the encoders lazily and, with releaseTextEncoders, frees them after each generate', () => {
    const before = memoryStats();
    using pipe = FluxPipeline.fromPretrained(dir, { releaseTextEncoders: true });
    const loaded = memoryStats();
    const out = pipe.generate({ ...base, prompt: [PROMPT, NEGATIVE], latents: undefined, seed: 1, negativePrompt: NEGATIVE, trueCfgScale: 2, decode: false });
    expect(out.latents.shape).toEqual([2, 64, 16]);
    expect(pipe.textEncoders?.loaded).toBe(false);
    out.latents.dispose();
    expect(memoryStats()).toEqual(loaded);
    pipe.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it('names what is wrong: a prompt without text encoders, both forms of a prompt, too long a sequence', () => {
    using plain = FluxPipeline.fromPretrained(`${goldens}/flux-tiny-guidance`);
    expect(plain.textEncoders).toBeNull();
    expect(() => plain.generate({ prompt: PROMPT, height: 32, width: 32 })).toThrow(
      /cannot encode a prompt: .*flux-tiny-guidance has no tokenizer\/, tokenizer_2\/, text_encoder\/, text_encoder_2\//,
    );
    using pipe = FluxPipeline.fromPretrained(dir);
    const e = pipe.encodePrompt(PROMPT, { maxSequenceLength: 8 });
    expect(() => pipe.generate({ ...base, prompt: PROMPT, promptEmbeds: e.promptEmbeds, pooledPromptEmbeds: e.pooledPromptEmbeds })).toThrow(
      /either prompt or promptEmbeds/,
    );
    expect(() => pipe.generate({ ...base, maxSequenceLength: undefined })).toThrow(/give a prompt, or both promptEmbeds and pooledPromptEmbeds/);
    expect(() => pipe.generate({ ...base, prompt: PROMPT, negativePrompt: 'x', negativePromptEmbeds: e.promptEmbeds })).toThrow(
      /either negativePrompt or negativePromptEmbeds/,
    );
    expect(() => pipe.generate({ ...base, maxSequenceLength: 513, prompt: PROMPT })).toThrow(/maxSequenceLength must be an integer from 1 to 512, got 513/);
    expect(() => pipe.generate({ ...base, prompt: [PROMPT, PROMPT], negativePrompt: ['a', 'b', 'c'], trueCfgScale: 3, latents: undefined })).toThrow(
      /3 negative prompts for a batch of 2/,
    );
    for (const t of [e.promptEmbeds, e.pooledPromptEmbeds, e.textIds, e.clipInputIds, e.t5InputIds]) t.dispose();
    expect(() => new FluxPromptEncoder(`${goldens}/flux-tiny`)).toThrow(/no tokenizer\/, tokenizer_2\/, text_encoder\/, text_encoder_2\/ folder/);
  });

  it("gives ditcache encode-prompt diffusers' truncation warnings, word for word: CLIP's, then T5's quoted from CLIP's token 76", () => {
    // What diffusers' FluxPipeline.encode_prompt logs on this folder (text-encoders' tools/capture_pipeline_warnings.py).
    const diffusers = (
      JSON.parse(readFileSync(join(textData, 'pipeline-warnings.json'), 'utf-8')) as {
        flux: { prompt: string; max_sequence_length: number; warnings: string[] };
      }
    ).flux;
    const { tensors, notes } = fluxCliFamily.encodePrompt!(dir, [diffusers.prompt], { maxSequenceLength: diffusers.max_sequence_length });
    for (const t of Object.values(tensors)) t.dispose();
    expect(diffusers.warnings).toHaveLength(2);
    expect(notes).toEqual(diffusers.warnings);
    const short = fluxCliFamily.encodePrompt!(dir, [PROMPT], { maxSequenceLength: 24 });
    for (const t of Object.values(short.tensors)) t.dispose();
    expect(short.notes).toEqual([]);
  });

  it('matches the CLIP reference through FluxPromptEncoder with the encoders preloaded', () => {
    using encoder = FluxPromptEncoder.fromPretrained(dir, { preload: true });
    expect(encoder.loaded).toBe(true);
    const e = encoder.encode('');
    expect(e.promptEmbeds.shape).toEqual([1, 512, 32]);
    expect(relativeL2Values(e.pooledPromptEmbeds.toFloat32Array(), reference['clip.empty.pooled'].toFloat32Array())).toBeLessThan(1e-5);
    using clip = ClipTextModel.load(join(dir, 'text_encoder'));
    expect(clip.config.eosTokenId).toBe(2);
    for (const t of [e.promptEmbeds, e.pooledPromptEmbeds, e.textIds, e.clipInputIds, e.t5InputIds]) t.dispose();
  });
});
