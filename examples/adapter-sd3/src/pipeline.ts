// diffusers' StableDiffusion3Pipeline without its three text encoders: prompt embeddings in
// (and the negative ones for classifier-free guidance), latents and an image out. CFG is
// batched as diffusers does it for SD3: one transformer call per step on [uncond, cond]. The
// FlowMatchEulerDiscreteScheduler and the 16-channel AutoencoderKL come from @ditcache/diffusion.
// With `dtype` (diffusers' torch_dtype) the transformer, the VAE, the embeddings, the latents and
// the scheduler's output are in that dtype, as `StableDiffusion3Pipeline.from_pretrained(...,
// torch_dtype=...)` has them; the text encoders stay float32 and their embeddings are cast.
import { join } from 'node:path';

import type { CfgBranch } from '@ditcache/core';
import { TensorScope, concat, full, tidy, type Tensor } from '@ditcache/cuda-runtime';
import {
  batchedGuidance,
  AutoencoderKLDecoder,
  checkFiniteInputs,
  checkPipelineFolder,
  computeDtype,
  denoise,
  FlowMatchEulerDiscreteScheduler,
  randnTensor,
  readPipelineDefaults,
  RemotePipeline,
  toImageRange,
  TransformerCallAnnouncer,
  withPipelineDefaults,
  type ComputeDtype,
  type DiffusionPipeline,
  type LoadOptions,
  type PipelineDefaults,
  type PipelineStepEnd,
  type PipelineTransformerCall,
} from '@ditcache/diffusion';

import { SD3PromptEncoder, type SD3PromptEmbeddings } from './prompt-encoder.js';
import { SD3Transformer } from './transformer.js';

export interface SD3PipelineComponents {
  transformer: SD3Transformer;
  vae: AutoencoderKLDecoder;
  scheduler: FlowMatchEulerDiscreteScheduler;
  /** The tokenizers and text encoders, or null for a pipeline that takes embeddings only. */
  promptEncoder?: SD3PromptEncoder | null;
  /** Free the text encoders' weights after each encoding (they load again when next needed). */
  releaseTextEncoders?: boolean;
  /** Settings for generate() where its options give none (fromPretrained reads them from the folder's ditcache.json). */
  defaults?: PipelineDefaults;
}

export interface SD3LoadOptions extends LoadOptions {
  /** Free the text encoders' weights after each encoding (they load again when next needed): SD3's T5-XXL alone is 9.5 GB. */
  releaseTextEncoders?: boolean;
}

/** The embeddings a run uses, given or encoded. */
interface Embeddings {
  promptEmbeds: Tensor;
  pooledPromptEmbeds: Tensor;
  negativePromptEmbeds?: Tensor;
  negativePooledPromptEmbeds?: Tensor;
}

/** Told to onTransformerCall listeners before each transformer call of generate(): 'batched' when the call runs the batch [uncond, cond] (CFG), 'cond' without CFG. */
export type TransformerCall = PipelineTransformerCall;

/** Passed to the per-step callback after each scheduler step. */
export type StepEnd = PipelineStepEnd;

export interface SD3GenerateOptions {
  /** The prompt (or one per image), encoded by the folder's text encoders (all three read it); or give the embeddings. */
  prompt?: string | readonly string[];
  /** The negative prompt of CFG (or one per image); "" when neither it nor negative embeddings are given, as in diffusers. */
  negativePrompt?: string | readonly string[];
  /** T5 tokens a text prompt is padded or truncated to (default 256). */
  maxSequenceLength?: number;
  /** The joint CLIP + T5 prompt embeddings (B, text tokens, joint_attention_dim), instead of a prompt. */
  promptEmbeds?: Tensor;
  /** The pooled CLIP embeddings (B, pooled_projection_dim), with promptEmbeds. */
  pooledPromptEmbeds?: Tensor;
  /** The negative prompt's embeddings, shaped like the prompt's; without text encoders, required when guidanceScale > 1. */
  negativePromptEmbeds?: Tensor;
  negativePooledPromptEmbeds?: Tensor;
  /** Classifier-free guidance runs when this is above 1 (default 7, as diffusers). */
  guidanceScale?: number;
  /** Image size in pixels, multiples of vaeScaleFactor * patch_size (default sample_size * vaeScaleFactor). */
  height?: number;
  width?: number;
  /** Default 28. */
  numInferenceSteps?: number;
  /** Custom sigmas, one per step. */
  sigmas?: readonly number[];
  /** Initial noise (B, latent channels, height / vaeScaleFactor, width / vaeScaleFactor); otherwise drawn from `seed`. */
  latents?: Tensor;
  /** Seed of torch-compatible initial noise (torch.Generator('cpu').manual_seed(seed)); random when neither this nor latents is given. */
  seed?: number;
  /** Decode the final latents to an image (default true); false is diffusers' output_type="latent". */
  decode?: boolean;
  callback?: (step: StepEnd) => void;
}

export interface SD3GenerateResult {
  /** Final latents (B, latent channels, height / vaeScaleFactor, width / vaeScaleFactor), before the VAE. */
  latents: Tensor;
  /** (B, height, width, 3) in [0, 1] (diffusers' output_type="np"), or null without decoding. */
  image: Tensor | null;
  /** The seed the initial noise came from, or null when latents were given. */
  seed: number | null;
  timesteps: Float32Array;
  sigmas: Float32Array;
}

const COMPONENTS = [
  ['transformer', 'SD3Transformer2DModel'],
  ['vae', 'AutoencoderKL'],
  ['scheduler', 'FlowMatchEulerDiscreteScheduler'],
] as const;

export class StableDiffusion3Pipeline implements DiffusionPipeline<SD3GenerateOptions, SD3GenerateResult, TransformerCall> {
  readonly transformer: SD3Transformer;
  readonly vae: AutoencoderKLDecoder;
  readonly scheduler: FlowMatchEulerDiscreteScheduler;
  /** Image pixels per latent pixel along each side. */
  readonly vaeScaleFactor: number;
  /** The tokenizers and text encoders, or null for a pipeline that takes embeddings only. */
  readonly promptEncoder: SD3PromptEncoder | null;
  private readonly releaseTextEncoders: boolean;
  /** The folder's recommended settings (its ditcache.json), which generate() uses where its options give none. */
  readonly defaults: PipelineDefaults;
  private readonly transformerCalls = new TransformerCallAnnouncer<TransformerCall>();

  constructor(components: SD3PipelineComponents) {
    this.promptEncoder = components.promptEncoder ?? null;
    this.releaseTextEncoders = components.releaseTextEncoders ?? false;
    this.defaults = components.defaults ?? {};
    this.transformer = components.transformer;
    this.vae = components.vae;
    this.scheduler = components.scheduler;
    this.vaeScaleFactor = this.vae.scaleFactor;
    if (this.vae.dtype !== this.transformer.dtype) {
      throw new TypeError(
        `StableDiffusion3Pipeline: the transformer computes in ${this.transformer.dtype} but the VAE in ${this.vae.dtype}; load both with the same dtype`,
      );
    }
    const { in_channels: inChannels } = this.transformer.config;
    const latentChannels = this.vae.config.latent_channels;
    if (inChannels !== latentChannels || this.transformer.outChannels !== latentChannels) {
      throw new TypeError(
        `StableDiffusion3Pipeline: the transformer takes ${inChannels} and returns ${this.transformer.outChannels} channels, but the VAE has ${latentChannels} latent channels`,
      );
    }
  }

  /**
   * Loads a diffusers SD3 / SD3.5 folder: `transformer/`, `vae/` and `scheduler/`, checked against
   * `model_index.json` when there is one, and the tokenizers and text encoders when it lists
   * them (the two CLIPs; T5 where the folder has it). Their weights load with the first prompt.
   * `opts.dtype` ('float32' by default, 'bfloat16', 'float16') is what the transformer and the VAE
   * compute in; the text encoders compute in float32. The folder's `ditcache.json`, when there is
   * one, gives the settings generate() uses where its options give none.
   */
  static fromPretrained(dir: string, opts: SD3LoadOptions = {}): StableDiffusion3Pipeline {
    computeDtype(opts.dtype, 'StableDiffusion3Pipeline.fromPretrained: dtype');
    const index = checkPipelineFolder(dir, 'StableDiffusion3Pipeline', COMPONENTS);
    const defaults = readPipelineDefaults(dir);
    // diffusers saves [null, null] for components a pipeline was built without.
    const withText = index !== null && Array.isArray(index.text_encoder) && (index.text_encoder as unknown[])[1] !== null;
    const scheduler = FlowMatchEulerDiscreteScheduler.fromFolder(join(dir, 'scheduler'));
    const transformer = SD3Transformer.load(join(dir, 'transformer'), opts);
    let vae: AutoencoderKLDecoder | undefined;
    try {
      vae = AutoencoderKLDecoder.load(join(dir, 'vae'), opts);
      const promptEncoder = withText
        ? new SD3PromptEncoder(dir, transformer.config.joint_attention_dim, { device: opts.device, weightDtype: opts.weightDtype, dtype: opts.dtype })
        : null;
      return new StableDiffusion3Pipeline({ transformer, vae, scheduler, promptEncoder, releaseTextEncoders: opts.releaseTextEncoders, defaults });
    } catch (e) {
      vae?.dispose();
      transformer.dispose();
      throw e;
    }
  }

  /**
   * Loads the pipeline in a worker thread: `generate` then returns a promise and never blocks
   * the event loop. `enableCache`, `summary` and `disableCache` work on the returned object.
   * The worker imports this package by file URL, so it finds it wherever it was loaded from
   * (an application's node_modules, or a folder the CLI's --adapter names).
   */
  static spawn(dir: string, opts: SD3LoadOptions = {}): Promise<RemotePipeline<SD3GenerateOptions, SD3GenerateResult>> {
    return RemotePipeline.open({
      module: new URL('./index.js', import.meta.url).href,
      exportName: 'StableDiffusion3Pipeline',
      modelDir: dir,
      loadOptions: opts,
    });
  }

  /** What the pipeline computes in (the `dtype` load option, diffusers' torch_dtype). */
  get dtype(): ComputeDtype {
    return this.transformer.dtype;
  }

  /**
   * Registers `listener` to be told the step and CFG branch before every transformer call of
   * generate() (for a cache engine). Returns the function that unregisters it.
   */
  onTransformerCall(listener: (call: TransformerCall) => void): () => void {
    return this.transformerCalls.subscribe(listener);
  }

  /** diffusers' encode_prompt: the joint and pooled embeddings of the prompt(s). The caller owns them. */
  encodePrompt(prompt: string | readonly string[], opts: { maxSequenceLength?: number } = {}): SD3PromptEmbeddings {
    if (!this.promptEncoder)
      throw new TypeError('StableDiffusion3Pipeline: this pipeline has no tokenizers / text encoders, so it takes prompt embeddings, not a prompt');
    try {
      return this.promptEncoder.encode(prompt, opts);
    } finally {
      if (this.releaseTextEncoders) this.promptEncoder.release();
    }
  }

  /** Runs the sampler, from prompts or from their embeddings. The caller owns (and disposes) the returned tensors. */
  generate(options: SD3GenerateOptions): SD3GenerateResult {
    // What the call leaves out comes from the folder's ditcache.json, then from diffusers' defaults.
    const opts = withPipelineDefaults(options, this.defaults);
    const owned: Tensor[] = [];
    try {
      return this.sample({ ...opts, ...this.textEmbeddings(opts, owned) });
    } finally {
      for (const t of owned) t.dispose();
    }
  }

  /** The embeddings generate runs on: given, or encoded from the prompts (what it encodes goes into `owned`, for the caller to dispose). */
  private textEmbeddings(opts: SD3GenerateOptions, owned: Tensor[]): Embeddings {
    if ((opts.prompt === undefined) === (opts.promptEmbeds === undefined))
      throw new TypeError('StableDiffusion3Pipeline: give either prompt or promptEmbeds (with pooledPromptEmbeds)');
    if (opts.promptEmbeds && !opts.pooledPromptEmbeds) throw new TypeError('StableDiffusion3Pipeline: promptEmbeds come with pooledPromptEmbeds');
    const encode = (prompts: string | readonly string[]): SD3PromptEmbeddings => {
      const e = this.encodePrompt(prompts, { maxSequenceLength: opts.maxSequenceLength });
      owned.push(e.promptEmbeds, e.pooledPromptEmbeds);
      return e;
    };
    const positive =
      opts.prompt === undefined ? { promptEmbeds: opts.promptEmbeds as Tensor, pooledPromptEmbeds: opts.pooledPromptEmbeds as Tensor } : encode(opts.prompt);
    const cfg = (opts.guidanceScale ?? 7) > 1;
    if (!cfg || opts.negativePromptEmbeds || !this.promptEncoder) {
      return { ...positive, negativePromptEmbeds: opts.negativePromptEmbeds, negativePooledPromptEmbeds: opts.negativePooledPromptEmbeds };
    }
    const batch = positive.promptEmbeds.shape[0];
    const negative = opts.negativePrompt ?? '';
    if (typeof negative !== 'string' && negative.length !== batch)
      throw new TypeError(`StableDiffusion3Pipeline: negativePrompt has ${negative.length} prompts for a batch of ${batch}`);
    const encoded = encode(typeof negative === 'string' ? Array<string>(batch).fill(negative) : negative);
    return { ...positive, negativePromptEmbeds: encoded.promptEmbeds, negativePooledPromptEmbeds: encoded.pooledPromptEmbeds };
  }

  private sample(opts: SD3GenerateOptions & Embeddings): SD3GenerateResult {
    const numSteps = opts.numInferenceSteps ?? 28;
    const guidanceScale = opts.guidanceScale ?? 7;
    const cfg = guidanceScale > 1;
    const [latentHeight, latentWidth] = this.latentSides(opts.height, opts.width);
    const batch = this.checkEmbeddings(opts, cfg);
    const device = opts.promptEmbeds.device;
    const patch = this.transformer.config.patch_size;
    const imageTokens = (latentHeight / patch) * (latentWidth / patch);
    const schedule = this.scheduler.schedule({
      numInferenceSteps: numSteps,
      sigmas: opts.sigmas,
      mu: this.scheduler.config.use_dynamic_shifting ? this.scheduler.dynamicShiftMu(imageTokens) : undefined,
    });
    const branch: CfgBranch = cfg ? 'batched' : 'cond';

    const scope = new TensorScope();
    try {
      const { latents: initial, seed } = this.initialLatents(opts, batch, latentHeight, latentWidth);
      // Batched CFG: the negative prompt first, as diffusers concatenates them; in the compute
      // dtype, as the pipeline's text encoders in that dtype would return them.
      const both = (negative: Tensor | undefined, positive: Tensor): Tensor =>
        cfg ? concat([(negative as Tensor).cast(this.dtype), positive.cast(this.dtype)], 0) : positive.cast(this.dtype);
      const promptEmbeds = both(opts.negativePromptEmbeds, opts.promptEmbeds);
      const pooled = both(opts.negativePooledPromptEmbeds, opts.pooledPromptEmbeds);

      // NaN / Inf in an input, as given (a 16-bit overflow of the rounded copy is the blocks'
      // Float16OverflowError), stops here, named; denoise checks each step's latents.
      checkFiniteInputs(
        {
          latents_in: opts.latents,
          prompt_embeds: opts.promptEmbeds,
          pooled_prompt_embeds: opts.pooledPromptEmbeds,
          negative_prompt_embeds: cfg ? opts.negativePromptEmbeds : undefined,
          negative_pooled_prompt_embeds: cfg ? opts.negativePooledPromptEmbeds : undefined,
        },
        numSteps,
      );
      // In float16, an overflow comes out of denoise naming the step as well as the block; NaN or
      // Inf in the latents a step returns comes out as a NonFiniteError naming the step.
      const latents = denoise({
        numSteps,
        timesteps: schedule.timesteps,
        latents: initial,
        callback: opts.callback,
        step: (step, latents, timestep) => {
          const input = cfg ? concat([latents, latents], 0) : latents;
          let velocity = this.transformerCalls.run(this.transformer, { step, numSteps, timestep, branch }, () =>
            this.transformer.forward({
              hiddenStates: input,
              encoderHiddenStates: promptEmbeds,
              pooledProjections: pooled,
              timestep: full([input.shape[0]], timestep, { device }),
            }),
          );
          if (cfg) velocity = batchedGuidance(velocity, guidanceScale);
          return schedule.step(step, velocity, latents);
        },
      });

      const image = opts.decode === false ? null : this.decodeLatents(latents);
      scope.keep(latents);
      if (image) scope.keep(image);
      return { latents, image, seed, timesteps: schedule.timesteps, sigmas: schedule.sigmas };
    } finally {
      scope.close();
    }
  }

  /**
   * Latents -> (B, height, width, 3) float32 in [0, 1]: undo the VAE scaling ((latents /
   * scaling_factor) + shift_factor, in the latents' dtype), decode (in the VAE's), denormalise.
   */
  decodeLatents(latents: Tensor): Tensor {
    return tidy(() => toImageRange(this.vae.decode(this.vae.denormalize(latents))));
  }

  /** Frees the transformer's, the VAE's and the text encoders' weights. */
  dispose(): void {
    this.promptEncoder?.dispose();
    this.transformer.dispose();
    this.vae.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** The latent height and width of an image size (default: diffusers' default size). */
  private latentSides(height?: number, width?: number): [number, number] {
    const multiple = this.vaeScaleFactor * this.transformer.config.patch_size;
    const side = (name: string, px: number | undefined): number => {
      const v = px ?? this.transformer.config.sample_size * this.vaeScaleFactor;
      if (!Number.isInteger(v) || v <= 0 || v % multiple !== 0) {
        throw new RangeError(`StableDiffusion3Pipeline: ${name} must be a positive multiple of ${multiple} (the VAE scale factor x patch_size), got ${v}`);
      }
      return v / this.vaeScaleFactor;
    };
    const sides: [number, number] = [side('height', height), side('width', width)];
    this.transformer.checkLatentSize(sides[0], sides[1]);
    return sides;
  }

  /** Checks the embeddings against the transformer and each other; returns the batch size. */
  private checkEmbeddings(opts: SD3GenerateOptions & Embeddings, cfg: boolean): number {
    const c = this.transformer.config;
    const shape = (t: Tensor): string => `(${t.shape.join(', ')})`;
    const fail = (what: string): never => {
      throw new TypeError(`StableDiffusion3Pipeline: ${what}`);
    };
    const { promptEmbeds: e, pooledPromptEmbeds: p } = opts;
    if (e.rank !== 3 || e.shape[2] !== c.joint_attention_dim) fail(`promptEmbeds must be (B, tokens, ${c.joint_attention_dim}), got ${shape(e)}`);
    const batch = e.shape[0];
    if (p.rank !== 2 || p.shape[0] !== batch || p.shape[1] !== c.pooled_projection_dim)
      fail(`pooledPromptEmbeds must be (${batch}, ${c.pooled_projection_dim}), got ${shape(p)}`);
    const negatives = [
      ['negativePromptEmbeds', opts.negativePromptEmbeds, 'promptEmbeds', e],
      ['negativePooledPromptEmbeds', opts.negativePooledPromptEmbeds, 'pooledPromptEmbeds', p],
    ] as const;
    if (cfg) {
      for (const [name, negative, positiveName, positive] of negatives) {
        // Without text encoders there is nothing to embed an empty negative prompt with, as diffusers would.
        if (!negative) fail(`guidanceScale > 1 runs classifier-free guidance: give negativePromptEmbeds and negativePooledPromptEmbeds`);
        else if (shape(negative) !== shape(positive)) fail(`${name} ${shape(negative)} must match ${positiveName} ${shape(positive)}`);
      }
    }
    return batch;
  }

  private initialLatents(opts: SD3GenerateOptions & Embeddings, batch: number, height: number, width: number): { latents: Tensor; seed: number | null } {
    const expected = [batch, this.transformer.config.in_channels, height, width];
    if (opts.latents) {
      if (opts.latents.shape.join() !== expected.join()) {
        throw new TypeError(`StableDiffusion3Pipeline: latents must be (${expected.join(', ')}) for this size, got (${opts.latents.shape.join(', ')})`);
      }
      // diffusers' prepare_latents: latents.to(dtype).
      return { latents: opts.latents.dtype === this.dtype ? opts.latents.clone() : opts.latents.cast(this.dtype), seed: null };
    }
    const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 32);
    return { latents: randnTensor(expected, seed, { device: opts.promptEmbeds.device, dtype: this.dtype }), seed };
  }
}
