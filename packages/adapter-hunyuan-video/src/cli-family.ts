// HunyuanVideo for the `ditcache` command line: package.json's `"ditcache": { "cli": ... }` points here.
// The pipeline takes prompt embeddings only (its Llama and CLIP text encoders are not ported), so
// --inputs carries them under HunyuanVideoPipeline's keyword names.
import { basename, dirname, extname, join } from 'node:path';

import type { Tensor } from '@ditcache/cuda-runtime';
import { saveAnimation, savePngFrames } from '@ditcache/diffusion';
import { UsageError, componentConfig, pickInputs, type CliFamily, type CliGenerateSettings, type CliTransformer } from '@ditcache/diffusion/cli';

import { HUNYUAN_VIDEO_TRANSFORMER_DEFAULTS } from './config.js';
import { HunyuanVideoPipeline, type HunyuanVideoGenerateOptions } from './pipeline.js';
import { HunyuanVideoTransformer } from './transformer.js';

const PROMPT = ['prompt_embeds', 'pooled_prompt_embeds', 'prompt_attention_mask'];
const NEGATIVE = ['negative_prompt_embeds', 'negative_pooled_prompt_embeds', 'negative_prompt_attention_mask'];

const hunyuanVideoCliFamily: CliFamily = {
  label: 'HunyuanVideo',
  pipelineClasses: ['HunyuanVideoPipeline'],
  transformerClasses: ['HunyuanVideoTransformer3DModel'],
  // The flags of `ditcache generate` HunyuanVideo takes beyond every family's (--guidance is the embedded guidance).
  options: [
    { flag: '--frames', type: 'positive-integer', setting: 'frames', description: 'video frames, 4k + 1' },
    {
      flag: '--true-cfg-scale',
      type: 'number',
      setting: 'trueCfgScale',
      valueName: 's',
      description: 'true classifier-free guidance with the negative embeddings of --inputs',
    },
    { flag: '--fps', type: 'positive-integer', setting: 'fps', description: 'frames per second of the animation' },
  ],
  outputFormats: ['.webp', '.gif'],

  // --dtype and --weight-dtype travel in `options` (the transformer takes the dtype, the VAE stays float32).
  spawn: (dir, options) => HunyuanVideoPipeline.spawn(dir, options),

  // Two contexts, as cache-dit caches HunyuanVideo: the dual-stream blocks, then the single-stream ones (see cache.ts).
  cacheChains(dir) {
    const c = componentConfig(dir, 'transformer', ['HunyuanVideoTransformer3DModel'], HUNYUAN_VIDEO_TRANSFORMER_DEFAULTS);
    return [
      { name: 'transformer.transformer_blocks', blocks: c.num_layers },
      { name: 'transformer.single_transformer_blocks', blocks: c.num_single_layers },
    ];
  },

  request(inputs, file, s: CliGenerateSettings): HunyuanVideoGenerateOptions {
    if (s.frames !== undefined && (s.frames - 1) % 4 !== 0) throw new UsageError(`--frames must be 4k + 1 (e.g. 129, 61, 9), got ${s.frames}`);
    if (file === undefined) throw new UsageError(`--inputs is required: a safetensors file with ${PROMPT.join(', ')} (and latents_in, ${NEGATIVE.join(', ')})`);
    const [promptEmbeds, pooledPromptEmbeds, promptAttentionMask] = pickInputs(inputs, file, PROMPT);
    const given = NEGATIVE.filter((n) => n in inputs);
    // The negative triple counts only under true CFG (--true-cfg-scale above 1); otherwise it is ignored, as in diffusers.
    const trueCfg = s.trueCfgScale !== undefined && s.trueCfgScale > 1;
    if (trueCfg && given.length > 0 && given.length < NEGATIVE.length) {
      throw new UsageError(
        `--inputs ${file} has ${given.join(', ')} but not ${NEGATIVE.filter((n) => !given.includes(n)).join(', ')}: true CFG takes all three`,
      );
    }
    if (trueCfg && given.length === 0) {
      throw new UsageError(`--true-cfg-scale needs ${NEGATIVE.join(', ')} in --inputs`);
    }
    return {
      promptEmbeds,
      pooledPromptEmbeds,
      promptAttentionMask,
      negativePromptEmbeds: inputs.negative_prompt_embeds,
      negativePooledPromptEmbeds: inputs.negative_pooled_prompt_embeds,
      negativePromptAttentionMask: inputs.negative_prompt_attention_mask,
      trueCfgScale: s.trueCfgScale,
      latents: inputs.latents_in,
      seed: inputs.latents_in ? undefined : s.seed,
      height: s.height,
      width: s.width,
      numFrames: s.frames,
      numInferenceSteps: s.steps,
      guidanceScale: s.guidance,
    };
  },

  // One video per prompt: prompt_embeds (P, ...) makes P.
  batchSize: (request) => (request as HunyuanVideoGenerateOptions).promptEmbeds.shape[0],

  /** An animation (.webp or .gif) at `path`, and every frame as a PNG in `<name>_frames/` beside it. */
  async writeOutput(result, path, s) {
    if (!result.video) throw new Error('the pipeline returned no video');
    await saveAnimation(result.video, path, { fps: s.fps });
    await savePngFrames(result.video, join(dirname(path), `${basename(path, extname(path))}_frames`));
  },

  loadTransformer(dir, options): CliTransformer {
    const transformer = HunyuanVideoTransformer.load(dir, options);
    const names = ['hidden_states', 'timestep', 'encoder_hidden_states', 'encoder_attention_mask', 'pooled_projections'];
    return {
      forward(inputs, file): Tensor {
        const [hiddenStates, timestep, encoderHiddenStates, encoderAttentionMask, pooledProjections] = pickInputs(inputs, file, names);
        // Guidance-embedded models also take guidance; the transformer says when it is missing (or not taken).
        return transformer.forward({ hiddenStates, timestep, encoderHiddenStates, encoderAttentionMask, pooledProjections, guidance: inputs.guidance });
      },
      [Symbol.dispose]: () => transformer.dispose(),
    };
  },
};

export default hunyuanVideoCliFamily;
