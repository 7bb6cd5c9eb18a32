// What every test file of this package reads: the reference data tools/make_references.py wrote
// (test/goldens/README.md describes it), and the request of one of its pipeline runs.
import { readFileSync } from 'node:fs';

import { loadSafetensors, type Tensor } from '@ditcache/cuda-runtime';

import type { QwenImageGenerateOptions } from '../src/index.js';

export { relativeL2 } from '@ditcache/cuda-runtime';

export const goldens = new URL('./goldens/', import.meta.url).pathname;

export interface RunSpec {
  set: 'qwen-tiny' | 'qwen-deep';
  height: number;
  width: number;
  steps: number;
  true_cfg_scale: number;
  batch: number;
}

export interface ContextTrace {
  source: string;
  executed_steps: number;
  cached_steps: number[];
  cfg_cached_steps: number[];
  residual_diffs: Record<string, number>;
  cfg_residual_diffs: Record<string, number>;
}

export interface CacheTrace {
  run: string;
  config: Record<string, unknown>;
  taylorseer_order: number | null;
  params_modifiers: Record<string, unknown>[] | null;
  margin: number;
  stats: ContextTrace[];
}

export interface Meta {
  runs: Record<string, RunSpec>;
  cache_traces: Record<string, CacheTrace>;
  min_margin: number;
}

export const meta = JSON.parse(readFileSync(`${goldens}/meta.json`, 'utf-8')) as Meta;

/** Every reference tensor, by name (forward.*, forward_deep.*, and per run `{run}.*`). */
export function loadReferences(): Record<string, Tensor> {
  return loadSafetensors(`${goldens}/references.safetensors`);
}

/** The request of pipeline run `run`, from its reference inputs. */
export function runRequest(ref: Record<string, Tensor>, run: string, decode: boolean): QwenImageGenerateOptions {
  const spec = meta.runs[run];
  return {
    promptEmbeds: ref[`${run}.prompt_embeds`],
    promptEmbedsMask: ref[`${run}.prompt_embeds_mask`],
    negativePromptEmbeds: ref[`${run}.negative_prompt_embeds`],
    negativePromptEmbedsMask: ref[`${run}.negative_prompt_embeds_mask`],
    trueCfgScale: spec.true_cfg_scale,
    latents: ref[`${run}.latents_in`],
    height: spec.height,
    width: spec.width,
    numInferenceSteps: spec.steps,
    decode,
  };
}
