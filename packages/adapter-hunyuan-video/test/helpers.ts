// Where the tests find this package's reference data (tools/make_references.py wrote it;
// goldens/README.md describes every file), and the error measure they use.
import { loadSafetensors, type Tensor } from '@ditcache/cuda-runtime';

import type { HunyuanVideoGenerateOptions } from '../src/index.js';
import metaJson from './goldens/meta.json' with { type: 'json' };

export { relativeL2 } from '@ditcache/cuda-runtime';

export const goldens = new URL('./goldens/', import.meta.url).pathname;

/** The tensors of references.safetensors whose names start with `prefix.`, by the rest of their names. */
export function references(prefix: string): Record<string, Tensor> {
  const all = loadSafetensors(`${goldens}/references.safetensors`);
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(all)) {
    if (name.startsWith(`${prefix}.`)) out[name.slice(prefix.length + 1)] = t;
    else t.dispose();
  }
  return out;
}

/** goldens/meta.json: the runs' settings and cache-dit's traces. */
export const meta = metaJson;

export type RunName = keyof typeof meta.runs;

/** The generate() options of a reference run. */
export function requestOf(run: RunName, ref: Record<string, Tensor>): HunyuanVideoGenerateOptions {
  const spec = meta.runs[run];
  return {
    promptEmbeds: ref.prompt_embeds,
    pooledPromptEmbeds: ref.pooled_prompt_embeds,
    promptAttentionMask: ref.prompt_attention_mask,
    negativePromptEmbeds: ref.negative_prompt_embeds,
    negativePooledPromptEmbeds: ref.negative_pooled_prompt_embeds,
    negativePromptAttentionMask: ref.negative_prompt_attention_mask,
    latents: ref.latents_in,
    height: spec.height,
    width: spec.width,
    numFrames: spec.num_frames,
    numInferenceSteps: spec.steps,
    guidanceScale: spec.guidance_scale,
    trueCfgScale: spec.true_cfg_scale,
  };
}
