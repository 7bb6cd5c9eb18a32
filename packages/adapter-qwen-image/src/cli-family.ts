// Qwen-Image for the `ditcache` command line: package.json's `"ditcache": { "cli": ... }` points here.
// Prompts come as text (its Qwen2.5-VL text encoder) or as embeddings in --inputs.
import { ones, type Tensor } from '@ditcache/cuda-runtime';
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

import { QWEN_IMAGE_TRANSFORMER_DEFAULTS } from './config.js';
import { QwenImagePipeline, type QwenImageGenerateOptions } from './pipeline.js';
import { DEFAULT_MAX_SEQUENCE_LENGTH, MAX_SEQUENCE_LENGTH_LIMIT, QwenImagePromptEncoder, TEXT_COMPONENTS } from './prompt-encoder.js';
import type { ImageShape } from './rotary.js';
import { QwenImageTransformer } from './transformer.js';

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
  // Beyond every family's flags: prompts as text (Qwen2.5-VL) or embeddings, and true CFG.
  options: [
    ...textPromptOptions({
      negativePrompt: 'the negative prompt of true classifier-free guidance (with --true-cfg-scale above 1, default 4; none: no CFG, as diffusers)',
      maxSequenceLength: `text tokens kept of the prompts or the embeddings (default ${DEFAULT_MAX_SEQUENCE_LENGTH}, at most ${MAX_SEQUENCE_LENGTH_LIMIT})`,
    }),
    {
      flag: '--true-cfg-scale',
      type: 'number',
      setting: 'trueCfgScale',
      valueName: 's',
      description: 'true classifier-free guidance with --negative-prompt or the negative embeddings of --inputs (default 4; 1 or below turns it off)',
    },
  ],
  outputFormats: ['.png'],

  // --dtype and --weight-dtype travel in `options`. One generation per run: the text encoder's
  // weights (Qwen2.5-VL 7B: 16 GB in bf16) go once the prompts are encoded.
  spawn: (dir, options) => QwenImagePipeline.spawn(dir, { ...options, releaseTextEncoders: true }),

  checkModel(dir, s: CliGenerateSettings): void {
    if (s.prompt === undefined && s.negativePrompt === undefined) return;
    checkTextFolders(dir, TEXT_COMPONENTS, { encoders: 'text encoder' });
  },

  // One chain, the dual-stream blocks (see cache.ts).
  cacheChains(dir) {
    const c = componentConfig(dir, 'transformer', ['QwenImageTransformer2DModel'], QWEN_IMAGE_TRANSFORMER_DEFAULTS);
    return [{ name: 'transformer.transformer_blocks', blocks: c.num_layers }];
  },

  request(inputs, file, s: CliGenerateSettings): QwenImageGenerateOptions {
    const embedded = 'prompt_embeds' in inputs || 'prompt_embeds_mask' in inputs;
    const negativeEmbedded = 'negative_prompt_embeds' in inputs || 'negative_prompt_embeds_mask' in inputs;
    if (s.prompt !== undefined && embedded) throw new UsageError(`--prompt and the prompt embeddings of --inputs ${file} exclude each other; give one`);
    if (s.negativePrompt !== undefined && negativeEmbedded) {
      throw new UsageError(`--negative-prompt and the negative embeddings of --inputs ${file} exclude each other; give one`);
    }
    if (s.prompt === undefined && file === undefined) {
      throw new UsageError(
        '--prompt or --inputs is required: a prompt for a folder with text encoders, or a safetensors file with prompt_embeds, prompt_embeds_mask',
      );
    }
    const [promptEmbeds] = s.prompt === undefined ? pickInputs(inputs, file, ['prompt_embeds']) : [undefined];
    if (inputs.negative_prompt_embeds_mask && !inputs.negative_prompt_embeds) {
      throw new UsageError(`--inputs ${file} has negative_prompt_embeds_mask but no negative_prompt_embeds`);
    }
    // Left out, the scale is the pipeline's default (4), which without a negative runs no true CFG, as in diffusers.
    if (s.trueCfgScale !== undefined && s.trueCfgScale > 1 && s.negativePrompt === undefined && !inputs.negative_prompt_embeds) {
      const where = file === undefined ? '--inputs' : `--inputs ${file}`;
      throw new UsageError(
        `--true-cfg-scale ${s.trueCfgScale} needs --negative-prompt, or negative_prompt_embeds (and negative_prompt_embeds_mask) in ${where}`,
      );
    }
    return {
      prompt: s.prompt,
      negativePrompt: s.negativePrompt,
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

  // One image per prompt: prompt_embeds (P, ...) makes P; a text prompt, one.
  batchSize: (request) => (request as QwenImageGenerateOptions).promptEmbeds?.shape[0] ?? 1,

  writeOutput: (result, path) => writeImage(result, path),

  encodePrompt(dir, prompts, s) {
    checkTextFolders(dir, TEXT_COMPONENTS, { encoders: 'text encoder' });
    using encoder = new QwenImagePromptEncoder(dir);
    const length = s.maxSequenceLength ?? DEFAULT_MAX_SEQUENCE_LENGTH;
    return encodePromptBatches(prompts, s.negativePrompt, (batch) => {
      // Padded to the longest prompt of the batch, as diffusers pads a list of prompts.
      const e = encoder.encode(batch, { maxSequenceLength: s.maxSequenceLength });
      // A batch without padding (one prompt, or prompts of one length) has diffusers' mask None;
      // written as ones, which the pipeline reads the same.
      const mask = e.promptEmbedsMask ?? ones(e.promptEmbeds.shape.slice(0, 2), { dtype: 'int32', device: e.promptEmbeds.device });
      // A truncated prompt kept the most tokens of the batch, so the embeddings' width is its count.
      const notes = e.truncatedTokensPerPrompt.map((n) =>
        n > 0 ? [`Qwen2.5-VL kept ${e.promptEmbeds.shape[1]} tokens of the prompt (at most ${length}); ${n} were truncated`] : [],
      );
      return { tensors: { prompt_embeds: e.promptEmbeds, prompt_embeds_mask: mask }, notes };
    });
  },

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
