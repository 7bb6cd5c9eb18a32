import { mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { Tensor } from '@ditcache/cuda-runtime';

import type { SD3GenerateOptions } from '../src/index.js';

/** This package's reference data (tools/make_references.py wrote it; goldens/README.md describes it). */
export const goldens = new URL('./goldens/', import.meta.url).pathname;

export const SETS = ['sd3-tiny', 'sd35-tiny'] as const;

export interface Trace {
  config: Record<string, number>;
  taylorseer_order: number | null;
  enable_encoder_calibrator: boolean | null;
  margin: number;
  stats: { cached_steps: number[]; residual_diffs: Record<string, number> }[];
  cache_dit_with_encoder_calibrator?: string | null;
}

export interface Meta {
  height: number;
  width: number;
  num_inference_steps: number;
  guidance_scale: number;
  cache_traces: Record<string, Trace>;
}

export function metaOf(set: string): Meta {
  return JSON.parse(readFileSync(`${goldens}/${set}/meta.json`, 'utf-8')) as Meta;
}

export { relativeL2, relativeL2Values } from '@ditcache/cuda-runtime';

/** The pipeline request of a golden run: its embeddings, initial latents, size, steps and guidance. */
export function goldenRequest(ref: Record<string, Tensor>, meta: Meta): SD3GenerateOptions {
  return {
    promptEmbeds: ref.prompt_embeds,
    pooledPromptEmbeds: ref.pooled_prompt_embeds,
    negativePromptEmbeds: ref.negative_prompt_embeds,
    negativePooledPromptEmbeds: ref.negative_pooled_prompt_embeds,
    latents: ref.latents_in,
    height: meta.height,
    width: meta.width,
    numInferenceSteps: meta.num_inference_steps,
    guidanceScale: meta.guidance_scale,
  };
}

/** The tokenizers and text encoders of the prompt reference data (sd3-prompt/). */
export const TEXT_COMPONENTS = ['tokenizer', 'tokenizer_2', 'tokenizer_3', 'text_encoder', 'text_encoder_2', 'text_encoder_3'];

/** sd3-tiny with the reference data's tokenizers and text encoders, listed in model_index.json as diffusers saves them. */
export function sd3FolderWith(text: readonly string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'ditcache-sd3-prompt-'));
  for (const name of ['transformer', 'vae', 'scheduler']) symlinkSync(`${goldens}/sd3-tiny/${name}`, join(dir, name));
  for (const name of text) symlinkSync(`${goldens}/sd3-prompt/${name}`, join(dir, name));
  const index = JSON.parse(readFileSync(`${goldens}/sd3-tiny/model_index.json`, 'utf-8')) as Record<string, unknown>;
  const classes: Record<string, string> = {
    tokenizer: 'CLIPTokenizer',
    tokenizer_2: 'CLIPTokenizer',
    tokenizer_3: 'T5TokenizerFast',
    text_encoder: 'CLIPTextModelWithProjection',
    text_encoder_2: 'CLIPTextModelWithProjection',
    text_encoder_3: 'T5EncoderModel',
  };
  writeFileSync(join(dir, 'model_index.json'), JSON.stringify({ ...index, ...Object.fromEntries(text.map((n) => [n, ['transformers', classes[n]]])) }));
  return dir;
}
