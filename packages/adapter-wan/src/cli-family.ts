// Wan 2.1 / 2.2 for the `ditcache` command line: package.json's `"ditcache": { "cli": ... }` points here.
import { basename, dirname, extname, join } from 'node:path';

import type { Tensor } from '@ditcache/cuda-runtime';
import { saveAnimation, savePngFrames } from '@ditcache/diffusion';
import { readJsonObject } from '@ditcache/diffusion';
import {
  UsageError,
  checkTextFolders,
  componentConfig,
  encodePromptBatches,
  pickInputs,
  textPromptOptions,
  type CliFamily,
  type CliGenerateSettings,
  type CliTransformer,
} from '@ditcache/diffusion/cli';

import { WAN_TRANSFORMER_DEFAULTS } from './config.js';
import { WanPipeline, type WanGenerateOptions } from './pipeline.js';
import { MAX_SEQUENCE_LENGTH, WanPromptEncoder, TEXT_COMPONENTS } from './prompt-encoder.js';
import { WanTransformer } from './transformer.js';

const wanCliFamily: CliFamily = {
  label: 'Wan',
  pipelineClasses: ['WanPipeline'],
  transformerClasses: ['WanTransformer3DModel'],
  // The flags of `ditcache generate` Wan takes beyond every family's: prompts as text, and the video's.
  options: [
    ...textPromptOptions({
      negativePrompt: 'the negative prompt of CFG (default "")',
      maxSequenceLength: `UMT5 tokens of the prompt (default ${MAX_SEQUENCE_LENGTH})`,
    }),
    { flag: '--frames', type: 'positive-integer', setting: 'frames', description: 'video frames, 4k + 1' },
    {
      flag: '--guidance-2',
      type: 'number',
      setting: 'guidance2',
      valueName: 'g',
      description: 'guidance scale of the low-noise expert (transformer_2) of Wan 2.2',
    },
    { flag: '--fps', type: 'positive-integer', setting: 'fps', description: 'frames per second of the animation' },
  ],
  outputFormats: ['.webp', '.gif'],

  // One generation per run: the UMT5 encoder's weights (11 GB in bfloat16) go once the prompts are encoded.
  // --dtype and --weight-dtype travel in `options` (the transformers take the dtype, the VAE stays float32).
  spawn: (dir, options) => WanPipeline.spawn(dir, { ...options, releaseTextEncoder: true }),

  checkModel(dir, s: CliGenerateSettings): void {
    if (s.prompt === undefined && s.negativePrompt === undefined) return;
    checkTextFolders(dir, TEXT_COMPONENTS, { encoders: 'the UMT5 text encoder' });
  },

  // One chain per expert: transformer/, and transformer_2/ in a Wan 2.2 folder (a non-null boundary_ratio).
  cacheChains(dir) {
    const experts = readJsonObject(join(dir, 'model_index.json')).boundary_ratio == null ? ['transformer'] : ['transformer', 'transformer_2'];
    return experts.map((name) => ({
      name: `${name}.blocks`,
      blocks: componentConfig(dir, name, ['WanTransformer3DModel'], WAN_TRANSFORMER_DEFAULTS).num_layers,
    }));
  },

  encodePrompt(dir, prompts, s) {
    checkTextFolders(dir, TEXT_COMPONENTS, { encoders: 'the UMT5 text encoder' });
    using encoder = new WanPromptEncoder(dir);
    return encodePromptBatches(prompts, s.negativePrompt, (batch) => {
      const e = encoder.encode(batch, { maxSequenceLength: s.maxSequenceLength });
      const notes = e.truncatedTokensPerPrompt.map((n) => (n > 0 ? [`UMT5 kept ${e.inputIds.shape[1]} tokens of the prompt; ${n} were truncated`] : []));
      // Token ids and mask as float32 values, exact up to 2^24.
      const extras = { input_ids: e.inputIds.cast('float32'), attention_mask: e.attentionMask.cast('float32') };
      e.inputIds.dispose();
      e.attentionMask.dispose();
      return { tensors: { prompt_embeds: e.promptEmbeds, ...extras }, notes };
    });
  },

  request(inputs, file, s: CliGenerateSettings): WanGenerateOptions {
    if (s.frames !== undefined && (s.frames - 1) % 4 !== 0) throw new UsageError(`--frames must be 4k + 1 (e.g. 81, 49, 9), got ${s.frames}`);
    if (s.prompt !== undefined && 'prompt_embeds' in inputs)
      throw new UsageError(`--prompt and the prompt_embeds of --inputs ${file} exclude each other; give one`);
    if (s.negativePrompt !== undefined && 'negative_prompt_embeds' in inputs) {
      throw new UsageError(`--negative-prompt and the negative_prompt_embeds of --inputs ${file} exclude each other; give one`);
    }
    if (s.maxSequenceLength !== undefined && s.prompt === undefined && s.negativePrompt === undefined) {
      throw new UsageError('--max-sequence-length applies to --prompt and --negative-prompt only');
    }
    if (s.prompt === undefined && file === undefined) {
      throw new UsageError('--prompt or --inputs is required: a prompt for a folder with a text encoder, or a safetensors file with prompt_embeds');
    }
    const [promptEmbeds] = s.prompt === undefined ? pickInputs(inputs, file, ['prompt_embeds']) : [undefined];
    return {
      prompt: s.prompt,
      negativePrompt: s.negativePrompt,
      maxSequenceLength: s.maxSequenceLength,
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

  // One video per prompt: prompt_embeds (P, ...) makes P; a text prompt, one.
  batchSize: (request) => (request as WanGenerateOptions).promptEmbeds?.shape[0] ?? 1,

  /** An animation (.webp or .gif) at `path`, and every frame as a PNG in `<name>_frames/` beside it. */
  async writeOutput(result, path, s) {
    if (!result.video) throw new Error('the pipeline returned no video');
    await saveAnimation(result.video, path, { fps: s.fps });
    await savePngFrames(result.video, join(dirname(path), `${basename(path, extname(path))}_frames`));
  },

  loadTransformer(dir, options): CliTransformer {
    const transformer = WanTransformer.load(dir, options);
    return {
      forward(inputs, file): Tensor {
        const [hiddenStates, timestep, encoderHiddenStates] = pickInputs(inputs, file, ['hidden_states', 'timestep', 'encoder_hidden_states']);
        // Image-to-video transformers also take the CLIP image embeddings; the transformer says when they are missing.
        return transformer.forward({ hiddenStates, timestep, encoderHiddenStates, encoderHiddenStatesImage: inputs.encoder_hidden_states_image });
      },
      [Symbol.dispose]: () => transformer.dispose(),
    };
  },
};

export default wanCliFamily;
