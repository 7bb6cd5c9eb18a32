// HunyuanVideo for the `ditcache` command line: package.json's `"ditcache": { "cli": ... }` points here.
// Prompts come as text (its Llama 3 and CLIP-L text encoders) or as embeddings in --inputs, under
// HunyuanVideoPipeline's keyword names.
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
import { clipLengthWarning } from '@ditcache/text-encoders';

import { HUNYUAN_VIDEO_TRANSFORMER_DEFAULTS } from './config.js';
import { HunyuanVideoPipeline, type HunyuanVideoGenerateOptions } from './pipeline.js';
import { CLIP_MAX_LENGTH, DEFAULT_MAX_SEQUENCE_LENGTH, HunyuanVideoPromptEncoder, TEXT_COMPONENTS } from './prompt-encoder.js';
import { HunyuanVideoTransformer } from './transformer.js';

const PROMPT = ['prompt_embeds', 'pooled_prompt_embeds', 'prompt_attention_mask'];
const NEGATIVE = ['negative_prompt_embeds', 'negative_pooled_prompt_embeds', 'negative_prompt_attention_mask'];

const hunyuanVideoCliFamily: CliFamily = {
  label: 'HunyuanVideo',
  pipelineClasses: ['HunyuanVideoPipeline'],
  transformerClasses: ['HunyuanVideoTransformer3DModel'],
  // The flags of `ditcache generate` HunyuanVideo takes beyond every family's (--guidance is the embedded guidance).
  options: [
    ...textPromptOptions({
      negativePrompt: 'the negative prompt of true classifier-free guidance (with --true-cfg-scale above 1; otherwise unused, as in diffusers)',
      maxSequenceLength: `Llama tokens of the prompt after the template's first 95 (default ${DEFAULT_MAX_SEQUENCE_LENGTH}; CLIP takes ${CLIP_MAX_LENGTH})`,
    }),
    { flag: '--frames', type: 'positive-integer', setting: 'frames', description: 'video frames, 4k + 1' },
    {
      flag: '--true-cfg-scale',
      type: 'number',
      setting: 'trueCfgScale',
      valueName: 's',
      description: 'true classifier-free guidance with --negative-prompt or the negative embeddings of --inputs',
    },
    { flag: '--fps', type: 'positive-integer', setting: 'fps', description: 'frames per second of the animation' },
  ],
  outputFormats: ['.webp', '.gif'],

  // --dtype and --weight-dtype travel in `options` (the transformer and the text encoders take the
  // dtype, the VAE stays float32). One generation per run: the text encoders' weights (Llama 3 8B:
  // 16 GB in bf16) go once the prompts are encoded.
  spawn: (dir, options) => HunyuanVideoPipeline.spawn(dir, { ...options, releaseTextEncoders: true }),

  checkModel(dir, s: CliGenerateSettings): void {
    if (s.prompt === undefined && s.negativePrompt === undefined) return;
    checkTextFolders(dir, TEXT_COMPONENTS);
  },

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
    const given = NEGATIVE.filter((n) => n in inputs);
    if (s.prompt !== undefined && PROMPT.some((n) => n in inputs)) {
      throw new UsageError(`--prompt and the prompt embeddings of --inputs ${file} exclude each other; give one`);
    }
    if (s.negativePrompt !== undefined && given.length > 0) {
      throw new UsageError(`--negative-prompt and the negative embeddings of --inputs ${file} exclude each other; give one`);
    }
    if (s.prompt === undefined && file === undefined) {
      throw new UsageError(
        `--prompt or --inputs is required: a prompt for a folder with text encoders, or a safetensors file with ${PROMPT.join(', ')} (and latents_in, ${NEGATIVE.join(', ')})`,
      );
    }
    if (s.maxSequenceLength !== undefined && s.prompt === undefined && s.negativePrompt === undefined) {
      throw new UsageError('--max-sequence-length applies to --prompt and --negative-prompt only');
    }
    const [promptEmbeds, pooledPromptEmbeds, promptAttentionMask] =
      s.prompt === undefined ? pickInputs(inputs, file, PROMPT) : [undefined, undefined, undefined];
    // The negative triple counts only under true CFG (--true-cfg-scale above 1); otherwise it is ignored, as in diffusers.
    const trueCfg = s.trueCfgScale !== undefined && s.trueCfgScale > 1;
    if (trueCfg && given.length > 0 && given.length < NEGATIVE.length) {
      throw new UsageError(
        `--inputs ${file} has ${given.join(', ')} but not ${NEGATIVE.filter((n) => !given.includes(n)).join(', ')}: true CFG takes all three`,
      );
    }
    if (trueCfg && given.length === 0 && s.negativePrompt === undefined) {
      throw new UsageError(`--true-cfg-scale needs --negative-prompt, or ${NEGATIVE.join(', ')} in --inputs`);
    }
    return {
      prompt: s.prompt,
      negativePrompt: s.negativePrompt,
      maxSequenceLength: s.maxSequenceLength,
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

  // One video per prompt: prompt_embeds (P, ...) makes P; a text prompt, one.
  batchSize: (request) => (request as HunyuanVideoGenerateOptions).promptEmbeds?.shape[0] ?? 1,

  /** An animation (.webp or .gif) at `path`, and every frame as a PNG in `<name>_frames/` beside it. */
  async writeOutput(result, path, s) {
    if (!result.video) throw new Error('the pipeline returned no video');
    await saveAnimation(result.video, path, { fps: s.fps });
    await savePngFrames(result.video, join(dirname(path), `${basename(path, extname(path))}_frames`));
  },

  encodePrompt(dir, prompts, s) {
    checkTextFolders(dir, TEXT_COMPONENTS);
    using encoder = new HunyuanVideoPromptEncoder(dir);
    const length = s.maxSequenceLength ?? DEFAULT_MAX_SEQUENCE_LENGTH;
    return encodePromptBatches(prompts, s.negativePrompt, (batch) => {
      const e = encoder.encode(batch, { maxSequenceLength: s.maxSequenceLength });
      // What truncation dropped: diffusers cuts Llama's silently (so this count is ditcache's own)
      // and warns of CLIP's, as the second note says it word for word.
      const notes = batch.map((prompt, i) => {
        const llamaCut = e.truncatedTokensPerPrompt[i].llama;
        const clipWarning = clipLengthWarning(encoder.tokenizers[1], [prompt], CLIP_MAX_LENGTH);
        return [
          ...(llamaCut > 0 ? [`Llama kept ${length} tokens after the template's first 95; ${llamaCut} of the prompt were truncated`] : []),
          ...(clipWarning ? [clipWarning] : []),
        ];
      });
      return {
        tensors: { prompt_embeds: e.promptEmbeds, pooled_prompt_embeds: e.pooledPromptEmbeds, prompt_attention_mask: e.promptAttentionMask },
        notes,
      };
    });
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
