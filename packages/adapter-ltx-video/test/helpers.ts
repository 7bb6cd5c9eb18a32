// Where the tests find this package's reference data (tools/make_references.py wrote it; goldens/README.md describes it), and its pipeline call.
import type { Tensor } from '@ditcache/cuda-runtime';

import type { LtxGenerateOptions, LtxTransformerInputs } from '../src/index.js';
import meta095 from './goldens/ltx-095-tiny/meta.json' with { type: 'json' };
import metaTiny from './goldens/ltx-tiny/meta.json' with { type: 'json' };

export const metas = { 'ltx-tiny': metaTiny, 'ltx-095-tiny': meta095 };

/** The golden pipeline call as generate() options. */
export function request(ref: Record<string, Tensor>, set: keyof typeof metas): LtxGenerateOptions {
  const p = metas[set].pipeline;
  return {
    promptEmbeds: ref.prompt_embeds,
    promptAttentionMask: ref.prompt_attention_mask,
    negativePromptEmbeds: ref.negative_prompt_embeds,
    negativePromptAttentionMask: ref.negative_prompt_attention_mask,
    latents: ref.latents_in,
    height: p.height,
    width: p.width,
    numFrames: p.num_frames,
    frameRate: p.frame_rate,
    numInferenceSteps: p.steps,
    guidanceScale: p.guidance_scale,
  };
}

/** The forward's inputs from the reference file (its scalars are float32 tensors). */
export function forwardInputs(ref: Record<string, Tensor>): LtxTransformerInputs {
  const scalar = (name: string): number => ref[name].toFloat32Array()[0];
  return {
    hiddenStates: ref.hidden_states,
    encoderHiddenStates: ref.encoder_hidden_states,
    timestep: ref.timestep,
    encoderAttentionMask: ref.encoder_attention_mask,
    numFrames: scalar('num_frames'),
    height: scalar('height'),
    width: scalar('width'),
    ropeInterpolationScale: [...ref.rope_interpolation_scale.toFloat32Array()] as [number, number, number],
  };
}

export const goldens = new URL('./goldens/', import.meta.url).pathname;

export { relativeL2, relativeL2Values } from '@ditcache/cuda-runtime';
