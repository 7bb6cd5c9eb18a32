// HiDream-I1 for the `ditcache` command line: package.json's `"ditcache": { "cli": ... }` points here.
import type { Tensor } from '@ditcache/cuda-runtime';
import { componentConfig, pickInputs, writeImage, type CliFamily, type CliGenerateSettings, type CliTransformer } from '@ditcache/diffusion/cli';

import { HIDREAM_TRANSFORMER_DEFAULTS } from './config.js';
import { HiDreamPipeline, type HiDreamGenerateOptions } from './pipeline.js';
import { HiDreamTransformer } from './transformer.js';

const NEGATIVE = ['negative_prompt_embeds_t5', 'negative_prompt_embeds_llama3', 'negative_pooled_prompt_embeds'];

const hidreamCliFamily: CliFamily = {
  label: 'HiDream-I1',
  pipelineClasses: ['HiDreamImagePipeline'],
  transformerClasses: ['HiDreamImageTransformer2DModel'],
  // Prompts come as embeddings only (the Llama encoder is not ported); the one flag of its own:
  options: [
    {
      flag: '--default-sample-size',
      type: 'positive-integer',
      setting: 'defaultSampleSize',
      description: "the latent side of the area images are rescaled to (diffusers' default_sample_size, 128)",
    },
  ],
  outputFormats: ['.png'],

  // --dtype and --weight-dtype travel in `options` (the transformer and the VAE take the dtype).
  spawn: (dir, options) => HiDreamPipeline.spawn(dir, options),

  // Two chains, each with its context: the double-stream blocks, then the single-stream ones.
  cacheChains(dir) {
    const c = componentConfig(dir, 'transformer', ['HiDreamImageTransformer2DModel'], HIDREAM_TRANSFORMER_DEFAULTS);
    return [
      { name: 'transformer.double_stream_blocks', blocks: c.num_layers },
      { name: 'transformer.single_stream_blocks', blocks: c.num_single_layers },
    ];
  },

  request(inputs, file, s: CliGenerateSettings): HiDreamGenerateOptions {
    const [promptEmbedsT5, promptEmbedsLlama3, pooledPromptEmbeds] = pickInputs(inputs, file, [
      'prompt_embeds_t5',
      'prompt_embeds_llama3',
      'pooled_prompt_embeds',
    ]);
    // Classifier-free guidance needs all three negative embeddings; the pipeline checks their shapes.
    const [negativePromptEmbedsT5, negativePromptEmbedsLlama3, negativePooledPromptEmbeds] = NEGATIVE.some((n) => n in inputs)
      ? pickInputs(inputs, file, NEGATIVE)
      : [undefined, undefined, undefined];
    return {
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

  // One image per prompt of prompt_embeds_t5 (P, tokens, width).
  batchSize: (request) => (request as HiDreamGenerateOptions).promptEmbedsT5.shape[0],

  writeOutput: (result, path) => writeImage(result, path),

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
