// diffusers' ChromaPipeline: a prompt (through T5) or prompt embeddings with their attention
// masks in, latents and an image out. Flow-matching Euler sampling with resolution-dependent
// shifting, classifier-free guidance as two transformer calls per step (the prompt, then the
// negative prompt) when guidance_scale is above 1, and AutoencoderKL decoding. With `dtype`
// (diffusers' torch_dtype) the transformer, the latents, the scheduler's output and the VAE are in
// that dtype, and the tensors are rounded where diffusers' ChromaPipeline rounds them.
import { join } from 'node:path';

import type { CfgBranch } from '@ditcache/core';
import { TensorScope, concat, div, full, ones, tidy, zeros, type Device, type Tensor } from '@ditcache/cuda-runtime';
import {
  AutoencoderKLDecoder,
  FlowMatchEulerDiscreteScheduler,
  RemotePipeline,
  TransformerCallAnnouncer,
  checkFiniteInputs,
  checkPipelineFolder,
  classifierFreeGuidance,
  computeDtype,
  denoise,
  latentImageIds,
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
  type RotaryTables,
} from '@ditcache/diffusion';

import { ChromaPromptEncoder, missingTextComponents, type ChromaPromptEmbeddings, type EncodePromptOptions } from './prompt-encoder.js';
import { ChromaTransformer } from './transformer.js';

/** Told to onTransformerCall listeners before each transformer call of generate(): 'cond' for the prompt (always first), 'uncond' for the negative prompt under CFG. */
export type TransformerCall = PipelineTransformerCall;

/** Passed to the per-step callback after each scheduler step; its latents are packed. */
export type StepEnd = PipelineStepEnd;

export interface ChromaGenerateOptions {
  /** The prompt (or one per image), encoded by the folder's T5; or give promptEmbeds and promptAttentionMask. */
  prompt?: string | readonly string[];
  /** T5 prompt embeddings (B, text tokens, joint_attention_dim), instead of a prompt. */
  promptEmbeds?: Tensor;
  /** (B, text tokens), nonzero for the tokens to attend to (encode_prompt keeps the prompt's tokens and one pad token); with promptEmbeds. */
  promptAttentionMask?: Tensor;
  /** The negative prompt of CFG (default ''; one for all images, or one per prompt); or give negativePromptEmbeds. */
  negativePrompt?: string | readonly string[];
  /** Negative prompt embeddings for CFG, shaped like promptEmbeds, with their mask. */
  negativePromptEmbeds?: Tensor;
  negativePromptAttentionMask?: Tensor;
  /** CFG runs when this is above 1 (default 5), on the negative prompt (encoded '' when none is given). */
  guidanceScale?: number;
  /** T5 tokens a text prompt is padded or truncated to (default 512, at most 512). */
  maxSequenceLength?: number;
  /** Image size in pixels, multiples of 2 * vaeScaleFactor (default 128 * vaeScaleFactor). */
  height?: number;
  width?: number;
  /** Default 35. */
  numInferenceSteps?: number;
  /** Custom sigmas (default linspace(1, 1 / steps, steps), as ChromaPipeline). */
  sigmas?: readonly number[];
  /** Initial packed noise (B, image tokens, in_channels); otherwise drawn from `seed`. */
  latents?: Tensor;
  /** Seed of torch-compatible initial noise (torch.Generator('cpu').manual_seed(seed)); random when neither this nor latents is given. */
  seed?: number;
  /** Decode the final latents to an image (default true); false is diffusers' output_type="latent". */
  decode?: boolean;
  callback?: (step: StepEnd) => void;
}

/** How fromPretrained treats the text encoder of a folder that has one. */
export interface ChromaLoadOptions extends LoadOptions {
  /** Load T5's weights with the pipeline (default: on the first prompt). */
  preloadTextEncoders?: boolean;
  /** Free T5's weights after each prompt encoding (they load again for the next prompt). */
  releaseTextEncoders?: boolean;
}

export interface ChromaGenerateResult {
  /** Final packed latents (B, image tokens, in_channels), before the VAE. */
  latents: Tensor;
  /** (B, height, width, 3) in [0, 1] (diffusers' output_type="np"), or null without decoding. */
  image: Tensor | null;
  /** The seed the initial noise came from, or null when latents were given. */
  seed: number | null;
  timesteps: Float32Array;
  sigmas: Float32Array;
}

/** One branch's conditioning: embeddings and their (text tokens) mask. */
interface Conditioning {
  embeds: Tensor;
  mask: Tensor;
}

/** What each transformer call of one branch gets besides latents and timestep. */
interface BranchInputs extends Conditioning {
  txtIds: Tensor;
  rotary: RotaryTables;
  keyMask: Tensor;
}

/** diffusers' ChromaPipeline.default_sample_size: the default image side in latent pixels. */
const DEFAULT_SAMPLE_SIZE = 128;
const DEFAULT_GUIDANCE_SCALE = 5;
const DEFAULT_STEPS = 35;

const COMPONENTS = [
  ['transformer', 'ChromaTransformer2DModel'],
  ['vae', 'AutoencoderKL'],
  ['scheduler', 'FlowMatchEulerDiscreteScheduler'],
] as const;

export class ChromaPipeline implements DiffusionPipeline<ChromaGenerateOptions, ChromaGenerateResult, TransformerCall> {
  readonly transformer: ChromaTransformer;
  readonly vae: AutoencoderKLDecoder;
  readonly scheduler: FlowMatchEulerDiscreteScheduler;
  /** The tokenizer and T5, or null for a pipeline that takes embeddings only. */
  readonly textEncoders: ChromaPromptEncoder | null;
  /** Image pixels per latent pixel along each side. */
  readonly vaeScaleFactor: number;
  /** The folder's recommended settings (its ditcache.json), which generate() uses where its options give none. */
  readonly defaults: PipelineDefaults;
  private readonly transformerCalls = new TransformerCallAnnouncer<TransformerCall>();
  private readonly releaseTextEncoders: boolean;
  /** Why textEncoders is null, for the error a prompt gets. */
  private readonly noTextEncodersReason: string;

  constructor(components: {
    transformer: ChromaTransformer;
    vae: AutoencoderKLDecoder;
    scheduler: FlowMatchEulerDiscreteScheduler;
    textEncoders?: ChromaPromptEncoder | null;
    /** Free T5's weights after each prompt encoding. */
    releaseTextEncoders?: boolean;
    /** Why there is no text encoder, for the error a prompt gets. */
    noTextEncodersReason?: string;
    /** Settings for generate() where its options give none. */
    defaults?: PipelineDefaults;
  }) {
    this.transformer = components.transformer;
    this.vae = components.vae;
    this.scheduler = components.scheduler;
    this.textEncoders = components.textEncoders ?? null;
    this.releaseTextEncoders = components.releaseTextEncoders ?? false;
    this.noTextEncodersReason = components.noTextEncodersReason ?? 'it was built without a text encoder';
    this.defaults = components.defaults ?? {};
    this.vaeScaleFactor = this.vae.scaleFactor;
    const { in_channels: inChannels } = this.transformer.config;
    if (inChannels !== this.vae.config.latent_channels * 4 || this.transformer.outChannels !== inChannels) {
      throw new TypeError(
        `ChromaPipeline: the transformer takes ${inChannels} and returns ${this.transformer.outChannels} channels; ` +
          `packing the VAE's ${this.vae.config.latent_channels} latent channels needs ${this.vae.config.latent_channels * 4} for both`,
      );
    }
  }

  /**
   * Loads a diffusers Chroma folder: `transformer/`, `vae/` and `scheduler/`, checked against
   * `model_index.json` when there is one; and, when the folder has both, `tokenizer/` and
   * `text_encoder/` for prompts (T5's weights on the first prompt, unless
   * `preloadTextEncoders`); and the folder's `ditcache.json`, when there is one.
   */
  static fromPretrained(dir: string, opts: ChromaLoadOptions = {}): ChromaPipeline {
    const dtype = computeDtype(opts.dtype, 'ChromaPipeline.fromPretrained: dtype');
    checkPipelineFolder(dir, 'ChromaPipeline', COMPONENTS);
    const defaults = readPipelineDefaults(dir);
    const scheduler = FlowMatchEulerDiscreteScheduler.fromFolder(join(dir, 'scheduler'));
    const missingText = missingTextComponents(dir);
    const loadOpts: LoadOptions = { device: opts.device, weightDtype: opts.weightDtype, dtype };
    const textEncoders = missingText.length ? null : ChromaPromptEncoder.fromPretrained(dir, { ...loadOpts, preload: opts.preloadTextEncoders });
    let transformer: ChromaTransformer | undefined;
    let vae: AutoencoderKLDecoder | undefined;
    try {
      transformer = ChromaTransformer.load(join(dir, 'transformer'), loadOpts);
      vae = AutoencoderKLDecoder.load(join(dir, 'vae'), loadOpts);
      return new ChromaPipeline({
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
   * the event loop, reports progress as events, and stops on an AbortSignal.
   */
  static spawn(dir: string, opts: ChromaLoadOptions = {}): Promise<RemotePipeline<ChromaGenerateOptions, ChromaGenerateResult>> {
    return RemotePipeline.open({ module: '@ditcache/adapter-chroma', exportName: 'ChromaPipeline', modelDir: dir, loadOptions: opts });
  }

  /** Registers `listener` to be told the step and CFG branch before every transformer call of generate(). Returns the function that unregisters it. */
  onTransformerCall(listener: (call: TransformerCall) => void): () => void {
    return this.transformerCalls.subscribe(listener);
  }

  /** diffusers' encode_prompt for a prompt (or a batch): embeddings, mask, text ids and token ids. The caller owns the tensors. */
  encodePrompt(prompt: string | readonly string[], opts: EncodePromptOptions = {}): ChromaPromptEmbeddings {
    const encoder = this.requireTextEncoders();
    try {
      return encoder.encode(prompt, opts);
    } finally {
      if (this.releaseTextEncoders) encoder.release();
    }
  }

  /** What the pipeline computes in: its transformer's dtype (diffusers' `torch_dtype`). */
  get dtype(): ComputeDtype {
    return this.transformer.dtype;
  }

  /** Runs the sampler. The caller owns (and disposes) the returned tensors. */
  generate(options: ChromaGenerateOptions): ChromaGenerateResult {
    const opts = withPipelineDefaults(options, this.defaults);
    const numSteps = opts.numInferenceSteps ?? DEFAULT_STEPS;
    const guidanceScale = opts.guidanceScale ?? DEFAULT_GUIDANCE_SCALE;
    const cfg = guidanceScale > 1;
    const [latentHeight, latentWidth] = this.latentSides(opts.height, opts.width);
    const imageTokens = (latentHeight / 2) * (latentWidth / 2);
    this.checkPromptInputs(opts);

    const scope = new TensorScope();
    try {
      const given = this.resolveConditioning(opts, cfg);
      const own = (t: Tensor): Tensor => (t.dtype === this.dtype ? t : t.cast(this.dtype));
      const positive = { embeds: own(given.positive.embeds), mask: given.positive.mask };
      const negative = given.negative && { embeds: own(given.negative.embeds), mask: given.negative.mask };
      const batch = this.checkConditioning(positive, negative);
      const device = positive.embeds.device;
      const schedule = this.scheduler.schedule({
        numInferenceSteps: numSteps,
        sigmas: opts.sigmas ?? linspace(1, 1 / numSteps, numSteps),
        mu: this.scheduler.dynamicShiftMu(imageTokens),
      });
      const { latents: initial, seed } = this.initialLatents(opts, batch, [latentHeight, latentWidth], device);
      const imgIds = latentImageIds(latentHeight / 2, latentWidth / 2, device);
      // Per branch, made once: zero text ids (diffusers' text_ids / negative_text_ids), their rotary
      // tables, and the key mask of _prepare_attention_mask's (the text mask, then every image token).
      const branchInputs = (c: Conditioning): BranchInputs => {
        const txtIds = zeros([c.embeds.shape[1], 3], { device });
        const mask = tidy(() => concat([c.mask.cast('float32'), ones([batch, imageTokens], { device })], 1));
        return { ...c, txtIds, rotary: this.transformer.rotaryEmbedding(txtIds, imgIds), keyMask: this.transformer.attentionKeyMask(mask) };
      };
      const cond = branchInputs(positive);
      const uncond = negative ? branchInputs(negative) : null;
      // The listeners and the cache engine learn each call as it is, its step and its branch (core
      // README, "Fixed on purpose"); cache-dit, told no branch by diffusers' ChromaPipeline, counts
      // calls by their position instead, which is the truth only under CFG with separate CFG.
      const call = (step: number, branch: CfgBranch, latents: Tensor, b: BranchInputs, timestep: Tensor): Tensor =>
        this.transformerCalls.run(this.transformer, { step, numSteps, timestep: schedule.timesteps[step], branch }, () =>
          this.transformer.forward({
            hiddenStates: latents,
            encoderHiddenStates: b.embeds,
            timestep,
            imgIds,
            txtIds: b.txtIds,
            rotary: b.rotary,
            keyMask: b.keyMask,
          }),
        );

      checkFiniteInputs(
        {
          latents_in: opts.latents,
          prompt_embeds: given.positive.embeds,
          negative_prompt_embeds: cfg ? given.negative?.embeds : undefined,
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
          let noise = call(step, 'cond', latents, cond, timestep);
          if (uncond) {
            const negativeNoise = call(step, 'uncond', latents, uncond, timestep);
            noise = classifierFreeGuidance(negativeNoise, noise, guidanceScale);
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

  /** Frees the transformer's, the VAE's and T5's weights. */
  dispose(): void {
    this.transformer.dispose();
    this.vae.dispose();
    this.textEncoders?.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  private requireTextEncoders(): ChromaPromptEncoder {
    if (!this.textEncoders)
      throw new TypeError(`ChromaPipeline: cannot encode a prompt: ${this.noTextEncodersReason}; give promptEmbeds and promptAttentionMask instead`);
    return this.textEncoders;
  }

  /**
   * The (B,) timestep the transformer gets at scheduler timestep `t` (0..1000): t / 1000 in
   * float32; in 16-bit, diffusers' `t.to(latents.dtype) / 1000`, rounded before and after.
   */
  private modelTimestep(t: number, batch: number, device: Device): Tensor {
    if (this.dtype === 'float32') return full([batch], t / 1000, { device });
    return tidy(() => div(full([batch], t, { device, dtype: this.dtype }), 1000));
  }

  /** The unpacked latent height and width for an image size (default: diffusers' default size). */
  private latentSides(height?: number, width?: number): [number, number] {
    const multiple = 2 * this.vaeScaleFactor;
    const side = (name: string, px: number | undefined): number => {
      const v = px ?? this.defaults[name as 'height' | 'width'] ?? DEFAULT_SAMPLE_SIZE * this.vaeScaleFactor;
      if (!Number.isInteger(v) || v <= 0 || v % multiple !== 0) {
        throw new RangeError(`ChromaPipeline: ${name} must be a positive multiple of ${multiple} (2 x the VAE scale factor), got ${v}`);
      }
      return v / this.vaeScaleFactor;
    };
    return [side('height', height), side('width', width)];
  }

  /** Each of the prompt and the negative prompt comes as text or as embeddings with their mask, not both. */
  private checkPromptInputs(opts: ChromaGenerateOptions): void {
    const fail = (what: string): never => {
      throw new TypeError(`ChromaPipeline: ${what}`);
    };
    const hasEmbeds = opts.promptEmbeds !== undefined || opts.promptAttentionMask !== undefined;
    if (opts.prompt !== undefined && hasEmbeds) fail('give either prompt or promptEmbeds / promptAttentionMask, not both');
    if (opts.prompt === undefined && (!opts.promptEmbeds || !opts.promptAttentionMask)) fail('give a prompt, or both promptEmbeds and promptAttentionMask');
    const hasNegativeEmbeds = opts.negativePromptEmbeds !== undefined || opts.negativePromptAttentionMask !== undefined;
    if (opts.negativePrompt !== undefined && hasNegativeEmbeds) {
      fail('give either negativePrompt or negativePromptEmbeds / negativePromptAttentionMask, not both');
    }
    if (!opts.negativePromptEmbeds !== !opts.negativePromptAttentionMask) fail('give negativePromptEmbeds and negativePromptAttentionMask together');
    if (opts.maxSequenceLength !== undefined && opts.prompt === undefined && opts.negativePrompt === undefined) {
      fail('maxSequenceLength applies to text prompts only');
    }
  }

  /**
   * The conditioning generate runs on: the given embeddings, or those of the prompt and (when CFG
   * runs without negative embeddings) of the negative prompt, '' by default, encoded here in the
   * caller's tensor scope.
   */
  private resolveConditioning(opts: ChromaGenerateOptions, cfg: boolean): { positive: Conditioning; negative: Conditioning | null } {
    const encodeOpts = { maxSequenceLength: opts.maxSequenceLength };
    const needsNegative = cfg && opts.negativePromptEmbeds === undefined;
    if (needsNegative && !this.textEncoders) {
      throw new TypeError(
        `ChromaPipeline: guidanceScale ${opts.guidanceScale ?? DEFAULT_GUIDANCE_SCALE} (above 1) runs classifier-free guidance, which needs the negative prompt, ` +
          `and it cannot be encoded (${this.noTextEncodersReason}): give negativePromptEmbeds and negativePromptAttentionMask, or guidanceScale 1`,
      );
    }
    const encoder = opts.prompt !== undefined || needsNegative ? this.requireTextEncoders() : null;
    let positive: ChromaPromptEmbeddings | null = null;
    let negative: ChromaPromptEmbeddings | null = null;
    try {
      positive = opts.prompt === undefined ? null : (encoder as ChromaPromptEncoder).encode(opts.prompt, encodeOpts);
      const batch = positive ? positive.promptEmbeds.shape[0] : (opts.promptEmbeds as Tensor).shape[0];
      if (needsNegative) {
        const given = opts.negativePrompt ?? '';
        const texts = typeof given === 'string' ? Array<string>(batch).fill(given) : given;
        if (texts.length !== batch) throw new TypeError(`ChromaPipeline: ${texts.length} negative prompts for a batch of ${batch}`);
        // diffusers pads the negative prompt to the same max_sequence_length.
        negative = (encoder as ChromaPromptEncoder).encode(texts, encodeOpts);
      }
    } finally {
      // Both prompts are encoded before the weights go, so CFG loads them once.
      if (encoder && this.releaseTextEncoders) encoder.release();
    }
    const fromPrompt = (e: ChromaPromptEmbeddings): Conditioning => ({ embeds: e.promptEmbeds, mask: e.promptAttentionMask });
    return {
      positive: positive ? fromPrompt(positive) : { embeds: opts.promptEmbeds as Tensor, mask: opts.promptAttentionMask as Tensor },
      negative: !cfg
        ? null
        : negative
          ? fromPrompt(negative)
          : { embeds: opts.negativePromptEmbeds as Tensor, mask: opts.negativePromptAttentionMask as Tensor },
    };
  }

  /** Checks shapes; returns the batch size. */
  private checkConditioning(positive: Conditioning, negative: Conditioning | null): number {
    const c = this.transformer.config;
    const shape = (t: Tensor): string => `(${t.shape.join(', ')})`;
    const { embeds: e, mask } = positive;
    if (e.rank !== 3 || e.shape[2] !== c.joint_attention_dim) {
      throw new TypeError(`ChromaPipeline: promptEmbeds must be (B, tokens, ${c.joint_attention_dim}), got ${shape(e)}`);
    }
    const [batch, tokens] = e.shape;
    if (mask.shape.join() !== [batch, tokens].join())
      throw new TypeError(`ChromaPipeline: promptAttentionMask must be (${batch}, ${tokens}) like promptEmbeds, got ${shape(mask)}`);
    if (negative) {
      // The negative prompt may have its own token count (diffusers gives it its own text ids).
      const [ne, nm] = [negative.embeds, negative.mask];
      if (ne.rank !== 3 || ne.shape[0] !== batch || ne.shape[2] !== c.joint_attention_dim) {
        throw new TypeError(`ChromaPipeline: negativePromptEmbeds must be (${batch}, tokens, ${c.joint_attention_dim}), got ${shape(ne)}`);
      }
      if (nm.shape.join() !== [batch, ne.shape[1]].join()) {
        throw new TypeError(`ChromaPipeline: negativePromptAttentionMask must be (${batch}, ${ne.shape[1]}) like negativePromptEmbeds, got ${shape(nm)}`);
      }
    }
    return batch;
  }

  private initialLatents(
    opts: ChromaGenerateOptions,
    batch: number,
    [height, width]: [number, number],
    device: Device,
  ): { latents: Tensor; seed: number | null } {
    const channels = this.vae.config.latent_channels;
    const expected = [batch, (height / 2) * (width / 2), channels * 4];
    if (opts.latents) {
      if (opts.latents.shape.join() !== expected.join()) {
        throw new TypeError(`ChromaPipeline: latents must be packed (${expected.join(', ')}) for this size, got (${opts.latents.shape.join(', ')})`);
      }
      // diffusers' `latents.to(dtype)`.
      return { latents: opts.latents.dtype === this.dtype ? opts.latents.clone() : opts.latents.cast(this.dtype), seed: null };
    }
    const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 32);
    return { latents: tidy(() => packLatents(randnTensor([batch, channels, height, width], seed, { device, dtype: this.dtype }))), seed };
  }
}
