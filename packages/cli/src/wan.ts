import { basename, dirname, extname, join } from 'node:path';

import { WanPipeline, WanTransformer, type WanGenerateOptions } from '@ditcache/adapter-wan';
import type { Tensor } from '@ditcache/cuda-runtime';
import { saveAnimation, savePngFrames } from '@ditcache/diffusion';

import { UsageError } from './errors.js';
import { pick, refuseFlags, type Family, type GenerateSettings } from './families.js';

export const wan: Family = {
  label: 'Wan',
  pipelineClasses: ['WanPipeline'],
  transformerClasses: ['WanTransformer3DModel'],

  outputFormats: ['.webp', '.gif'],

  spawn: (dir) => WanPipeline.spawn(dir) as never,

  request(inputs, file, s: GenerateSettings): WanGenerateOptions {
    refuseFlags('Wan', s, ['prompt', 'negativePrompt', 'maxSequenceLength', 'trueCfgScale', 'defaultSampleSize']);
    if (s.frames !== undefined && (s.frames - 1) % 4 !== 0) throw new UsageError(`--frames must be 4k + 1 (e.g. 81, 49, 9), got ${s.frames}`);
    const [promptEmbeds] = pick(inputs, file, ['prompt_embeds']);
    return {
      promptEmbeds,
      negativePromptEmbeds: inputs.negative_prompt_embeds,
      latents: inputs.latents_in,
      seed: inputs.latents_in ? undefined : s.seed,
      height: s.height,
      width: s.width,
      numFrames: s.frames,
      numInferenceSteps: s.steps,
      guidanceScale: s.guidance,
      guidanceScale2: s.guidance2,
    };
  },

  /** An animation (.webp or .gif) at `path`, and every frame as a PNG in `<name>_frames/` beside it. */
  async writeOutput(result, path, s) {
    if (!result.video) throw new Error('the pipeline returned no video');
    await saveAnimation(result.video, path, { fps: s.fps });
    await savePngFrames(result.video, join(dirname(path), `${basename(path, extname(path))}_frames`));
  },

  forward(dir, inputs, file): Tensor {
    const [hiddenStates, timestep, encoderHiddenStates] = pick(inputs, file, ['hidden_states', 'timestep', 'encoder_hidden_states']);
    using transformer = WanTransformer.load(dir);
    return transformer.forward({ hiddenStates, timestep, encoderHiddenStates });
  },
};
