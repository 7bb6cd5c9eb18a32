// LTX-Video for the `ditcache` command line: package.json's `"ditcache": { "cli": ... }` points here.
import { basename, dirname, extname, join } from 'node:path';

import type { Tensor } from '@ditcache/cuda-runtime';
import { saveAnimation, savePngFrames } from '@ditcache/diffusion';
import { UsageError, componentConfig, pickInputs, type CliFamily, type CliGenerateSettings, type CliTransformer } from '@ditcache/diffusion/cli';

import { LTX_TRANSFORMER_DEFAULTS } from './config.js';
import { LtxPipeline, type LtxGenerateOptions } from './pipeline.js';
import { LtxVideoTransformer } from './transformer.js';

/** LTXPipeline's default frame_rate, also the animation's speed when --fps is not given. */
const DEFAULT_FRAME_RATE = 25;

/** A scalar of --inputs (a float32 tensor of one value, as the forward's int / float arguments come). */
function scalarInput(inputs: Record<string, Tensor>, file: string, name: string): number {
  const [t] = pickInputs(inputs, file, [name]);
  if (t.size !== 1) throw new UsageError(`--inputs ${file}: '${name}' must hold one value, got shape (${t.shape.join(', ')})`);
  return t.toFloat32Array()[0];
}

const ltxCliFamily: CliFamily = {
  label: 'LTX-Video',
  pipelineClasses: ['LTXPipeline'],
  transformerClasses: ['LTXVideoTransformer3DModel'],
  // The flags of `ditcache generate` LTX-Video takes beyond every family's: the video's frames and frame rate.
  options: [
    {
      flag: '--frames',
      type: 'positive-integer',
      setting: 'frames',
      description: "video frames, 8k + 1 (the VAE's temporal ratio k + 1; others are floored to it, as diffusers does; default 161)",
    },
    {
      flag: '--fps',
      type: 'positive-integer',
      setting: 'fps',
      description: `LTXPipeline's frame_rate, which scales the rotary positions along the frames and so changes the video (default ${DEFAULT_FRAME_RATE}); also the animation's speed`,
    },
  ],
  outputFormats: ['.webp', '.gif'],

  spawn: (dir, options) => LtxPipeline.spawn(dir, options),

  // One chain, as cache-dit registers LTX-Video.
  cacheChains: (dir) => [
    {
      name: 'transformer.transformer_blocks',
      blocks: componentConfig(dir, 'transformer', ['LTXVideoTransformer3DModel'], LTX_TRANSFORMER_DEFAULTS).num_layers,
    },
  ],

  request(inputs, file, s: CliGenerateSettings): LtxGenerateOptions {
    const [promptEmbeds, promptAttentionMask] = pickInputs(inputs, file, ['prompt_embeds', 'prompt_attention_mask']);
    const negative = [inputs.negative_prompt_embeds, inputs.negative_prompt_attention_mask];
    if ((s.guidance ?? 3) > 1 && !(negative[0] && negative[1])) {
      throw new UsageError(
        `--inputs ${file}: guidance ${s.guidance ?? 3} (above 1: classifier-free guidance) needs negative_prompt_embeds and negative_prompt_attention_mask; give them, or --guidance 1`,
      );
    }
    return {
      promptEmbeds,
      promptAttentionMask,
      negativePromptEmbeds: negative[0],
      negativePromptAttentionMask: negative[1],
      latents: inputs.latents_in,
      seed: inputs.latents_in ? undefined : s.seed,
      height: s.height,
      width: s.width,
      numFrames: s.frames,
      frameRate: s.fps,
      numInferenceSteps: s.steps,
      guidanceScale: s.guidance,
    };
  },

  // One video per prompt: prompt_embeds (P, ...) makes P.
  batchSize: (request) => (request as LtxGenerateOptions).promptEmbeds.shape[0],

  /** An animation (.webp or .gif) at `path`, and every frame as a PNG in `<name>_frames/` beside it. */
  async writeOutput(result, path, s) {
    if (!result.video) throw new Error('the pipeline returned no video');
    await saveAnimation(result.video, path, { fps: s.fps ?? DEFAULT_FRAME_RATE });
    await savePngFrames(result.video, join(dirname(path), `${basename(path, extname(path))}_frames`));
  },

  loadTransformer(dir, options): CliTransformer {
    const transformer = LtxVideoTransformer.load(dir, options);
    return {
      forward(inputs, file): Tensor {
        const [hiddenStates, encoderHiddenStates, timestep] = pickInputs(inputs, file, ['hidden_states', 'encoder_hidden_states', 'timestep']);
        const scale = inputs.rope_interpolation_scale;
        if (scale && scale.size !== 3)
          throw new UsageError(`--inputs ${file}: 'rope_interpolation_scale' must hold 3 values, got shape (${scale.shape.join(', ')})`);
        return transformer.forward({
          hiddenStates,
          encoderHiddenStates,
          timestep,
          encoderAttentionMask: inputs.encoder_attention_mask ?? null,
          numFrames: scalarInput(inputs, file, 'num_frames'),
          height: scalarInput(inputs, file, 'height'),
          width: scalarInput(inputs, file, 'width'),
          ropeInterpolationScale: scale ? ([...scale.toFloat32Array()] as [number, number, number]) : null,
        });
      },
      [Symbol.dispose]: () => transformer.dispose(),
    };
  },
};

export default ltxCliFamily;
