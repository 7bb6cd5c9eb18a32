// FLUX.1 for the `ditcache` command line: package.json's `"ditcache": { "cli": ... }` points here.
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
import { clipLengthWarning, maxSequenceLengthWarning } from '@ditcache/text-encoders';

import { FLUX_TRANSFORMER_DEFAULTS } from './config.js';
import { FluxPipeline, type FluxGenerateOptions } from './pipeline.js';
import { FluxPromptEncoder, MAX_SEQUENCE_LENGTH, TEXT_COMPONENTS } from './prompt-encoder.js';
import { FluxTransformer } from './transformer.js';

function checkSequenceLength(n: number | undefined): void {
  if (n !== undefined && n > MAX_SEQUENCE_LENGTH)
    throw new UsageError(`--max-sequence-length must be at most ${MAX_SEQUENCE_LENGTH} (FLUX.1's T5 limit), got ${n}`);
}

const fluxCliFamily: CliFamily = {
  label: 'FLUX.1',
  pipelineClasses: ['FluxPipeline'],
  transformerClasses: ['FluxTransformer2DModel'],
  // The flags of `ditcache generate` FLUX.1 takes beyond every family's: prompts as text, and true CFG.
  options: [
    ...textPromptOptions({
      negativePrompt: 'the negative prompt of true CFG (with --true-cfg-scale above 1)',
      maxSequenceLength: `T5 tokens of the prompt (default and at most ${MAX_SEQUENCE_LENGTH})`,
    }),
    {
      flag: '--true-cfg-scale',
      type: 'number',
      setting: 'trueCfgScale',
      valueName: 's',
      description: 'true classifier-free guidance with --negative-prompt or the negative embeddings of --inputs',
    },
  ],
  outputFormats: ['.png'],

  // One generation per run: the text encoders' weights (T5-XXL: 9.5 GB) go once the prompt is encoded.
  spawn: (dir, options) => FluxPipeline.spawn(dir, { ...options, releaseTextEncoders: true }),

  checkModel(dir, s: CliGenerateSettings): void {
    if (s.prompt === undefined && s.negativePrompt === undefined) return;
    checkTextFolders(dir, TEXT_COMPONENTS);
  },

  // One chain, the double-stream blocks then the single-stream ones (see cache.ts).
  cacheChains(dir) {
    const c = componentConfig(dir, 'transformer', ['FluxTransformer2DModel'], FLUX_TRANSFORMER_DEFAULTS);
    return [{ name: 'transformer.transformer_blocks+single_transformer_blocks', blocks: c.num_layers + c.num_single_layers }];
  },

  request(inputs, file, s: CliGenerateSettings): FluxGenerateOptions {
    const embedded = 'prompt_embeds' in inputs || 'pooled_prompt_embeds' in inputs;
    const negativeEmbedded = 'negative_prompt_embeds' in inputs || 'negative_pooled_prompt_embeds' in inputs;
    if (s.prompt !== undefined && embedded) throw new UsageError(`--prompt and the prompt embeddings of --inputs ${file} exclude each other; give one`);
    if (s.negativePrompt !== undefined && negativeEmbedded) {
      throw new UsageError(`--negative-prompt and the negative embeddings of --inputs ${file} exclude each other; give one`);
    }
    if (s.prompt === undefined && file === undefined) {
      throw new UsageError(
        '--prompt or --inputs is required: a prompt for a folder with text encoders, or a safetensors file with prompt_embeds and pooled_prompt_embeds',
      );
    }
    checkSequenceLength(s.maxSequenceLength);
    if (s.maxSequenceLength !== undefined && s.prompt === undefined && s.negativePrompt === undefined) {
      throw new UsageError('--max-sequence-length applies to --prompt and --negative-prompt only');
    }
    const [promptEmbeds, pooledPromptEmbeds] =
      s.prompt === undefined ? pickInputs(inputs, file, ['prompt_embeds', 'pooled_prompt_embeds']) : [undefined, undefined];
    const [negativePromptEmbeds, negativePooledPromptEmbeds] = negativeEmbedded
      ? pickInputs(inputs, file, ['negative_prompt_embeds', 'negative_pooled_prompt_embeds'])
      : [undefined, undefined];
    const hasNegative = negativeEmbedded || s.negativePrompt !== undefined;
    if (s.trueCfgScale !== undefined && s.trueCfgScale > 1 && !hasNegative) {
      throw new UsageError('--true-cfg-scale needs --negative-prompt, or negative_prompt_embeds and negative_pooled_prompt_embeds in --inputs');
    }
    return {
      prompt: s.prompt,
      negativePrompt: s.negativePrompt,
      maxSequenceLength: s.maxSequenceLength,
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

  // One image per prompt: prompt_embeds (P, ...) makes P; a text prompt, one.
  batchSize: (request) => (request as FluxGenerateOptions).promptEmbeds?.shape[0] ?? 1,

  writeOutput: (result, path) => writeImage(result, path),

  encodePrompt(dir, prompts, s) {
    checkTextFolders(dir, TEXT_COMPONENTS);
    checkSequenceLength(s.maxSequenceLength);
    using encoder = FluxPromptEncoder.fromPretrained(dir);
    return encodePromptBatches(prompts, s.negativePrompt, (batch) => {
      const e = encoder.encode(batch, { maxSequenceLength: s.maxSequenceLength });
      // What truncation dropped, as diffusers' encode_prompt warns of it: CLIP's, then T5's, whose
      // warning quotes from CLIP's tokenizer_max_length - 1, not from max_sequence_length - 1.
      const clipLength = e.clipInputIds.shape[1];
      const notes = batch.map((prompt) =>
        [
          clipLengthWarning(encoder.clipTokenizer, [prompt], clipLength),
          maxSequenceLengthWarning(encoder.t5Tokenizer, [prompt], e.t5InputIds.shape[1], clipLength - 1),
        ].filter((note): note is string => note !== null),
      );
      // Token ids as float32 values, exact up to 2^24.
      const ids = { clip_input_ids: e.clipInputIds.cast('float32'), t5_input_ids: e.t5InputIds.cast('float32') };
      e.clipInputIds.dispose();
      e.t5InputIds.dispose();
      const textIds = sharedPerPrompt(e.textIds, batch.length);
      return { tensors: { prompt_embeds: e.promptEmbeds, pooled_prompt_embeds: e.pooledPromptEmbeds, text_ids: textIds, ...ids }, notes };
    });
  },

  loadTransformer(dir, options): CliTransformer {
    const transformer = FluxTransformer.load(dir, options);
    const names = ['hidden_states', 'encoder_hidden_states', 'pooled_projections', 'timestep', 'img_ids', 'txt_ids'];
    return {
      forward(inputs, file): Tensor {
        const [hiddenStates, encoderHiddenStates, pooledProjections, timestep, imgIds, txtIds] = pickInputs(inputs, file, names);
        return transformer.forward({ hiddenStates, encoderHiddenStates, pooledProjections, timestep, imgIds, txtIds, guidance: inputs.guidance });
      },
      [Symbol.dispose]: () => transformer.dispose(),
    };
  },
};

export default fluxCliFamily;
