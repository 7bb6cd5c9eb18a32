// Stable Diffusion 3 / 3.5 for the `ditcache` command line. package.json's
// `"ditcache": { "cli": "./dist/cli-family.js" }` points here; the CLI finds this package beside
// it, or loads it with `--adapter PATH|NAME`, and imports this module's default export.
import { join } from 'node:path';

import type { Tensor } from '@ditcache/cuda-runtime';
import { missingFolders } from '@ditcache/diffusion';
import {
  UsageError,
  componentConfig,
  encodePromptBatches,
  pickInputs,
  textPromptOptions,
  writeImage,
  type CliFamily,
  type CliGenerateSettings,
  type CliTransformer,
} from '@ditcache/diffusion/cli';

import { StableDiffusion3Pipeline, type SD3GenerateOptions } from './pipeline.js';
import { SD3_TRANSFORMER_DEFAULTS, loadSD3TransformerConfig } from './config.js';
import { CLIP_COMPONENTS, MAX_SEQUENCE_LENGTH, SD3PromptEncoder } from './prompt-encoder.js';
import { SD3Transformer } from './transformer.js';

const NEGATIVE = ['negative_prompt_embeds', 'negative_pooled_prompt_embeds'];

/** A usage error unless the folder has SD3's two CLIP tokenizers and encoders. */
function checkTextComponents(dir: string): void {
  const missing = missingFolders(dir, CLIP_COMPONENTS);
  if (missing.length)
    throw new UsageError(`--prompt: ${dir} has no ${missing.map((m) => `${m}/`).join(', ')} (text encoders); give prompt embeddings with --inputs instead`);
}

const sd3CliFamily: CliFamily = {
  label: 'Stable Diffusion 3',
  pipelineClasses: ['StableDiffusion3Pipeline'],
  transformerClasses: ['SD3Transformer2DModel'],
  // The flags of `ditcache generate` it takes beyond every family's (guidance is batched CFG with
  // --guidance): prompts as text, with the folder's text encoders, instead of embeddings.
  options: [
    ...textPromptOptions({
      negativePrompt: 'the negative prompt of CFG (default "")',
      maxSequenceLength: `T5 tokens of the prompt (default ${MAX_SEQUENCE_LENGTH})`,
    }),
  ],
  outputFormats: ['.png'],

  spawn: (dir, options) => StableDiffusion3Pipeline.spawn(dir, { ...options, releaseTextEncoders: true }),

  checkModel(dir, s: CliGenerateSettings): void {
    if (s.prompt === undefined && s.negativePrompt === undefined) return;
    checkTextComponents(dir);
  },

  // One chain of joint blocks, so `--cache` is checked against it before the weights load.
  cacheChains: (dir) => [
    { name: 'transformer.transformer_blocks', blocks: componentConfig(dir, 'transformer', ['SD3Transformer2DModel'], SD3_TRANSFORMER_DEFAULTS).num_layers },
  ],

  encodePrompt(dir, prompts, s) {
    checkTextComponents(dir);
    using encoder = new SD3PromptEncoder(dir, loadSD3TransformerConfig(join(dir, 'transformer')).joint_attention_dim);
    return encodePromptBatches(prompts, s.negativePrompt, (batch) => {
      const { promptEmbeds, pooledPromptEmbeds } = encoder.encode(batch, { maxSequenceLength: s.maxSequenceLength });
      return { tensors: { prompt_embeds: promptEmbeds, pooled_prompt_embeds: pooledPromptEmbeds }, notes: batch.map(() => []) };
    });
  },

  request(inputs, file, s: CliGenerateSettings): SD3GenerateOptions {
    if (s.prompt !== undefined) {
      if ('prompt_embeds' in inputs) throw new UsageError(`--prompt and the prompt_embeds of --inputs ${file} exclude each other; give one`);
      return {
        prompt: s.prompt,
        negativePrompt: s.negativePrompt,
        maxSequenceLength: s.maxSequenceLength,
        latents: inputs.latents_in,
        seed: inputs.latents_in ? undefined : s.seed,
        height: s.height,
        width: s.width,
        numInferenceSteps: s.steps,
        guidanceScale: s.guidance,
      };
    }
    if (s.negativePrompt !== undefined || s.maxSequenceLength !== undefined)
      throw new UsageError('--negative-prompt and --max-sequence-length go with --prompt');
    const [promptEmbeds, pooledPromptEmbeds] = pickInputs(inputs, file, ['prompt_embeds', 'pooled_prompt_embeds']);
    // Classifier-free guidance runs at a guidance scale above 1 (the pipeline's default is 7) and needs both negative embeddings.
    const guided = s.guidance === undefined || s.guidance > 1;
    if (guided && !NEGATIVE.every((n) => n in inputs)) {
      throw new UsageError(
        `--inputs ${file} needs ${NEGATIVE.join(' and ')} for classifier-free guidance (--guidance ${s.guidance ?? 'unset, 7 by default'}); or give --guidance 1`,
      );
    }
    const [negativePromptEmbeds, negativePooledPromptEmbeds] = NEGATIVE.some((n) => n in inputs) ? pickInputs(inputs, file, NEGATIVE) : [undefined, undefined];
    return {
      promptEmbeds,
      pooledPromptEmbeds,
      negativePromptEmbeds,
      negativePooledPromptEmbeds,
      latents: inputs.latents_in,
      seed: inputs.latents_in ? undefined : s.seed,
      height: s.height,
      width: s.width,
      numInferenceSteps: s.steps,
      guidanceScale: s.guidance,
    };
  },

  // One image per prompt: prompt_embeds (P, ...) makes P; a text prompt, one.
  batchSize: (request) => (request as SD3GenerateOptions).promptEmbeds?.shape[0] ?? 1,

  writeOutput: (result, path) => writeImage(result, path),

  // ditcache forward: the transformer loads once with the CLI's --dtype / --weight-dtype, and runs once or --repeat times.
  loadTransformer(dir, options): CliTransformer {
    const transformer = SD3Transformer.load(dir, options);
    const names = ['hidden_states', 'encoder_hidden_states', 'pooled_projections', 'timestep'];
    return {
      forward(inputs, file): Tensor {
        const [hiddenStates, encoderHiddenStates, pooledProjections, timestep] = pickInputs(inputs, file, names);
        return transformer.forward({ hiddenStates, encoderHiddenStates, pooledProjections, timestep });
      },
      [Symbol.dispose]: () => transformer.dispose(),
    };
  },
};

export default sd3CliFamily;
