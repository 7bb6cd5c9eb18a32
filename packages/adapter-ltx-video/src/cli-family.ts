// LTX-Video for the `ditcache` command line: package.json's `"ditcache": { "cli": ... }` points here.
import { basename, dirname, extname, join } from 'node:path';

import type { Tensor } from '@ditcache/cuda-runtime';
import { saveAnimation, savePngFrames } from '@ditcache/diffusion';
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
import { maxSequenceLengthWarning } from '@ditcache/text-encoders';

import { LTX_TRANSFORMER_DEFAULTS } from './config.js';
import { LtxPipeline, type LtxGenerateOptions } from './pipeline.js';
import { DEFAULT_MAX_SEQUENCE_LENGTH, LtxPromptEncoder, TEXT_COMPONENTS } from './prompt-encoder.js';
import { LtxVideoTransformer } from './transformer.js';

/** LTXPipeline's default frame_rate, also the animation's speed when --fps is not given. */
/** What the folder lacks when a prompt needs its text folders, worded for this family. */
const TEXT_WORDING = {
  encoders: `LTX-Video encodes prompts with ${TEXT_COMPONENTS.map((m) => `${m}/`).join(' and ')}`,
  instead: 'prompt embeddings and masks',
};

const DEFAULT_FRAME_RATE = 25;

/** A scalar of --inputs (a float32 tensor of one value, as the forward's int / float arguments come). */
function scalarInput(inputs: Record<string, Tensor>, file: string, name: string): number {
  const [t] = pickInputs(inputs, file, [name]);
  if (t.size !== 1) throw new UsageError(`--inputs ${file}: '${name}' must hold one value, got shape (${t.shape.join(', ')})`);
  return t.toFloat32Array()[0];
}

/** The embeddings of a branch from --inputs: both or neither of the pair, named as LTXPipeline's __call__ names them. */
function embeddedPair(inputs: Record<string, Tensor>, file: string | undefined, names: readonly [string, string]): [Tensor, Tensor] | undefined {
  if (!names.some((n) => n in inputs)) return undefined;
  const [embeds, mask] = pickInputs(inputs, file, [...names]);
  return [embeds, mask];
}

const ltxCliFamily: CliFamily = {
  label: 'LTX-Video',
  pipelineClasses: ['LTXPipeline'],
  transformerClasses: ['LTXVideoTransformer3DModel'],
  // The flags of `ditcache generate` LTX-Video takes beyond every family's: prompts as text, the video's frames and frame rate.
  options: [
    ...textPromptOptions({
      negativePrompt: 'the negative prompt of classifier-free guidance (default "", with --guidance above 1)',
      maxSequenceLength: `T5 tokens of the prompt (default ${DEFAULT_MAX_SEQUENCE_LENGTH})`,
    }),
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

  // One generation per run: T5-XXL's weights (9.5 GB) go once the prompts are encoded.
  spawn: (dir, options) => LtxPipeline.spawn(dir, { ...options, releaseTextEncoders: true }),

  checkModel(dir, s: CliGenerateSettings): void {
    if (s.prompt !== undefined || s.negativePrompt !== undefined) checkTextFolders(dir, TEXT_COMPONENTS, { ...TEXT_WORDING, flag: '--prompt' });
  },

  // One chain, as cache-dit registers LTX-Video.
  cacheChains: (dir) => [
    {
      name: 'transformer.transformer_blocks',
      blocks: componentConfig(dir, 'transformer', ['LTXVideoTransformer3DModel'], LTX_TRANSFORMER_DEFAULTS).num_layers,
    },
  ],

  request(inputs, file, s: CliGenerateSettings): LtxGenerateOptions {
    const positive = embeddedPair(inputs, file, ['prompt_embeds', 'prompt_attention_mask']);
    const negative = embeddedPair(inputs, file, ['negative_prompt_embeds', 'negative_prompt_attention_mask']);
    if (s.prompt !== undefined && positive) throw new UsageError(`--prompt and the prompt embeddings of --inputs ${file} exclude each other; give one`);
    if (s.negativePrompt !== undefined && negative) {
      throw new UsageError(`--negative-prompt and the negative embeddings of --inputs ${file} exclude each other; give one`);
    }
    if (s.prompt === undefined && !positive) {
      throw new UsageError(
        file === undefined
          ? '--prompt or --inputs is required: a prompt for a folder with a text encoder, or a safetensors file with prompt_embeds and prompt_attention_mask'
          : `--inputs ${file} has no prompt_embeds / prompt_attention_mask; give them, or --prompt`,
      );
    }
    if (s.maxSequenceLength !== undefined && s.prompt === undefined && s.negativePrompt === undefined) {
      throw new UsageError('--max-sequence-length applies to --prompt and --negative-prompt only');
    }
    return {
      prompt: s.prompt,
      negativePrompt: s.negativePrompt,
      maxSequenceLength: s.maxSequenceLength,
      promptEmbeds: positive?.[0],
      promptAttentionMask: positive?.[1],
      negativePromptEmbeds: negative?.[0],
      negativePromptAttentionMask: negative?.[1],
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

  // One video per prompt: prompt_embeds (P, ...) makes P; a text prompt, one.
  batchSize: (request) => (request as LtxGenerateOptions).promptEmbeds?.shape[0] ?? 1,

  /** An animation (.webp or .gif) at `path`, and every frame as a PNG in `<name>_frames/` beside it. */
  async writeOutput(result, path, s) {
    if (!result.video) throw new Error('the pipeline returned no video');
    await saveAnimation(result.video, path, { fps: s.fps ?? DEFAULT_FRAME_RATE });
    await savePngFrames(result.video, join(dirname(path), `${basename(path, extname(path))}_frames`));
  },

  encodePrompt(dir, prompts, s) {
    checkTextFolders(dir, TEXT_COMPONENTS, { ...TEXT_WORDING, flag: 'encode-prompt' });
    using encoder = LtxPromptEncoder.fromPretrained(dir);
    return encodePromptBatches(prompts, s.negativePrompt, (batch) => {
      const e = encoder.encode(batch, { maxSequenceLength: s.maxSequenceLength });
      e.inputIds.dispose();
      // diffusers' LTXPipeline logs this warning when T5 truncates a prompt; said of each prompt here.
      const length = e.promptEmbeds.shape[1];
      const notes = batch.map((prompt) => {
        const warning = maxSequenceLengthWarning(encoder.tokenizer, [prompt], length);
        return warning ? [warning] : [];
      });
      return { tensors: { prompt_embeds: e.promptEmbeds, prompt_attention_mask: e.promptAttentionMask }, notes };
    });
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
