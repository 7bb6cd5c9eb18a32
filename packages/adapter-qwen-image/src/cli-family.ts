// Qwen-Image for the `ditcache` command line: package.json's `"ditcache": { "cli": ... }` points here.
// Prompts come as embeddings only (--inputs): its Qwen2.5-VL text encoder is not ported yet.
import type { Tensor } from '@ditcache/cuda-runtime';
import { UsageError, componentConfig, pickInputs, writeImage, type CliFamily, type CliGenerateSettings, type CliTransformer } from '@ditcache/diffusion/cli';

import { QWEN_IMAGE_TRANSFORMER_DEFAULTS } from './config.js';
import { QwenImagePipeline, type QwenImageGenerateOptions } from './pipeline.js';
import type { ImageShape } from './rotary.js';
import { QwenImageTransformer } from './transformer.js';

const EMBEDDINGS_ONLY =
  'Qwen-Image takes prompt embeddings only (its Qwen2.5-VL text encoder is not ported yet): give prompt_embeds and prompt_embeds_mask (and negative_prompt_embeds, negative_prompt_embeds_mask for true CFG) in --inputs';

/**
 * diffusers' img_shapes, given as a tensor of the same values: the list of (frames, height, width)
 * diffusers reads, which is the first sample's, (B, images, 3) -> its first row of images,
 * (B, 3) -> its first row, (3,) -> itself.
 */
export function imgShapesFromTensor(t: Tensor, file: string): ImageShape[] {
  if (t.rank < 1 || t.rank > 3 || t.shape[t.rank - 1] !== 3 || t.size === 0) {
    throw new UsageError(
      `--inputs ${file}: img_shapes must hold (frames, height, width) triples, as (B, images, 3), (B, 3) or (3,); got (${t.shape.join(', ')})`,
    );
  }
  const values = t.dtype === 'int32' ? Array.from(t.toInt32Array()) : Array.from(t.toFloat32Array());
  const first = t.rank === 3 ? values.slice(0, t.shape[1] * 3) : values.slice(0, 3);
  if (first.some((v) => !Number.isInteger(v) || v <= 0))
    throw new UsageError(`--inputs ${file}: img_shapes must be positive integers, got [${first.join(', ')}]`);
  return Array.from({ length: first.length / 3 }, (_, i) => [first[3 * i], first[3 * i + 1], first[3 * i + 2]] as const);
}

const qwenImageCliFamily: CliFamily = {
  label: 'Qwen-Image',
  pipelineClasses: ['QwenImagePipeline'],
  transformerClasses: ['QwenImageTransformer2DModel'],
  // Beyond every family's flags: true CFG, how many embedding tokens count, and the text-prompt flags, declared to refuse them clearly.
  options: [
    { flag: '--prompt', type: 'string', setting: 'prompt', valueName: 'text', description: 'not available yet: give prompt_embeds in --inputs' },
    {
      flag: '--negative-prompt',
      type: 'string',
      setting: 'negativePrompt',
      valueName: 'text',
      description: 'not available yet: give negative_prompt_embeds in --inputs',
    },
    {
      flag: '--true-cfg-scale',
      type: 'number',
      setting: 'trueCfgScale',
      valueName: 's',
      description: 'true classifier-free guidance with the negative embeddings of --inputs (default 4; 1 or below turns it off)',
    },
    {
      flag: '--max-sequence-length',
      type: 'positive-integer',
      setting: 'maxSequenceLength',
      description: 'text tokens of the embeddings kept (default 512, at most 1024)',
    },
  ],
  outputFormats: ['.png'],

  spawn: (dir, options) => QwenImagePipeline.spawn(dir, options),

  checkModel(_dir, s: CliGenerateSettings): void {
    if (s.prompt !== undefined) throw new UsageError(`--prompt: ${EMBEDDINGS_ONLY}`);
    if (s.negativePrompt !== undefined) throw new UsageError(`--negative-prompt: ${EMBEDDINGS_ONLY}`);
  },

  // One chain, the dual-stream blocks (see cache.ts).
  cacheChains(dir) {
    const c = componentConfig(dir, 'transformer', ['QwenImageTransformer2DModel'], QWEN_IMAGE_TRANSFORMER_DEFAULTS);
    return [{ name: 'transformer.transformer_blocks', blocks: c.num_layers }];
  },

  request(inputs, file, s: CliGenerateSettings): QwenImageGenerateOptions {
    if (s.prompt !== undefined) throw new UsageError(`--prompt: ${EMBEDDINGS_ONLY}`);
    if (file === undefined) throw new UsageError(`--inputs is required: ${EMBEDDINGS_ONLY}`);
    const [promptEmbeds] = pickInputs(inputs, file, ['prompt_embeds']);
    if (inputs.negative_prompt_embeds_mask && !inputs.negative_prompt_embeds) {
      throw new UsageError(`--inputs ${file} has negative_prompt_embeds_mask but no negative_prompt_embeds`);
    }
    // Left out, the scale is the pipeline's default (4), which without negative embeddings runs no true CFG, as in diffusers.
    if (s.trueCfgScale !== undefined && s.trueCfgScale > 1 && !inputs.negative_prompt_embeds) {
      throw new UsageError(`--true-cfg-scale ${s.trueCfgScale} needs negative_prompt_embeds (and negative_prompt_embeds_mask) in --inputs ${file}`);
    }
    return {
      promptEmbeds,
      promptEmbedsMask: inputs.prompt_embeds_mask,
      negativePromptEmbeds: inputs.negative_prompt_embeds,
      negativePromptEmbedsMask: inputs.negative_prompt_embeds_mask,
      trueCfgScale: s.trueCfgScale,
      maxSequenceLength: s.maxSequenceLength,
      latents: inputs.latents_in,
      seed: inputs.latents_in ? undefined : s.seed,
      height: s.height,
      width: s.width,
      numInferenceSteps: s.steps,
      guidanceScale: s.guidance,
    };
  },

  // One image per prompt: prompt_embeds (P, ...) makes P.
  batchSize: (request) => (request as QwenImageGenerateOptions).promptEmbeds.shape[0],

  writeOutput: (result, path) => writeImage(result, path),

  loadTransformer(dir, options): CliTransformer {
    const transformer = QwenImageTransformer.load(dir, options);
    return {
      forward(inputs, file): Tensor {
        const [hiddenStates, encoderHiddenStates, timestep, imgShapes] = pickInputs(inputs, file, [
          'hidden_states',
          'encoder_hidden_states',
          'timestep',
          'img_shapes',
        ]);
        return transformer.forward({
          hiddenStates,
          encoderHiddenStates,
          encoderHiddenStatesMask: inputs.encoder_hidden_states_mask,
          timestep,
          imgShapes: imgShapesFromTensor(imgShapes, file),
        });
      },
      [Symbol.dispose]: () => transformer.dispose(),
    };
  },
};

export default qwenImageCliFamily;
