// diffusers' QwenImagePipeline: a prompt (through its Qwen2.5-VL text encoder) or masked prompt
// embeddings in, latents and an image out. Flow-matching Euler sampling with resolution-dependent
// shifting (Qwen-Image's terminal shift, or Qwen-Image-Lightning's fixed one at 4-8 steps, both
// from the folder's scheduler config), true CFG with its norm rescaling (two transformer calls per
// step) when a negative prompt or its embeddings are given, and the Wan-layout VAE on the single
// frame. With `dtype` (diffusers' torch_dtype) the text encoder, the transformer, the latents and
// the VAE are in that dtype, rounded where diffusers' QwenImagePipeline rounds them.
import { join } from 'node:path';

import type { CfgBranch } from '@ditcache/core';
import { TensorScope, div, full, tidy, type Device, type Tensor } from '@ditcache/cuda-runtime';
import {
  AutoencoderKLWanDecoder,
  FlowMatchEulerDiscreteScheduler,
  RemotePipeline,
  TransformerCallAnnouncer,
  checkFiniteInputs,
  checkPipelineFolder,
  computeDtype,
  denoise,
  linspace,
  packLatents,
  randnTensor,
  readPipelineDefaults,
  toImageRange,
  unpackLatents,
  withPipelineDefaults,
  type ComputeDtype,
  type DiffusionPipeline,
  type LoadOptions,
  type PipelineDefaults,
  type PipelineStepEnd,
  type PipelineTransformerCall,
} from '@ditcache/diffusion';

import { normRescaledGuidance } from './guidance.js';
import {
  QwenImagePromptEncoder,
  checkMaxSequenceLength,
  missingTextComponents,
  type QwenImageEncodePromptOptions,
  type QwenImagePromptEmbeddings,
} from './prompt-encoder.js';
import type { ImageShape } from './rotary.js';
import { QwenImageTransformer } from './transformer.js';

/** Told to onTransformerCall listeners before each transformer call: 'cond' for the prompt (always first), 'uncond' for the negative one under true CFG. */
export type TransformerCall = PipelineTransformerCall;

/** Passed to the per-step callback after each scheduler step; its latents are packed. */
export type StepEnd = PipelineStepEnd;

export interface QwenImageGenerateOptions {
  /** The prompt (or one per image), encoded by the folder's text encoder; or give promptEmbeds. */
  prompt?: string | readonly string[];
  /** The negative prompt of true CFG (one for all images, or one per prompt); or give negativePromptEmbeds. */
  negativePrompt?: string | readonly string[];
  /** Prompt embeddings (B, text tokens, joint_attention_dim): the Qwen2.5-VL hidden states diffusers' encode_prompt gives. */
  promptEmbeds?: Tensor;
  /** (B, text tokens): non-zero for real tokens, 0 for padding. All tokens count when absent. */
  promptEmbedsMask?: Tensor;
  /** Negative prompt embeddings for true CFG (B, its own text tokens, joint_attention_dim), with their mask. */
  negativePromptEmbeds?: Tensor;
  negativePromptEmbedsMask?: Tensor;
  /** True CFG runs when this is above 1 and a negative prompt or negative embeddings are given (default 4, as diffusers). */
  trueCfgScale?: number;
  /** Text tokens kept of the prompts and the embeddings (diffusers' max_sequence_length: default 512, at most 1024). */
  maxSequenceLength?: number;
  /** Image size in pixels, multiples of 2 * vaeScaleFactor (default 128 * vaeScaleFactor). */
  height?: number;
  width?: number;
  /** Default 50; Qwen-Image-Lightning runs 4 or 8. */
  numInferenceSteps?: number;
  /** Custom sigmas (default linspace(1, 1 / steps, steps), as QwenImagePipeline). */
  sigmas?: readonly number[];
  /** diffusers' guidance_scale: only for guidance-distilled models, which Qwen-Image is not; accepted and ignored, as diffusers does. */
  guidanceScale?: number;
  /** Initial packed noise (B, image tokens, in_channels); otherwise drawn from `seed`. */
  latents?: Tensor;
  /** Seed of torch-compatible initial noise (torch.Generator('cpu').manual_seed(seed)); random when neither this nor latents is given. */
  seed?: number;
  /** Decode the final latents to an image (default true); false is diffusers' output_type="latent". */
  decode?: boolean;
  callback?: (step: StepEnd) => void;
}

export interface QwenImageGenerateResult {
  /** Final packed latents (B, image tokens, in_channels), before the VAE. */
  latents: Tensor;
  /** (B, height, width, 3) in [0, 1] (diffusers' output_type="np"), or null without decoding. */
  image: Tensor | null;
  /** The seed the initial noise came from, or null when latents were given. */
  seed: number | null;
  timesteps: Float32Array;
  sigmas: Float32Array;
}

/** Load options of fromPretrained. */
export interface QwenImageLoadOptions extends LoadOptions {
  /** Load the text encoder's weights with the pipeline (default: on the first prompt). */
  preloadTextEncoders?: boolean;
  /** Free the text encoder's weights after each prompt encoding (Qwen2.5-VL 7B is 16 GB in bf16). */
  releaseTextEncoders?: boolean;
}

/** The embeddings a run conditions on, given or encoded. */
interface QwenImageEmbeddings {
  promptEmbeds: Tensor;
  promptEmbedsMask?: Tensor;
  negativePromptEmbeds?: Tensor;
  negativePromptEmbedsMask?: Tensor;
}

/** One branch's conditioning: embeddings in the compute dtype, truncated, and their mask. */
interface Conditioning {
  embeds: Tensor;
  mask: Tensor | undefined;
}

/** diffusers' QwenImagePipeline.default_sample_size: the default image side in latent pixels. */
const DEFAULT_SAMPLE_SIZE = 128;

const COMPONENTS = [
  ['transformer', 'QwenImageTransformer2DModel'],
  ['vae', 'AutoencoderKLQwenImage'],
  ['scheduler', 'FlowMatchEulerDiscreteScheduler'],
] as const;

export class QwenImagePipeline implements DiffusionPipeline<QwenImageGenerateOptions, QwenImageGenerateResult, TransformerCall> {
  readonly transformer: QwenImageTransformer;
  readonly vae: AutoencoderKLWanDecoder;
  readonly scheduler: FlowMatchEulerDiscreteScheduler;
  /** Image pixels per latent pixel along each side. */
  readonly vaeScaleFactor: number;
  /** The folder's recommended settings (its ditcache.json), which generate() uses where its options give none. */
  readonly defaults: PipelineDefaults;
  /** The text encoder (null when the folder has none: prompts must come as embeddings). */
  readonly textEncoders: QwenImagePromptEncoder | null;
  private readonly releaseTextEncoders: boolean;
  private readonly transformerCalls = new TransformerCallAnnouncer<TransformerCall>();

  constructor(components: {
    transformer: QwenImageTransformer;
    vae: AutoencoderKLWanDecoder;
    scheduler: FlowMatchEulerDiscreteScheduler;
    /** Settings for generate() where its options give none (fromPretrained reads them from the folder's ditcache.json). */
    defaults?: PipelineDefaults;
    textEncoders?: QwenImagePromptEncoder | null;
    /** Free the text encoder's weights after each prompt encoding. */
    releaseTextEncoders?: boolean;
  }) {
    this.transformer = components.transformer;
    this.textEncoders = components.textEncoders ?? null;
    this.releaseTextEncoders = components.releaseTextEncoders ?? false;
    this.vae = components.vae;
    this.scheduler = components.scheduler;
    this.defaults = components.defaults ?? {};
    this.vaeScaleFactor = this.vae.scaleFactorSpatial;
    const { in_channels: inChannels, patch_size: patch } = this.transformer.config;
    const z = this.vae.config.z_dim;
    if (patch !== 2 || inChannels !== z * 4 || this.transformer.outChannels !== z) {
      throw new TypeError(
        `QwenImagePipeline: the transformer (patch_size ${patch}) takes ${inChannels} and returns ${this.transformer.outChannels} channels; ` +
          `packing the VAE's ${z} latent channels in 2x2 patches needs patch_size 2, ${z * 4} in and ${z} out`,
      );
    }
  }

  /**
   * Loads a diffusers Qwen-Image (or Qwen-Image-Lightning) folder: `transformer/`, `vae/` and
   * `scheduler/`, checked against `model_index.json` when there is one, the tokenizer and the text
   * encoder when the folder has both (its weights load on the first prompt unless
   * `preloadTextEncoders`), and the folder's `ditcache.json`, when there is one: the settings
   * generate() uses where its options give none.
   */
  static fromPretrained(dir: string, opts: QwenImageLoadOptions = {}): QwenImagePipeline {
    const dtype = computeDtype(opts.dtype, 'QwenImagePipeline.fromPretrained: dtype');
    checkPipelineFolder(dir, 'QwenImagePipeline', COMPONENTS);
    const defaults = readPipelineDefaults(dir);
    const scheduler = FlowMatchEulerDiscreteScheduler.fromFolder(join(dir, 'scheduler'));
    const loadOpts: LoadOptions = { device: opts.device, weightDtype: opts.weightDtype, dtype };
    let transformer: QwenImageTransformer | undefined;
    let vae: AutoencoderKLWanDecoder | undefined;
    let textEncoders: QwenImagePromptEncoder | null = null;
    try {
      transformer = QwenImageTransformer.load(join(dir, 'transformer'), loadOpts);
      vae = AutoencoderKLWanDecoder.load(join(dir, 'vae'), loadOpts);
      if (missingTextComponents(dir).length === 0) {
        textEncoders = new QwenImagePromptEncoder(dir, { device: opts.device, dtype });
        if (opts.preloadTextEncoders) textEncoders.load();
      }
      return new QwenImagePipeline({ transformer, vae, scheduler, defaults, textEncoders, releaseTextEncoders: opts.releaseTextEncoders });
    } catch (e) {
      textEncoders?.dispose();
      vae?.dispose();
      transformer?.dispose();
      throw e;
    }
  }

  /**
   * Loads the pipeline in a worker thread: `generate` then returns a promise and never blocks the
   * event loop, reports progress as events, and stops on an AbortSignal. `enableCache`, `summary`
   * and `disableCache` work on the returned object as on a local pipeline.
   */
  static spawn(dir: string, opts: QwenImageLoadOptions = {}): Promise<RemotePipeline<QwenImageGenerateOptions, QwenImageGenerateResult>> {
    return RemotePipeline.open({ module: '@ditcache/adapter-qwen-image', exportName: 'QwenImagePipeline', modelDir: dir, loadOptions: opts });
  }

  /** Registers `listener` to be told the step and CFG branch before every transformer call of generate() (for a cache engine). */
  onTransformerCall(listener: (call: TransformerCall) => void): () => void {
    return this.transformerCalls.subscribe(listener);
  }

  /** What the pipeline computes in: its transformer's dtype (diffusers' `torch_dtype`). */
  get dtype(): ComputeDtype {
    return this.transformer.dtype;
  }

  /** diffusers' encode_prompt for one prompt or a batch (the caller owns the tensors); releases the encoder's weights after, with releaseTextEncoders. */
  encodePrompt(prompt: string | readonly string[], opts: QwenImageEncodePromptOptions = {}): QwenImagePromptEmbeddings {
    const encoder = this.requireTextEncoders();
    try {
      return encoder.encode(prompt, opts);
    } finally {
      if (this.releaseTextEncoders) encoder.release();
    }
  }

  private requireTextEncoders(): QwenImagePromptEncoder {
    if (!this.textEncoders) {
      throw new TypeError(
        'QwenImagePipeline: cannot encode a prompt: the folder has no tokenizer/ and text_encoder/ folders; give promptEmbeds (and promptEmbedsMask) instead',
      );
    }
    return this.textEncoders;
  }

  /** Runs the sampler. The caller owns (and disposes) the returned tensors. */
  generate(options: QwenImageGenerateOptions): QwenImageGenerateResult {
    const opts = withPipelineDefaults(options, this.defaults);
    const numSteps = opts.numInferenceSteps ?? 50;
    const [latentHeight, latentWidth] = this.latentSides(opts.height, opts.width);
    const imgShapes: ImageShape[] = [[1, latentHeight / 2, latentWidth / 2]];
    const imageTokens = (latentHeight / 2) * (latentWidth / 2);
    const trueCfgScale = opts.trueCfgScale ?? 4;
    const maxSequenceLength = checkMaxSequenceLength(opts.maxSequenceLength, 'QwenImagePipeline');
    checkPromptInputs(opts);
    // diffusers: true CFG only with a negative prompt or its embeddings (no "" by default).
    const trueCfg = trueCfgScale > 1 && (opts.negativePrompt !== undefined || opts.negativePromptEmbeds !== undefined);

    const scope = new TensorScope();
    try {
      const embeds = this.resolveEmbeddings(opts, trueCfg, maxSequenceLength);
      const batch = this.checkEmbeddings(embeds);
      const positive = this.conditioning(embeds.promptEmbeds, embeds.promptEmbedsMask, maxSequenceLength);
      const negative = trueCfg ? this.conditioning(embeds.negativePromptEmbeds as Tensor, embeds.negativePromptEmbedsMask, maxSequenceLength) : null;
      const device = positive.embeds.device;
      const schedule = this.scheduler.schedule({
        numInferenceSteps: numSteps,
        sigmas: opts.sigmas ?? linspace(1, 1 / numSteps, numSteps),
        mu: this.scheduler.dynamicShiftMu(imageTokens),
      });
      const { latents: initial, seed } = this.initialLatents(opts, batch, [latentHeight, latentWidth], device);
      // Made once here, outside the steps' tidy scopes, for each text length the calls take.
      const rotaries = new Map(
        [positive, ...(negative ? [negative] : [])].map((c) => [c.embeds.shape[1], this.transformer.rotaryEmbedding(imgShapes, c.embeds.shape[1], device)]),
      );
      const call = (step: number, branch: CfgBranch, latents: Tensor, c: Conditioning, timestep: Tensor): Tensor =>
        // The cache engine learns step, branch and timestep from here, read from no tensor.
        this.transformerCalls.run(this.transformer, { step, numSteps, timestep: schedule.timesteps[step], branch }, () =>
          this.transformer.forward({
            hiddenStates: latents,
            encoderHiddenStates: c.embeds,
            encoderHiddenStatesMask: c.mask,
            timestep,
            imgShapes,
            rotary: rotaries.get(c.embeds.shape[1]),
          }),
        );

      checkFiniteInputs(
        { latents_in: opts.latents, prompt_embeds: embeds.promptEmbeds, negative_prompt_embeds: trueCfg ? embeds.negativePromptEmbeds : undefined },
        numSteps,
      );
      const latents = denoise({
        numSteps,
        timesteps: schedule.timesteps,
        latents: initial,
        callback: opts.callback,
        step: (step, latents, t) => {
          const timestep = this.modelTimestep(t, batch, device);
          let noise = call(step, 'cond', latents, positive, timestep);
          if (negative) noise = normRescaledGuidance(call(step, 'uncond', latents, negative, timestep), noise, trueCfgScale);
          return schedule.step(step, noise, latents);
        },
      });

      const image = opts.decode === false ? null : this.decodeLatents(latents, opts.height, opts.width);
      scope.keep(latents);
      if (image) scope.keep(image);
      return { latents, image, seed, timesteps: schedule.timesteps, sigmas: schedule.sigmas };
    } finally {
      scope.close();
    }
  }

  /**
   * Packed latents of a `height` x `width` image -> (B, height, width, 3) in [0, 1]: unpack to one
   * frame, round to the VAE's dtype, denormalize (latents_mean / latents_std), decode, take the frame.
   */
  decodeLatents(packed: Tensor, height?: number, width?: number): Tensor {
    const [latentHeight, latentWidth] = this.latentSides(height, width);
    return tidy(() => {
      // (B, C, h, w) as the VAE's one-frame video (B, C, 1, h, w).
      const latents = unpackLatents(packed, latentHeight, latentWidth).unsqueeze(2);
      const own = latents.dtype === this.dtype ? latents : latents.cast(this.dtype);
      const video = this.vae.decode(this.vae.denormalize(own));
      return toImageRange(video.narrow(2, 0, 1).squeeze(2));
    });
  }

  /** Frees the transformer's, the VAE's and the text encoder's weights. */
  dispose(): void {
    this.transformer.dispose();
    this.vae.dispose();
    this.textEncoders?.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  /**
   * The (B,) timestep the transformer gets at scheduler timestep `t` (0..1000): t / 1000 in
   * float32; in 16-bit, diffusers' `t.to(latents.dtype) / 1000`, rounded before and after.
   */
  private modelTimestep(t: number, batch: number, device: Device): Tensor {
    if (this.dtype === 'float32') return full([batch], t / 1000, { device });
    return tidy(() => div(full([batch], t, { device, dtype: this.dtype }), 1000));
  }

  /** Embeddings in the compute dtype and their mask, both cut to `maxTokens` text tokens (diffusers' encode_prompt), in the caller's scope. */
  private conditioning(embeds: Tensor, mask: Tensor | undefined, maxTokens: number): Conditioning {
    const keep = Math.min(embeds.shape[1], maxTokens);
    const cut = (t: Tensor): Tensor => (t.shape[1] === keep ? t : t.narrow(1, 0, keep));
    const own = cut(embeds);
    return { embeds: own.dtype === this.dtype ? own : own.cast(this.dtype), mask: mask && cut(mask) };
  }

  /**
   * The embeddings generate runs on: the given ones, or those of the prompt and, under true CFG, of
   * the negative prompt, encoded here in the caller's tensor scope.
   */
  private resolveEmbeddings(opts: QwenImageGenerateOptions, trueCfg: boolean, maxSequenceLength: number): QwenImageEmbeddings {
    const encodeNegative = trueCfg && opts.negativePrompt !== undefined;
    const encoder = opts.prompt !== undefined || encodeNegative ? this.requireTextEncoders() : null;
    let positive: QwenImagePromptEmbeddings | null = null;
    let negative: QwenImagePromptEmbeddings | null = null;
    try {
      positive = opts.prompt === undefined ? null : (encoder as QwenImagePromptEncoder).encode(opts.prompt, { maxSequenceLength });
      const batch = positive ? positive.promptEmbeds.shape[0] : (opts.promptEmbeds as Tensor).shape[0];
      if (encodeNegative) {
        const given = opts.negativePrompt as string | readonly string[];
        const texts = typeof given === 'string' ? Array<string>(batch).fill(given) : given;
        if (texts.length !== batch) throw new TypeError(`QwenImagePipeline: ${texts.length} negative prompts for a batch of ${batch}`);
        negative = (encoder as QwenImagePromptEncoder).encode(texts, { maxSequenceLength });
      }
    } finally {
      // Both prompts are encoded before the weights go, so true CFG loads them once.
      if (encoder && this.releaseTextEncoders) encoder.release();
    }
    return {
      promptEmbeds: positive?.promptEmbeds ?? (opts.promptEmbeds as Tensor),
      promptEmbedsMask: positive ? (positive.promptEmbedsMask ?? undefined) : opts.promptEmbedsMask,
      negativePromptEmbeds: negative?.promptEmbeds ?? opts.negativePromptEmbeds,
      negativePromptEmbedsMask: negative ? (negative.promptEmbedsMask ?? undefined) : opts.negativePromptEmbedsMask,
    };
  }

  /** The unpacked latent height and width for an image size (default: diffusers' default size). */
  private latentSides(height?: number, width?: number): [number, number] {
    const multiple = 2 * this.vaeScaleFactor;
    const side = (name: 'height' | 'width', px: number | undefined): number => {
      const v = px ?? this.defaults[name] ?? DEFAULT_SAMPLE_SIZE * this.vaeScaleFactor;
      if (!Number.isInteger(v) || v <= 0 || v % multiple !== 0) {
        throw new RangeError(`QwenImagePipeline: ${name} must be a positive multiple of ${multiple} (2 x the VAE scale factor), got ${v}`);
      }
      return v / this.vaeScaleFactor;
    };
    return [side('height', height), side('width', width)];
  }

  /** Checks the embeddings and masks against each other and the model; returns the batch. */
  private checkEmbeddings(opts: QwenImageEmbeddings): number {
    const dim = this.transformer.config.joint_attention_dim;
    const shape = (t: Tensor): string => `(${t.shape.join(', ')})`;
    const { promptEmbeds: e, promptEmbedsMask: m, negativePromptEmbeds: ne, negativePromptEmbedsMask: nm } = opts;
    if (e.rank !== 3 || e.shape[2] !== dim) throw new TypeError(`QwenImagePipeline: promptEmbeds must be (B, tokens, ${dim}), got ${shape(e)}`);
    const batch = e.shape[0];
    const checkMask = (name: string, mask: Tensor | undefined, embeds: Tensor, embedsName: string): void => {
      if (mask && (mask.rank !== 2 || mask.shape[0] !== embeds.shape[0] || mask.shape[1] !== embeds.shape[1])) {
        throw new TypeError(
          `QwenImagePipeline: ${name} must be (${embeds.shape[0]}, ${embeds.shape[1]}), the batch and tokens of ${embedsName} ${shape(embeds)}, got ${shape(mask)}`,
        );
      }
    };
    checkMask('promptEmbedsMask', m, e, 'promptEmbeds');
    if (!ne && nm) throw new TypeError('QwenImagePipeline: negativePromptEmbedsMask needs negativePromptEmbeds');
    if (ne) {
      if (ne.rank !== 3 || ne.shape[0] !== batch || ne.shape[2] !== dim) {
        throw new TypeError(`QwenImagePipeline: negativePromptEmbeds must be (${batch}, tokens, ${dim}), got ${shape(ne)}`);
      }
      checkMask('negativePromptEmbedsMask', nm, ne, 'negativePromptEmbeds');
    }
    return batch;
  }

  private initialLatents(
    opts: QwenImageGenerateOptions,
    batch: number,
    [height, width]: [number, number],
    device: Device,
  ): { latents: Tensor; seed: number | null } {
    const channels = this.vae.config.z_dim;
    const expected = [batch, (height / 2) * (width / 2), channels * 4];
    if (opts.latents) {
      if (opts.latents.shape.join() !== expected.join()) {
        throw new TypeError(`QwenImagePipeline: latents must be packed (${expected.join(', ')}) for this size, got (${opts.latents.shape.join(', ')})`);
      }
      // diffusers' `latents.to(dtype)`.
      return { latents: opts.latents.dtype === this.dtype ? opts.latents.clone() : opts.latents.cast(this.dtype), seed: null };
    }
    const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 32);
    // diffusers draws (B, 1, C, h, w), the same values as (B, C, h, w), and packs them.
    return { latents: tidy(() => packLatents(randnTensor([batch, channels, height, width], seed, { device, dtype: this.dtype }))), seed };
  }
}

/** A prompt or embeddings, not both; a negative prompt or negative embeddings, not both. */
function checkPromptInputs(opts: QwenImageGenerateOptions): void {
  if (opts.prompt !== undefined && (opts.promptEmbeds !== undefined || opts.promptEmbedsMask !== undefined)) {
    throw new TypeError('QwenImagePipeline: give either prompt or promptEmbeds / promptEmbedsMask, not both');
  }
  if (opts.prompt === undefined && opts.promptEmbeds === undefined) {
    throw new TypeError('QwenImagePipeline: give a prompt (the folder needs tokenizer/ and text_encoder/) or promptEmbeds');
  }
  if (opts.negativePrompt !== undefined && (opts.negativePromptEmbeds !== undefined || opts.negativePromptEmbedsMask !== undefined)) {
    throw new TypeError('QwenImagePipeline: give either negativePrompt or negativePromptEmbeds / negativePromptEmbedsMask, not both');
  }
}
