// Chroma for the `ditcache` command line: package.json's `"ditcache": { "cli": ... }` points here.
import type { Tensor } from '@ditcache/cuda-runtime';
import {
  UsageError,
  checkTextFolders,
  componentConfig,
  encodePromptBatches,
  pickInputs,
  sharedPerPrompt,
  textPromptOptions,
  writeImage,
  type CliFamily,
  type CliGenerateSettings,
  type CliTransformer,
} from '@ditcache/diffusion/cli';

import { CHROMA_TRANSFORMER_DEFAULTS } from './config.js';
import { ChromaPipeline, type ChromaGenerateOptions } from './pipeline.js';
import { ChromaPromptEncoder, MAX_SEQUENCE_LENGTH, TEXT_COMPONENTS } from './prompt-encoder.js';
import { ChromaTransformer } from './transformer.js';

/** What the folder lacks when a prompt needs its text folders, worded for this family. */
const TEXT_WORDING = { encoders: `Chroma encodes prompts with ${TEXT_COMPONENTS.map((m) => `${m}/`).join(' and ')}`, instead: 'prompt embeddings and masks' };

function checkSequenceLength(n: number | undefined): void {
  if (n !== undefined && n > MAX_SEQUENCE_LENGTH)
    throw new UsageError(`--max-sequence-length must be at most ${MAX_SEQUENCE_LENGTH} (Chroma's T5 limit), got ${n}`);
}

/** The embeddings of a branch from --inputs: both or neither of the pair, named as the pipeline's __call__ names them. */
function embeddedPair(inputs: Record<string, Tensor>, file: string | undefined, names: readonly [string, string]): [Tensor, Tensor] | undefined {
  const present = names.filter((n) => n in inputs);
  if (present.length === 0) return undefined;
  const [embeds, mask] = pickInputs(inputs, file, [...names]);
  return [embeds, mask];
}

const chromaCliFamily: CliFamily = {
  label: 'Chroma',
  pipelineClasses: ['ChromaPipeline'],
  transformerClasses: ['ChromaTransformer2DModel'],
  // Prompts as text; --guidance is the CFG scale (two transformer calls per step above 1).
  options: textPromptOptions({
    negativePrompt: 'the negative prompt of classifier-free guidance (default "", with --guidance above 1)',
    maxSequenceLength: `T5 tokens of the prompt (default and at most ${MAX_SEQUENCE_LENGTH})`,
  }),
  outputFormats: ['.png'],

  // One generation per run: T5-XXL's weights (9.5 GB) go once the prompts are encoded.
  spawn: (dir, options) => ChromaPipeline.spawn(dir, { ...options, releaseTextEncoders: true }),

  checkModel(dir, s: CliGenerateSettings): void {
    if (s.prompt !== undefined || s.negativePrompt !== undefined) checkTextFolders(dir, TEXT_COMPONENTS, { ...TEXT_WORDING, flag: '--prompt' });
  },

  // Two contexts, as cache-dit caches Chroma: the double-stream blocks, then the single-stream ones.
  cacheChains(dir) {
    const c = componentConfig(dir, 'transformer', ['ChromaTransformer2DModel'], CHROMA_TRANSFORMER_DEFAULTS);
    return [
      { name: 'transformer.transformer_blocks', blocks: c.num_layers },
      { name: 'transformer.single_transformer_blocks', blocks: c.num_single_layers },
    ];
  },

  request(inputs, file, s: CliGenerateSettings): ChromaGenerateOptions {
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
    checkSequenceLength(s.maxSequenceLength);
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
      guidanceScale: s.guidance,
      latents: inputs.latents_in,
      seed: inputs.latents_in ? undefined : s.seed,
      height: s.height,
      width: s.width,
      numInferenceSteps: s.steps,
    };
  },

  // One image per prompt: prompt_embeds (P, ...) makes P; a text prompt, one.
  batchSize: (request) => (request as ChromaGenerateOptions).promptEmbeds?.shape[0] ?? 1,

  writeOutput: (result, path) => writeImage(result, path),

  encodePrompt(dir, prompts, s) {
    checkTextFolders(dir, TEXT_COMPONENTS, { ...TEXT_WORDING, flag: 'encode-prompt' });
    checkSequenceLength(s.maxSequenceLength);
    using encoder = ChromaPromptEncoder.fromPretrained(dir);
    return encodePromptBatches(prompts, s.negativePrompt, (batch) => {
      const e = encoder.encode(batch, { maxSequenceLength: s.maxSequenceLength });
      // diffusers' ChromaPipeline truncates T5 without a warning: this count is ditcache's own.
      const notes = e.truncatedTokensPerPrompt.map((n) => (n > 0 ? [`T5 kept ${e.inputIds.shape[1]} tokens of the prompt; ${n} were truncated`] : []));
      // Token ids as float32 values, exact up to 2^24.
      const inputIds = e.inputIds.cast('float32');
      e.inputIds.dispose();
      const textIds = sharedPerPrompt(e.textIds, batch.length);
      return {
        tensors: { prompt_embeds: e.promptEmbeds, prompt_attention_mask: e.promptAttentionMask, text_ids: textIds, input_ids: inputIds },
        notes,
      };
    });
  },

  loadTransformer(dir, options): CliTransformer {
    const transformer = ChromaTransformer.load(dir, options);
    const names = ['hidden_states', 'encoder_hidden_states', 'timestep', 'img_ids', 'txt_ids'];
    return {
      forward(inputs, file): Tensor {
        const [hiddenStates, encoderHiddenStates, timestep, imgIds, txtIds] = pickInputs(inputs, file, names);
        return transformer.forward({ hiddenStates, encoderHiddenStates, timestep, imgIds, txtIds, attentionMask: inputs.attention_mask });
      },
      [Symbol.dispose]: () => transformer.dispose(),
    };
  },
};

export default chromaCliFamily;
