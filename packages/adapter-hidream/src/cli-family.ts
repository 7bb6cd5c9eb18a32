// HiDream-I1 for the `ditcache` command line: package.json's `"ditcache": { "cli": ... }` points here.
import type { Tensor } from '@ditcache/cuda-runtime';
import {
  UsageError,
  checkTextFolders,
  componentConfig,
  encodePromptBatches,
  pickInputs,
  textPromptOptions,
  writeImage,
  type CliFamily,
  type CliGenerateSettings,
  type CliTransformer,
} from '@ditcache/diffusion/cli';
import { clipLengthWarning, maxSequenceLengthWarning } from '@ditcache/text-encoders';

import { HIDREAM_TRANSFORMER_DEFAULTS } from './config.js';
import { HiDreamPipeline, type HiDreamGenerateOptions } from './pipeline.js';
import { CLIP_MAX_LENGTH, HiDreamPromptEncoder, MAX_SEQUENCE_LENGTH, TEXT_COMPONENTS } from './prompt-encoder.js';
import { HiDreamTransformer } from './transformer.js';

const POSITIVE = ['prompt_embeds_t5', 'prompt_embeds_llama3', 'pooled_prompt_embeds'];
const NEGATIVE = ['negative_prompt_embeds_t5', 'negative_prompt_embeds_llama3', 'negative_pooled_prompt_embeds'];

const hidreamCliFamily: CliFamily = {
  label: 'HiDream-I1',
  pipelineClasses: ['HiDreamImagePipeline'],
  transformerClasses: ['HiDreamImageTransformer2DModel'],
  // Prompts as text (two CLIPs, T5 and Llama 3.1) or embeddings, and the size the images are rescaled to.
  options: [
    ...textPromptOptions({
      negativePrompt: 'the negative prompt of classifier-free guidance (default "", as diffusers; with --guidance above 1)',
      maxSequenceLength: `T5 and Llama tokens of the prompt (default ${MAX_SEQUENCE_LENGTH}; the CLIPs take at most ${CLIP_MAX_LENGTH})`,
    }),
    {
      flag: '--default-sample-size',
      type: 'positive-integer',
      setting: 'defaultSampleSize',
      description: "the latent side of the area images are rescaled to (diffusers' default_sample_size, 128)",
    },
  ],
  outputFormats: ['.png'],

  // --dtype and --weight-dtype travel in `options`. One generation per run: the text encoders'
  // weights (Llama 3.1 8B: 16 GB in bf16) go once the prompts are encoded.
  spawn: (dir, options) => HiDreamPipeline.spawn(dir, { ...options, releaseTextEncoders: true }),

  checkModel(dir, s: CliGenerateSettings): void {
    if (s.prompt === undefined && s.negativePrompt === undefined) return;
    checkTextFolders(dir, TEXT_COMPONENTS);
  },

  // Two chains, each with its context: the double-stream blocks, then the single-stream ones.
  cacheChains(dir) {
    const c = componentConfig(dir, 'transformer', ['HiDreamImageTransformer2DModel'], HIDREAM_TRANSFORMER_DEFAULTS);
    return [
      { name: 'transformer.double_stream_blocks', blocks: c.num_layers },
      { name: 'transformer.single_stream_blocks', blocks: c.num_single_layers },
    ];
  },

  request(inputs, file, s: CliGenerateSettings): HiDreamGenerateOptions {
    const embedded = POSITIVE.some((n) => n in inputs);
    const negativeEmbedded = NEGATIVE.some((n) => n in inputs);
    if (s.prompt !== undefined && embedded) throw new UsageError(`--prompt and the prompt embeddings of --inputs ${file} exclude each other; give one`);
    if (s.negativePrompt !== undefined && negativeEmbedded) {
      throw new UsageError(`--negative-prompt and the negative embeddings of --inputs ${file} exclude each other; give one`);
    }
    if (s.prompt === undefined && file === undefined) {
      throw new UsageError(`--prompt or --inputs is required: a prompt for a folder with text encoders, or a safetensors file with ${POSITIVE.join(', ')}`);
    }
    if (s.maxSequenceLength !== undefined && s.prompt === undefined && s.negativePrompt === undefined) {
      throw new UsageError('--max-sequence-length applies to --prompt and --negative-prompt only');
    }
    const [promptEmbedsT5, promptEmbedsLlama3, pooledPromptEmbeds] =
      s.prompt === undefined ? pickInputs(inputs, file, POSITIVE) : [undefined, undefined, undefined];
    // Classifier-free guidance needs all three negative embeddings; the pipeline checks their shapes.
    const [negativePromptEmbedsT5, negativePromptEmbedsLlama3, negativePooledPromptEmbeds] = negativeEmbedded
      ? pickInputs(inputs, file, NEGATIVE)
      : [undefined, undefined, undefined];
    return {
      prompt: s.prompt,
      negativePrompt: s.negativePrompt,
      maxSequenceLength: s.maxSequenceLength,
      promptEmbedsT5,
      promptEmbedsLlama3,
      pooledPromptEmbeds,
      negativePromptEmbedsT5,
      negativePromptEmbedsLlama3,
      negativePooledPromptEmbeds,
      latents: inputs.latents_in,
      seed: inputs.latents_in ? undefined : s.seed,
      height: s.height,
      width: s.width,
      numInferenceSteps: s.steps,
      guidanceScale: s.guidance,
      defaultSampleSize: s.defaultSampleSize,
    };
  },

  // One image per prompt of prompt_embeds_t5 (P, tokens, width); a text prompt, one.
  batchSize: (request) => (request as HiDreamGenerateOptions).promptEmbedsT5?.shape[0] ?? 1,

  writeOutput: (result, path) => writeImage(result, path),

  encodePrompt(dir, prompts, s) {
    checkTextFolders(dir, TEXT_COMPONENTS);
    using encoder = new HiDreamPromptEncoder(dir);
    return encodePromptBatches(prompts, s.negativePrompt, (batch) => {
      const e = encoder.encode(batch, { maxSequenceLength: s.maxSequenceLength });
      // What truncation dropped, as diffusers' encode_prompt warns of it, in its order. The CLIPs
      // are cut at min(max_sequence_length, 218) but their warning names 218 and quotes from there.
      const [clip, clip2, t5, llama] = encoder.tokenizers;
      const notes = batch.map((prompt) =>
        [
          clipLengthWarning(clip, [prompt], e.lengths.clip, CLIP_MAX_LENGTH),
          clipLengthWarning(clip2, [prompt], e.lengths.clip, CLIP_MAX_LENGTH),
          maxSequenceLengthWarning(t5, [prompt], e.lengths.t5),
          maxSequenceLengthWarning(llama, [prompt], e.lengths.llama),
        ].filter((note): note is string => note !== null),
      );
      // prompt_embeds_llama3 is (layers, prompts, tokens, width): its prompts on the second axis, where bench reads them.
      return {
        tensors: { prompt_embeds_t5: e.promptEmbedsT5, prompt_embeds_llama3: e.promptEmbedsLlama3, pooled_prompt_embeds: e.pooledPromptEmbeds },
        notes,
      };
    });
  },

  loadTransformer(dir, options): CliTransformer {
    const transformer = HiDreamTransformer.load(dir, options);
    const names = ['hidden_states', 'timesteps', 'encoder_hidden_states_t5', 'encoder_hidden_states_llama3', 'pooled_embeds'];
    return {
      forward(inputs, file): Tensor {
        const [hiddenStates, timesteps, encoderHiddenStatesT5, encoderHiddenStatesLlama3, pooledEmbeds] = pickInputs(inputs, file, names);
        return transformer.forward({ hiddenStates, timesteps, encoderHiddenStatesT5, encoderHiddenStatesLlama3, pooledEmbeds });
      },
      [Symbol.dispose]: () => transformer.dispose(),
    };
  },
};

export default hidreamCliFamily;
