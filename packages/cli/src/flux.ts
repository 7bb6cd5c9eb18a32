import { FluxPipeline, FluxTransformer, type FluxGenerateOptions } from '@ditcache/adapter-flux';
import type { Tensor } from '@ditcache/cuda-runtime';

import { UsageError } from './errors.js';
import { pick, refuseFlags, writeImage, type Family, type GenerateSettings } from './families.js';

export const flux: Family = {
  label: 'FLUX.1',
  pipelineClasses: ['FluxPipeline'],
  transformerClasses: ['FluxTransformer2DModel'],

  outputFormats: ['.png'],

  spawn: (dir) => FluxPipeline.spawn(dir) as never,

  request(inputs, file, s: GenerateSettings): FluxGenerateOptions {
    const [promptEmbeds, pooledPromptEmbeds] = pick(inputs, file, ['prompt_embeds', 'pooled_prompt_embeds']);
    const hasNegative = 'negative_prompt_embeds' in inputs || 'negative_pooled_prompt_embeds' in inputs;
    const [negativePromptEmbeds, negativePooledPromptEmbeds] = hasNegative
      ? pick(inputs, file, ['negative_prompt_embeds', 'negative_pooled_prompt_embeds'])
      : [undefined, undefined];
    refuseFlags('FLUX.1', s, ['defaultSampleSize', 'frames', 'guidance2', 'fps']);
    if (s.trueCfgScale !== undefined && s.trueCfgScale > 1 && !hasNegative) {
      throw new UsageError('--true-cfg-scale needs negative_prompt_embeds and negative_pooled_prompt_embeds in --inputs');
    }
    return {
      promptEmbeds,
      pooledPromptEmbeds,
      negativePromptEmbeds,
      negativePooledPromptEmbeds,
      trueCfgScale: s.trueCfgScale,
      latents: inputs.latents_in,
      seed: inputs.latents_in ? undefined : s.seed,
      height: s.height,
      width: s.width,
      numInferenceSteps: s.steps,
      guidanceScale: s.guidance,
    };
  },

  writeOutput: (result, path) => writeImage(result, path),

  forward(dir, inputs, file): Tensor {
    const names = ['hidden_states', 'encoder_hidden_states', 'pooled_projections', 'timestep', 'img_ids', 'txt_ids'];
    const [hiddenStates, encoderHiddenStates, pooledProjections, timestep, imgIds, txtIds] = pick(inputs, file, names);
    using transformer = FluxTransformer.load(dir);
    return transformer.forward({ hiddenStates, encoderHiddenStates, pooledProjections, timestep, imgIds, txtIds, guidance: inputs.guidance });
  },
};
