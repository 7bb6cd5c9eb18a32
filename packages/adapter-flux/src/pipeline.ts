// diffusers' FluxPipeline: a prompt (through the CLIP and T5 text encoders) or prompt embeddings
// in, latents and an image out. Flow-matching Euler sampling with resolution-dependent shifting,
// the guidance embedding of guidance-distilled models, optional true classifier-free guidance,
// and AutoencoderKL decoding. With `dtype` (diffusers' torch_dtype) the transformer, the latents,
// the scheduler's output and the VAE are in that dtype, and the tensors are rounded where
// diffusers' FluxPipeline rounds them.
import { join } from 'node:path';

import type { CfgBranch } from '@ditcache/core';
import { TensorScope, div, full, tidy, zeros, type Device, type Tensor } from '@ditcache/cuda-runtime';
import {
  checkFiniteInputs,
  classifierFreeGuidance,
  denoise,
  AutoencoderKLDecoder,
  checkPipelineFolder,
  FlowMatchEulerDiscreteScheduler,
  linspace,
  randnTensor,
  RemotePipeline,
  toImageRange,
  TransformerCallAnnouncer,
  computeDtype,
  readPipelineDefaults,
  withPipelineDefaults,
  latentImageIds,
  packLatents,
  unpackLatents,
  type ComputeDtype,
  type DiffusionPipeline,
  type LoadOptions,
  type PipelineDefaults,
  type PipelineStepEnd,
  type PipelineTransformerCall,
} from '@ditcache/diffusion';

import { FluxPromptEncoder, missingTextComponents, type EncodePromptOptions, type FluxPromptEmbeddings } from './prompt-encoder.js';
import { FluxTransformer, type FluxTextConditioning } from './transformer.js';

/** Told to onTransformerCall listeners before each transformer call of generate(): 'cond' for the prompt (always first), 'uncond' for the negative prompt under true CFG. */
export type TransformerCall = PipelineTransformerCall;

/** Passed to the per-step callback after each scheduler step; its latents are packed. */
export type StepEnd = PipelineStepEnd;

export interface FluxGenerateOptions {
  /** The prompt (or one per image), encoded by the folder's text encoders; or give promptEmbeds. */
  prompt?: string | readonly string[];
  /** T5 prompt embeddings (B, text tokens, joint_attention_dim), instead of a prompt. */
  promptEmbeds?: Tensor;
  /** CLIP pooled prompt embedding (B, pooled_projection_dim), with promptEmbeds. */
  pooledPromptEmbeds?: Tensor;
  /** The negative prompt for true CFG (one for all images, or one per prompt); or give negativePromptEmbeds. */
  negativePrompt?: string | readonly string[];
  /** Negative prompt embeddings for true CFG, shaped like promptEmbeds (with the pooled one). */
  negativePromptEmbeds?: Tensor;
  negativePooledPromptEmbeds?: Tensor;
  /** True CFG runs when this is above 1 and a negative prompt or negative embeddings are given (default 1). */
  trueCfgScale?: number;
  /** T5 tokens a text prompt is padded or truncated to (default 512, at most 512). */
  maxSequenceLength?: number;
  /** Image size in pixels, multiples of 2 * vaeScaleFactor (default 128 * vaeScaleFactor). */
  height?: number;
  width?: number;
  /** Default 28. */
  numInferenceSteps?: number;
  /** Custom sigmas (default linspace(1, 1 / steps, steps), as FluxPipeline). */
  sigmas?: readonly number[];
  /** Embedded guidance of guidance-distilled models such as FLUX.1-dev (default 3.5); ignored otherwise. */
  guidanceScale?: number;
  /** Initial packed noise (B, image tokens, in_channels); otherwise drawn from `seed`. */
  latents?: Tensor;
  /** Seed of torch-compatible initial noise (torch.Generator('cpu').manual_seed(seed)); random when neither this nor latents is given. */
  seed?: number;
  /** Decode the final latents to an image (default true); false is diffusers' output_type="latent". */
  decode?: boolean;
  callback?: (step: StepEnd) => void;
}

/** How fromPretrained treats the text encoders of a folder that has them. */
export interface FluxLoadOptions extends LoadOptions {
  /** Load the text encoders' weights with the pipeline (default: on the first prompt). */
  preloadTextEncoders?: boolean;
  /** Free the text encoders' weights after each prompt encoding (they load again for the next prompt). */
  releaseTextEncoders?: boolean;
}

export interface FluxGenerateResult {
  /** Final packed latents (B, image tokens, in_channels), before the VAE. */
  latents: Tensor;
  /** (B, height, width, 3) in [0, 1] (diffusers' output_type="np"), or null without decoding. */
  image: Tensor | null;
  /** The seed the initial noise came from, or null when latents were given. */
  seed: number | null;
  timesteps: Float32Array;
  sigmas: Float32Array;
}

/** The conditioning of one generate call. */
interface FluxEmbeddings {
  promptEmbeds: Tensor;
  pooledPromptEmbeds: Tensor;
  negativePromptEmbeds?: Tensor;
  negativePooledPromptEmbeds?: Tensor;
}

/** diffusers' FluxPipeline.default_sample_size: the default image side in latent pixels. */
const DEFAULT_SAMPLE_SIZE = 128;

const COMPONENTS = [
  ['transformer', 'FluxTransformer2DModel'],
  ['vae', 'AutoencoderKL'],
  ['scheduler', 'FlowMatchEulerDiscreteScheduler'],
] as const;

export class FluxPipeline implements DiffusionPipeline<FluxGenerateOptions, FluxGenerateResult, TransformerCall> {
  readonly transformer: FluxTransformer;
  readonly vae: AutoencoderKLDecoder;
  readonly scheduler: FlowMatchEulerDiscreteScheduler;
  /** The tokenizers and text encoders, or null for a pipeline that takes embeddings only. */
  readonly textEncoders: FluxPromptEncoder | null;
  /** Image pixels per latent pixel along each side. */
  readonly vaeScaleFactor: number;
  private readonly transformerCalls = new TransformerCallAnnouncer<TransformerCall>();
  private readonly releaseTextEncoders: boolean;
  /** Why textEncoders is null, for the error a prompt gets. */
  private readonly noTextEncodersReason: string;
  /** The folder's recommended settings (its ditcache.json), which generate() uses where its options give none. */
  readonly defaults: PipelineDefaults;

  constructor(components: {
    transformer: FluxTransformer;
    vae: AutoencoderKLDecoder;
    scheduler: FlowMatchEulerDiscreteScheduler;
    textEncoders?: FluxPromptEncoder | null;
    /** Free the text encoders' weights after each prompt encoding. */
    releaseTextEncoders?: boolean;
    /** Why there are no text encoders, for the error a prompt gets (e.g. the folders a checkpoint lacks). */
    noTextEncodersReason?: string;
    /** Settings for generate() where its options give none (fromPretrained reads them from the folder's ditcache.json). */
    defaults?: PipelineDefaults;
  }) {
    this.transformer = components.transformer;
    this.vae = components.vae;
    this.scheduler = components.scheduler;
    this.textEncoders = components.textEncoders ?? null;
    this.releaseTextEncoders = components.releaseTextEncoders ?? false;
    this.noTextEncodersReason = components.noTextEncodersReason ?? 'it was built without text encoders';
    this.defaults = components.defaults ?? {};
    this.vaeScaleFactor = this.vae.scaleFactor;
    const { in_channels: inChannels } = this.transformer.config;
    if (inChannels !== this.vae.config.latent_channels * 4 || this.transformer.outChannels !== inChannels) {
      throw new TypeError(
        `FluxPipeline: the transformer takes ${inChannels} and returns ${this.transformer.outChannels} channels; ` +
          `packing the VAE's ${this.vae.config.latent_channels} latent channels needs ${this.vae.config.latent_channels * 4} for both`,
      );
    }
  }

  /**
   * Loads a diffusers FLUX folder: `transformer/`, `vae/` and `scheduler/`, checked against
   * `model_index.json` when there is one; and, when the folder has all four, `tokenizer/`,
   * `tokenizer_2/`, `text_encoder/` and `text_encoder_2/` for prompts (their weights on the
   * first prompt, unless `preloadTextEncoders`); and the folder's `ditcache.json`, when there is
   * one: the settings generate() uses where its options give none.
   */
  static fromPretrained(dir: string, opts: FluxLoadOptions = {}): FluxPipeline {
    const dtype = computeDtype(opts.dtype, 'FluxPipeline.fromPretrained: dtype');
    checkPipelineFolder(dir, 'FluxPipeline', COMPONENTS);
    const defaults = readPipelineDefaults(dir);
    const scheduler = FlowMatchEulerDiscreteScheduler.fromFolder(join(dir, 'scheduler'));
    const missingText = missingTextComponents(dir);
    const loadOpts: LoadOptions = { device: opts.device, weightDtype: opts.weightDtype, dtype };
    const textEncoders = missingText.length ? null : FluxPromptEncoder.fromPretrained(dir, { ...loadOpts, preload: opts.preloadTextEncoders });
    let transformer: FluxTransformer | undefined;
    let vae: AutoencoderKLDecoder | undefined;
    try {
      transformer = FluxTransformer.load(join(dir, 'transformer'), loadOpts);
      vae = AutoencoderKLDecoder.load(join(dir, 'vae'), loadOpts);
      return new FluxPipeline({
        transformer,
        vae,
        scheduler,
        textEncoders,
        releaseTextEncoders: opts.releaseTextEncoders,
        noTextEncodersReason: missingText.length ? `${dir} has no ${missingText.map((m) => `${m}/`).join(', ')}` : undefined,
        defaults,
      });
    } catch (e) {
      vae?.dispose();
      transformer?.dispose();
      textEncoders?.dispose();
      throw e;
    }
  }
  /**
   * Loads the pipeline in a worker thread: `generate` then returns a promise and never blocks
   * the event loop, reports progress as events, and stops on an AbortSignal. `enableCache`,
   * `summary` and `disableCache` work on the returned object as on a local pipeline.
   */
  static spawn(dir: string, opts: FluxLoadOptions = {}): Promise<RemotePipeline<FluxGenerateOptions, FluxGenerateResult>> {
    return RemotePipeline.open({ module: '@ditcache/adapter-flux', exportName: 'FluxPipeline', modelDir: dir, loadOptions: opts });
  }

  /**
   * Registers `listener` to be told the step and CFG branch before every transformer call of
   * generate() (for a cache engine). Returns the function that unregisters it.
   */
  onTransformerCall(listener: (call: TransformerCall) => void): () => void {
    return this.transformerCalls.subscribe(listener);
  }

  /**
   * diffusers' encode_prompt: T5 and CLIP embeddings, text ids and the token ids of a prompt
   * (or a batch of them). The caller owns the tensors. Needs a folder with text encoders.
   */
  encodePrompt(prompt: string | readonly string[], opts: EncodePromptOptions = {}): FluxPromptEmbeddings {
    const encoders = this.requireTextEncoders();
    try {
      return encoders.encode(prompt, opts);
    } finally {
      if (this.releaseTextEncoders) encoders.release();
    }
  }

  private requireTextEncoders(): FluxPromptEncoder {
    if (!this.textEncoders)
      throw new TypeError(`FluxPipeline: cannot encode a prompt: ${this.noTextEncodersReason}; give promptEmbeds and pooledPromptEmbeds instead`);
    return this.textEncoders;
  }

  /**
   * Runs the sampler. A text prompt is encoded once per call (the negative one too, when true
   * CFG runs). The caller owns (and disposes) the returned tensors.
   */
  generate(options: FluxGenerateOptions): FluxGenerateResult {
    // What the call leaves out comes from the folder's ditcache.json, then from diffusers' defaults.
    const opts = withPipelineDefaults(options, this.defaults);
    const numSteps = opts.numInferenceSteps ?? 28;
    const sides = this.latentSides(opts.height, opts.width);
    const [latentHeight, latentWidth] = sides;
    const imageTokens = (latentHeight / 2) * (latentWidth / 2);
    const trueCfgScale = opts.trueCfgScale ?? 1;
    this.checkPromptInputs(opts);

    const scope = new TensorScope();
    try {
      const given = this.resolveEmbeddings(opts, trueCfgScale > 1);
      const embeds = this.inComputeDtype(given);
      const { batch, hasNegative } = this.checkEmbeddings(embeds);
      const trueCfg = hasNegative && trueCfgScale > 1;
      const device = embeds.promptEmbeds.device;
      const schedule = this.scheduler.schedule({
        numInferenceSteps: numSteps,
        sigmas: opts.sigmas ?? linspace(1, 1 / numSteps, numSteps),
        mu: this.scheduler.dynamicShiftMu(imageTokens),
      });
      const textTokens = embeds.promptEmbeds.shape[1];
      const { latents: initial, seed } = this.initialLatents(opts, batch, sides, device);
      const imgIds = latentImageIds(latentHeight / 2, latentWidth / 2, device);
      const txtIds = zeros([textTokens, 3], { device });
      const rotary = this.transformer.rotaryEmbedding(txtIds, imgIds);
      const guidance = this.transformer.config.guidance_embeds ? full([batch], opts.guidanceScale ?? 3.5, { device }) : undefined;
      // What the transformer makes of each prompt alone, once per run rather than once per step.
      const text = this.transformer.embedText(embeds.promptEmbeds, embeds.pooledPromptEmbeds);
      const negativeText = trueCfg ? this.transformer.embedText(embeds.negativePromptEmbeds as Tensor, embeds.negativePooledPromptEmbeds as Tensor) : undefined;
      const call = (
        step: number,
        branch: CfgBranch,
        latents: Tensor,
        promptEmbeds: Tensor,
        pooled: Tensor,
        promptText: FluxTextConditioning,
        timestep: Tensor,
      ): Tensor => {
        // The cache engine learns step, branch and timestep from here, read from no tensor.
        return this.transformerCalls.run(this.transformer, { step, numSteps, timestep: schedule.timesteps[step], branch }, () =>
          this.transformer.forward({
            hiddenStates: latents,
            encoderHiddenStates: promptEmbeds,
            pooledProjections: pooled,
            timestep,
            imgIds,
            txtIds,
            guidance,
            rotary,
            text: promptText,
          }),
        );
      };

      // NaN / Inf in an input, as given (a 16-bit overflow of the rounded copy is the blocks'
      // Float16OverflowError), stops here, named; denoise checks each step's latents.
      checkFiniteInputs(
        {
          latents_in: opts.latents,
          prompt_embeds: given.promptEmbeds,
          pooled_prompt_embeds: given.pooledPromptEmbeds,
          negative_prompt_embeds: trueCfg ? given.negativePromptEmbeds : undefined,
          negative_pooled_prompt_embeds: trueCfg ? given.negativePooledPromptEmbeds : undefined,
        },
        numSteps,
      );
      const latents = denoise({
        numSteps,
        timesteps: schedule.timesteps,
        latents: initial,
        callback: opts.callback,
        step: (step, latents, t) => {
          const timestep = this.modelTimestep(t, batch, device);
          let noise = call(step, 'cond', latents, embeds.promptEmbeds, embeds.pooledPromptEmbeds, text, timestep);
          if (trueCfg) {
            const negativeEmbeds = [embeds.negativePromptEmbeds, embeds.negativePooledPromptEmbeds] as [Tensor, Tensor];
            const negative = call(step, 'uncond', latents, ...negativeEmbeds, negativeText as FluxTextConditioning, timestep);
            noise = classifierFreeGuidance(negative, noise, trueCfgScale);
          }
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
   * Packed latents of a `height` x `width` image -> (B, height, width, 3) in [0, 1]: unpack,
   * undo the VAE scaling ((latents / scaling_factor) + shift_factor), decode, denormalise.
   */
  decodeLatents(packed: Tensor, height?: number, width?: number): Tensor {
    const [latentHeight, latentWidth] = this.latentSides(height, width);
    return tidy(() => toImageRange(this.vae.decode(this.vae.denormalize(unpackLatents(packed, latentHeight, latentWidth)))));
  }

  /** What the pipeline computes in: its transformer's dtype (diffusers' `torch_dtype`). */
  get dtype(): ComputeDtype {
    return this.transformer.dtype;
  }

  /**
   * The (B,) timestep the transformer gets at scheduler timestep `t` (0..1000): t / 1000 in
   * float32; in 16-bit, diffusers' `t.to(latents.dtype) / 1000`, rounded before and after.
   */
  private modelTimestep(t: number, batch: number, device: Device): Tensor {
    if (this.dtype === 'float32') return full([batch], t / 1000, { device });
    return tidy(() => div(full([batch], t, { device, dtype: this.dtype }), 1000));
  }

  /** The embeddings rounded to the compute dtype, as diffusers' text encoders in that dtype return them (new tensors in the caller's scope). */
  private inComputeDtype(embeds: FluxEmbeddings): FluxEmbeddings {
    const own = (t: Tensor | undefined): Tensor | undefined => (t === undefined || t.dtype === this.dtype ? t : t.cast(this.dtype));
    return {
      promptEmbeds: own(embeds.promptEmbeds) as Tensor,
      pooledPromptEmbeds: own(embeds.pooledPromptEmbeds) as Tensor,
      negativePromptEmbeds: own(embeds.negativePromptEmbeds),
      negativePooledPromptEmbeds: own(embeds.negativePooledPromptEmbeds),
    };
  }

  /** Frees the transformer's, the VAE's and the text encoders' weights. */
  dispose(): void {
    this.transformer.dispose();
    this.vae.dispose();
    this.textEncoders?.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** The unpacked latent height and width for an image size (default: diffusers' default size). */
  private latentSides(height?: number, width?: number): [number, number] {
    const multiple = 2 * this.vaeScaleFactor;
    const side = (name: string, px: number | undefined): number => {
      const v = px ?? this.defaults[name as 'height' | 'width'] ?? DEFAULT_SAMPLE_SIZE * this.vaeScaleFactor;
      if (!Number.isInteger(v) || v <= 0 || v % multiple !== 0) {
        throw new RangeError(`FluxPipeline: ${name} must be a positive multiple of ${multiple} (2 x the VAE scale factor), got ${v}`);
      }
      return v / this.vaeScaleFactor;
    };
    return [side('height', height), side('width', width)];
  }

  /** Each of the prompt and the negative prompt comes as text or as embeddings, not both. */
  private checkPromptInputs(opts: FluxGenerateOptions): void {
    const hasEmbeds = opts.promptEmbeds !== undefined || opts.pooledPromptEmbeds !== undefined;
    if (opts.prompt !== undefined && hasEmbeds) throw new TypeError('FluxPipeline: give either prompt or promptEmbeds / pooledPromptEmbeds, not both');
    if (opts.prompt === undefined && (!opts.promptEmbeds || !opts.pooledPromptEmbeds)) {
      throw new TypeError('FluxPipeline: give a prompt, or both promptEmbeds and pooledPromptEmbeds');
    }
    const hasNegativeEmbeds = opts.negativePromptEmbeds !== undefined || opts.negativePooledPromptEmbeds !== undefined;
    if (opts.negativePrompt !== undefined && hasNegativeEmbeds) {
      throw new TypeError('FluxPipeline: give either negativePrompt or negativePromptEmbeds / negativePooledPromptEmbeds, not both');
    }
    if (opts.maxSequenceLength !== undefined && opts.prompt === undefined && opts.negativePrompt === undefined) {
      throw new TypeError('FluxPipeline: maxSequenceLength applies to text prompts only');
    }
  }

  /**
   * The embeddings generate runs on: the given ones, or those of the prompt and (when true CFG
   * will run) the negative prompt, encoded here in the caller's tensor scope.
   */
  private resolveEmbeddings(opts: FluxGenerateOptions, cfgScaleAboveOne: boolean): FluxEmbeddings {
    const encodeOpts = { maxSequenceLength: opts.maxSequenceLength };
    const needsNegative = opts.negativePrompt !== undefined && cfgScaleAboveOne;
    const encoders = opts.prompt !== undefined || needsNegative ? this.requireTextEncoders() : null;
    let positive: FluxPromptEmbeddings | null = null;
    let negative: FluxPromptEmbeddings | null = null;
    try {
      positive = opts.prompt === undefined ? null : (encoders as FluxPromptEncoder).encode(opts.prompt, encodeOpts);
      const batch = positive ? positive.promptEmbeds.shape[0] : (opts.promptEmbeds as Tensor).shape[0];
      if (needsNegative) {
        const texts = typeof opts.negativePrompt === 'string' ? Array<string>(batch).fill(opts.negativePrompt) : (opts.negativePrompt as readonly string[]);
        if (texts.length !== batch) throw new TypeError(`FluxPipeline: ${texts.length} negative prompts for a batch of ${batch}`);
        negative = (encoders as FluxPromptEncoder).encode(texts, encodeOpts);
      }
    } finally {
      // Both prompts are encoded before the weights go, so true CFG loads them once.
      if (encoders && this.releaseTextEncoders) encoders.release();
    }
    return {
      promptEmbeds: positive?.promptEmbeds ?? (opts.promptEmbeds as Tensor),
      pooledPromptEmbeds: positive?.pooledPromptEmbeds ?? (opts.pooledPromptEmbeds as Tensor),
      negativePromptEmbeds: negative?.promptEmbeds ?? opts.negativePromptEmbeds,
      negativePooledPromptEmbeds: negative?.pooledPromptEmbeds ?? opts.negativePooledPromptEmbeds,
    };
  }

  private checkEmbeddings(opts: FluxEmbeddings): { batch: number; hasNegative: boolean } {
    const c = this.transformer.config;
    const shape = (t: Tensor): string => `(${t.shape.join(', ')})`;
    const { promptEmbeds: e, pooledPromptEmbeds: p, negativePromptEmbeds: ne, negativePooledPromptEmbeds: np } = opts;
    if (e.rank !== 3 || e.shape[2] !== c.joint_attention_dim) {
      throw new TypeError(`FluxPipeline: promptEmbeds must be (B, tokens, ${c.joint_attention_dim}), got ${shape(e)}`);
    }
    const batch = e.shape[0];
    if (p.rank !== 2 || p.shape[0] !== batch || p.shape[1] !== c.pooled_projection_dim) {
      throw new TypeError(`FluxPipeline: pooledPromptEmbeds must be (${batch}, ${c.pooled_projection_dim}), got ${shape(p)}`);
    }
    if (!ne !== !np) throw new TypeError('FluxPipeline: give negativePromptEmbeds and negativePooledPromptEmbeds together');
    if (ne && np) {
      if (shape(ne) !== shape(e)) throw new TypeError(`FluxPipeline: negativePromptEmbeds ${shape(ne)} must match promptEmbeds ${shape(e)}`);
      if (shape(np) !== shape(p)) throw new TypeError(`FluxPipeline: negativePooledPromptEmbeds ${shape(np)} must match pooledPromptEmbeds ${shape(p)}`);
    }
    return { batch, hasNegative: ne !== undefined };
  }

  private initialLatents(
    opts: FluxGenerateOptions,
    batch: number,
    [height, width]: [number, number],
    device: Device,
  ): { latents: Tensor; seed: number | null } {
    const channels = this.vae.config.latent_channels;
    const expected = [batch, (height / 2) * (width / 2), channels * 4];
    if (opts.latents) {
      if (opts.latents.shape.join() !== expected.join()) {
        throw new TypeError(`FluxPipeline: latents must be packed (${expected.join(', ')}) for this size, got (${opts.latents.shape.join(', ')})`);
      }
      // diffusers' `latents.to(dtype)`.
      return { latents: opts.latents.dtype === this.dtype ? opts.latents.clone() : opts.latents.cast(this.dtype), seed: null };
    }
    const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 32);
    return { latents: tidy(() => packLatents(randnTensor([batch, channels, height, width], seed, { device, dtype: this.dtype }))), seed };
  }
}
