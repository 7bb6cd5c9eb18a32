// diffusers' HiDreamImagePipeline: a prompt (through its two CLIPs, T5 and Llama 3.1) or prompt
// embeddings in (T5, the stacked Llama layers, the pooled CLIP embedding, and their negatives for
// classifier-free guidance), latents and an image out. The image is resized to the area of the default size,
// CFG is batched (one transformer call on [uncond, cond] per step), the transformer's output is
// negated into the flow-matching velocity, and the AutoencoderKL decodes. With `dtype` (diffusers'
// torch_dtype) the transformer, the VAE, the embeddings, the latents and the scheduler's output
// are in that dtype, as `HiDreamImagePipeline.from_pretrained(..., torch_dtype=...)` has them.
import { join } from 'node:path';

import type { CfgBranch } from '@ditcache/core';
import { TensorScope, concat, full, neg, tidy, type Device, type Tensor } from '@ditcache/cuda-runtime';
import {
  batchedGuidance,
  AutoencoderKLDecoder,
  checkFiniteInputs,
  checkPipelineFolder,
  computeDtype,
  FlowMatchEulerDiscreteScheduler,
  calculateShift,
  denoise,
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

import { HiDreamPromptEncoder, missingTextComponents, type HiDreamEncodePromptOptions, type HiDreamPromptEmbeddings } from './prompt-encoder.js';
import { HiDreamTransformer } from './transformer.js';

/** Told to onTransformerCall listeners before each transformer call of generate(): 'batched' when the call runs the batch [uncond, cond] (CFG), 'cond' without CFG. */
export type TransformerCall = PipelineTransformerCall;

/** Passed to the per-step callback after each scheduler step. */
export type StepEnd = PipelineStepEnd;

export interface HiDreamGenerateOptions {
  /** The prompt (or one per image), encoded by the folder's text encoders; or give the three prompt embeddings. */
  prompt?: string | readonly string[];
  /** The negative prompt for CFG (one for all images, or one per prompt); default "" as in diffusers, when the folder has text encoders. */
  negativePrompt?: string | readonly string[];
  /** Tokens of T5 and Llama (and of the CLIPs, up to 218) a text prompt is padded or truncated to (default 128). */
  maxSequenceLength?: number;
  /** T5 prompt embeddings (B, T5 tokens, caption_channels[0]), instead of a prompt. */
  promptEmbedsT5?: Tensor;
  /** Stacked Llama hidden states (layers, B, Llama tokens, caption_channels[1]). */
  promptEmbedsLlama3?: Tensor;
  /** Pooled CLIP embedding (B, text_emb_dim). */
  pooledPromptEmbeds?: Tensor;
  /** The negative prompt's embeddings, shaped like the prompt's; with guidanceScale > 1, these or a negative prompt (or text encoders for ""). */
  negativePromptEmbedsT5?: Tensor;
  negativePromptEmbedsLlama3?: Tensor;
  negativePooledPromptEmbeds?: Tensor;
  /** Classifier-free guidance runs when this is above 1 (default 5). */
  guidanceScale?: number;
  /**
   * Requested size in pixels (default defaultSampleSize * vaeScaleFactor). As in diffusers, the
   * size is rescaled to the area of the default size, keeping the aspect ratio, and floored to
   * multiples of 2 * vaeScaleFactor; the result says what was made.
   */
  height?: number;
  width?: number;
  /** Overrides the pipeline's defaultSampleSize (the area images are rescaled to) for this call. */
  defaultSampleSize?: number;
  /** Default 50. */
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

export interface HiDreamGenerateResult {
  /** Final latents (B, latent channels, height / vaeScaleFactor, width / vaeScaleFactor), before the VAE. */
  latents: Tensor;
  /** (B, height, width, 3) in [0, 1] (diffusers' output_type="np"), or null without decoding. */
  image: Tensor | null;
  /** The image size after rescaling to the default area. */
  height: number;
  width: number;
  /** The seed the initial noise came from, or null when latents were given. */
  seed: number | null;
  timesteps: Float32Array;
  sigmas: Float32Array;
}

/** Load options of fromPretrained. */
export interface HiDreamLoadOptions extends LoadOptions {
  /** Load the text encoders' weights with the pipeline (default: on the first prompt). */
  preloadTextEncoders?: boolean;
  /** Free the text encoders' weights after each prompt encoding (Llama 3.1 alone is 16 GB in bf16). */
  releaseTextEncoders?: boolean;
}

/** The embeddings a run conditions on, given or encoded. */
interface HiDreamEmbeddings {
  promptEmbedsT5: Tensor;
  promptEmbedsLlama3: Tensor;
  pooledPromptEmbeds: Tensor;
  negativePromptEmbedsT5?: Tensor;
  negativePromptEmbedsLlama3?: Tensor;
  negativePooledPromptEmbeds?: Tensor;
}

const COMPONENTS = [
  ['transformer', 'HiDreamImageTransformer2DModel'],
  ['vae', 'AutoencoderKL'],
  ['scheduler', 'FlowMatchEulerDiscreteScheduler'],
] as const;

/** Python's float floor division a // b (fmod-based; it can differ from floor(a / b) by one). */
function pythonFloorDiv(a: number, b: number): number {
  const mod = a % b;
  let quotient = (a - mod) / b;
  if (mod !== 0 && b < 0 !== mod < 0) quotient -= 1;
  const floored = Math.floor(quotient);
  return quotient - floored > 0.5 ? floored + 1 : floored;
}

export class HiDreamPipeline implements DiffusionPipeline<HiDreamGenerateOptions, HiDreamGenerateResult, TransformerCall> {
  readonly transformer: HiDreamTransformer;
  readonly vae: AutoencoderKLDecoder;
  readonly scheduler: FlowMatchEulerDiscreteScheduler;
  /** Image pixels per latent pixel along each side. */
  readonly vaeScaleFactor: number;
  /**
   * diffusers' default_sample_size: the default image side in latent pixels. Every image is
   * rescaled to the area (defaultSampleSize * vaeScaleFactor)^2.
   */
  defaultSampleSize = 128;
  /** The folder's recommended settings (its ditcache.json), which generate() uses where its options give none. */
  readonly defaults: PipelineDefaults;
  /** The text encoders (null when the folder has none: prompts must come as embeddings). */
  readonly textEncoders: HiDreamPromptEncoder | null;
  private readonly releaseTextEncoders: boolean;
  private readonly transformerCalls = new TransformerCallAnnouncer<TransformerCall>();

  /** `defaults`: settings for generate() where its options give none (fromPretrained reads them from the folder's ditcache.json). */
  constructor(components: {
    transformer: HiDreamTransformer;
    vae: AutoencoderKLDecoder;
    scheduler: FlowMatchEulerDiscreteScheduler;
    defaults?: PipelineDefaults;
    textEncoders?: HiDreamPromptEncoder | null;
    /** Free the text encoders' weights after each prompt encoding. */
    releaseTextEncoders?: boolean;
  }) {
    this.transformer = components.transformer;
    this.textEncoders = components.textEncoders ?? null;
    this.releaseTextEncoders = components.releaseTextEncoders ?? false;
    this.vae = components.vae;
    this.scheduler = components.scheduler;
    this.defaults = components.defaults ?? {};
    this.vaeScaleFactor = this.vae.scaleFactor;
    if (this.vae.dtype !== this.transformer.dtype) {
      throw new TypeError(
        `HiDreamPipeline: the transformer computes in ${this.transformer.dtype} but the VAE in ${this.vae.dtype}; load both with the same dtype`,
      );
    }
    const { in_channels: inChannels } = this.transformer.config;
    const latentChannels = this.vae.config.latent_channels;
    if (inChannels !== latentChannels || this.transformer.outChannels !== latentChannels) {
      throw new TypeError(
        `HiDreamPipeline: the transformer takes ${inChannels} and returns ${this.transformer.outChannels} channels; the VAE's latents have ${latentChannels}`,
      );
    }
  }

  /**
   * Loads a diffusers HiDream-I1 folder: `transformer/`, `vae/` and `scheduler/`, checked against
   * `model_index.json` when there is one, and the four tokenizers and text encoders when the
   * folder has them all (their weights load on the first prompt unless `preloadTextEncoders`).
   * `opts.dtype` ('float32' by default, 'bfloat16', 'float16') is what every model computes in.
   * The folder's `ditcache.json`, when there is one, gives the settings generate() uses where its
   * options give none.
   */
  static fromPretrained(dir: string, opts: HiDreamLoadOptions = {}): HiDreamPipeline {
    const dtype = computeDtype(opts.dtype, 'HiDreamPipeline.fromPretrained: dtype');
    checkPipelineFolder(dir, 'HiDreamImagePipeline', COMPONENTS);
    const defaults = readPipelineDefaults(dir);
    const scheduler = FlowMatchEulerDiscreteScheduler.fromFolder(join(dir, 'scheduler'));
    const loadOpts: LoadOptions = { device: opts.device, weightDtype: opts.weightDtype, dtype };
    const transformer = HiDreamTransformer.load(join(dir, 'transformer'), loadOpts);
    let vae: AutoencoderKLDecoder | undefined;
    let textEncoders: HiDreamPromptEncoder | null = null;
    try {
      vae = AutoencoderKLDecoder.load(join(dir, 'vae'), loadOpts);
      if (missingTextComponents(dir).length === 0) {
        textEncoders = new HiDreamPromptEncoder(dir, { device: opts.device, dtype });
        if (opts.preloadTextEncoders) textEncoders.load();
      }
      return new HiDreamPipeline({ transformer, vae, scheduler, defaults, textEncoders, releaseTextEncoders: opts.releaseTextEncoders });
    } catch (e) {
      textEncoders?.dispose();
      vae?.dispose();
      transformer.dispose();
      throw e;
    }
  }
  /**
   * Loads the pipeline in a worker thread: `generate` then returns a promise and never blocks
   * the event loop, reports progress as events, and stops on an AbortSignal. `enableCache`,
   * `summary` and `disableCache` work on the returned object as on a local pipeline.
   */
  static spawn(dir: string, opts: HiDreamLoadOptions = {}): Promise<RemotePipeline<HiDreamGenerateOptions, HiDreamGenerateResult>> {
    return RemotePipeline.open({ module: '@ditcache/adapter-hidream', exportName: 'HiDreamPipeline', modelDir: dir, loadOptions: opts });
  }

  /** What the pipeline computes in (the `dtype` load option, diffusers' torch_dtype). */
  get dtype(): ComputeDtype {
    return this.transformer.dtype;
  }

  /** diffusers' encode_prompt for one prompt or a batch (the caller owns the tensors); releases the encoders' weights after, with releaseTextEncoders. */
  encodePrompt(prompt: string | readonly string[], opts: HiDreamEncodePromptOptions = {}): HiDreamPromptEmbeddings {
    const encoders = this.requireTextEncoders();
    try {
      return encoders.encode(prompt, opts);
    } finally {
      if (this.releaseTextEncoders) encoders.release();
    }
  }

  private requireTextEncoders(): HiDreamPromptEncoder {
    if (!this.textEncoders) {
      throw new TypeError(
        `HiDreamPipeline: cannot encode a prompt: the folder has no ${TEXT_FOLDERS}; give promptEmbedsT5, promptEmbedsLlama3 and pooledPromptEmbeds instead`,
      );
    }
    return this.textEncoders;
  }

  /**
   * Registers `listener` to be told the step and CFG branch before every transformer call of
   * generate() (for a cache engine). Returns the function that unregisters it.
   */
  onTransformerCall(listener: (call: TransformerCall) => void): () => void {
    return this.transformerCalls.subscribe(listener);
  }

  /**
   * The image size generate() makes for a requested one: rescaled to the area of the default
   * size and floored to multiples of 2 * vaeScaleFactor, with diffusers' float arithmetic.
   */
  imageSize(height?: number, width?: number, defaultSampleSize = this.defaultSampleSize): { height: number; width: number } {
    const side = defaultSampleSize * this.vaeScaleFactor;
    const division = 2 * this.vaeScaleFactor;
    const check = (name: string, v: number): number => {
      if (!Number.isInteger(v) || v <= 0) throw new RangeError(`HiDreamPipeline: ${name} must be a positive integer, got ${v}`);
      return v;
    };
    const h = check('height', height ?? side);
    const w = check('width', width ?? side);
    const scale = Math.sqrt((side * side) / (w * h));
    const fit = (v: number): number => Math.trunc(pythonFloorDiv(v * scale, division) * division);
    const out = { height: fit(h), width: fit(w) };
    if (out.height <= 0 || out.width <= 0) {
      throw new RangeError(`HiDreamPipeline: ${h}x${w} rescaled to the default area gives ${out.height}x${out.width}; the aspect ratio is too extreme`);
    }
    return out;
  }

  /** Runs the sampler. The caller owns (and disposes) the returned tensors. */
  generate(options: HiDreamGenerateOptions): HiDreamGenerateResult {
    // What the call leaves out comes from the folder's ditcache.json, then from diffusers' defaults.
    const opts = withPipelineDefaults(options, this.defaults);
    const numSteps = opts.numInferenceSteps ?? 50;
    const guidanceScale = opts.guidanceScale ?? 5;
    const cfg = guidanceScale > 1;
    const { height, width } = this.imageSize(opts.height, opts.width, opts.defaultSampleSize);
    checkPromptInputs(opts);
    const schedule = this.scheduler.schedule({ numInferenceSteps: numSteps, sigmas: opts.sigmas, mu: calculateShift(this.transformer.maxSeq) });
    const branch: CfgBranch = cfg ? 'batched' : 'cond';

    const scope = new TensorScope();
    try {
      const embeds = this.resolveEmbeddings(opts, cfg);
      const batch = this.checkEmbeddings(embeds, cfg);
      const device = embeds.promptEmbedsT5.device;
      const { latents: initial, seed } = this.initialLatents(opts, batch, height, width, device);
      // Batched CFG: the negative prompt first, as diffusers concatenates them; in the compute
      // dtype, as the pipeline's text encoders in that dtype would return them.
      const both = (negative: Tensor | undefined, positive: Tensor, dim: number): Tensor =>
        cfg ? concat([(negative as Tensor).cast(this.dtype), positive.cast(this.dtype)], dim) : positive.cast(this.dtype);
      const t5 = both(embeds.negativePromptEmbedsT5, embeds.promptEmbedsT5, 0);
      const llama = both(embeds.negativePromptEmbedsLlama3, embeds.promptEmbedsLlama3, 1);
      const pooled = both(embeds.negativePooledPromptEmbeds, embeds.pooledPromptEmbeds, 0);

      // NaN / Inf in an input, as given (a 16-bit overflow of the rounded copy is the blocks'
      // Float16OverflowError), stops here, named; denoise checks each step's latents.
      checkFiniteInputs(
        {
          latents_in: opts.latents,
          prompt_embeds_t5: embeds.promptEmbedsT5,
          prompt_embeds_llama3: embeds.promptEmbedsLlama3,
          pooled_prompt_embeds: embeds.pooledPromptEmbeds,
          negative_prompt_embeds_t5: cfg ? embeds.negativePromptEmbedsT5 : undefined,
          negative_prompt_embeds_llama3: cfg ? embeds.negativePromptEmbedsLlama3 : undefined,
          negative_pooled_prompt_embeds: cfg ? embeds.negativePooledPromptEmbeds : undefined,
        },
        numSteps,
      );
      // The rotary tables depend only on the latent size and the prompt length: made once per call.
      const rotary = this.transformer.rotaryEmbedding(initial.shape, t5.shape[1] + 2 * llama.shape[2], device);
      const latents = denoise({
        numSteps,
        timesteps: schedule.timesteps,
        latents: initial,
        callback: opts.callback,
        step: (step, latents, timestep) => {
          const input = cfg ? concat([latents, latents], 0) : latents;
          const prediction = this.transformerCalls.run(this.transformer, { step, numSteps, timestep, branch }, () =>
            this.transformer.forward({
              hiddenStates: input,
              timesteps: full([input.shape[0]], timestep, { device }),
              encoderHiddenStatesT5: t5,
              encoderHiddenStatesLlama3: llama,
              pooledEmbeds: pooled,
              rotary,
            }),
          );
          let velocity = neg(prediction);
          if (cfg) velocity = batchedGuidance(velocity, guidanceScale);
          return schedule.step(step, velocity, latents);
        },
      });

      const image = opts.decode === false ? null : this.decodeLatents(latents);
      scope.keep(latents);
      if (image) scope.keep(image);
      return { latents, image, height, width, seed, timesteps: schedule.timesteps, sigmas: schedule.sigmas };
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
    this.transformer.dispose();
    this.vae.dispose();
    this.textEncoders?.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  /**
   * The embeddings generate runs on: the given ones, or those of the prompt and, under CFG, of
   * the negative prompt (diffusers' "" when none is given and the folder has text encoders),
   * encoded here in the caller's tensor scope.
   */
  private resolveEmbeddings(opts: HiDreamGenerateOptions, cfg: boolean): HiDreamEmbeddings {
    const encodeOpts = { maxSequenceLength: opts.maxSequenceLength };
    const givenNegative =
      opts.negativePromptEmbedsT5 !== undefined || opts.negativePromptEmbedsLlama3 !== undefined || opts.negativePooledPromptEmbeds !== undefined;
    const needsNegative = cfg && !givenNegative && (opts.negativePrompt !== undefined || this.textEncoders !== null);
    const encoders = opts.prompt !== undefined || needsNegative ? this.requireTextEncoders() : null;
    let positive: HiDreamPromptEmbeddings | null = null;
    let negative: HiDreamPromptEmbeddings | null = null;
    try {
      positive = opts.prompt === undefined ? null : (encoders as HiDreamPromptEncoder).encode(opts.prompt, encodeOpts);
      const batch = positive ? positive.promptEmbedsT5.shape[0] : (opts.promptEmbedsT5 as Tensor).shape[0];
      if (needsNegative) {
        const given = opts.negativePrompt ?? '';
        const texts = typeof given === 'string' ? Array<string>(batch).fill(given) : (given as readonly string[]);
        if (texts.length !== batch) throw new TypeError(`HiDreamPipeline: ${texts.length} negative prompts for a batch of ${batch}`);
        negative = (encoders as HiDreamPromptEncoder).encode(texts, encodeOpts);
      }
    } finally {
      // Both prompts are encoded before the weights go, so CFG loads them once.
      if (encoders && this.releaseTextEncoders) encoders.release();
    }
    return {
      promptEmbedsT5: positive?.promptEmbedsT5 ?? (opts.promptEmbedsT5 as Tensor),
      promptEmbedsLlama3: positive?.promptEmbedsLlama3 ?? (opts.promptEmbedsLlama3 as Tensor),
      pooledPromptEmbeds: positive?.pooledPromptEmbeds ?? (opts.pooledPromptEmbeds as Tensor),
      negativePromptEmbedsT5: negative?.promptEmbedsT5 ?? opts.negativePromptEmbedsT5,
      negativePromptEmbedsLlama3: negative?.promptEmbedsLlama3 ?? opts.negativePromptEmbedsLlama3,
      negativePooledPromptEmbeds: negative?.pooledPromptEmbeds ?? opts.negativePooledPromptEmbeds,
    };
  }

  /** Checks the embeddings against the transformer and each other; returns the batch size. */
  private checkEmbeddings(opts: HiDreamEmbeddings, cfg: boolean): number {
    const c = this.transformer.config;
    const [t5Width, llamaWidth] = c.caption_channels;
    const shape = (t: Tensor): string => `(${t.shape.join(', ')})`;
    const fail = (what: string): never => {
      throw new TypeError(`HiDreamPipeline: ${what}`);
    };
    const { promptEmbedsT5: t5, promptEmbedsLlama3: llama, pooledPromptEmbeds: pooled } = opts;
    if (t5.rank !== 3 || t5.shape[2] !== t5Width) fail(`promptEmbedsT5 must be (B, tokens, ${t5Width}), got ${shape(t5)}`);
    const batch = t5.shape[0];
    if (llama.rank !== 4 || llama.shape[1] !== batch || llama.shape[3] !== llamaWidth) {
      fail(`promptEmbedsLlama3 must be stacked Llama layers (layers, ${batch}, tokens, ${llamaWidth}), got ${shape(llama)}`);
    }
    const deepest = Math.max(...c.llama_layers);
    if (llama.shape[0] <= deepest) fail(`promptEmbedsLlama3 stacks ${llama.shape[0]} Llama layers, but the transformer's llama_layers reads layer ${deepest}`);
    if (pooled.rank !== 2 || pooled.shape[0] !== batch || pooled.shape[1] !== c.text_emb_dim)
      fail(`pooledPromptEmbeds must be (${batch}, ${c.text_emb_dim}), got ${shape(pooled)}`);
    const negatives = [
      ['negativePromptEmbedsT5', opts.negativePromptEmbedsT5, 'promptEmbedsT5', t5],
      ['negativePromptEmbedsLlama3', opts.negativePromptEmbedsLlama3, 'promptEmbedsLlama3', llama],
      ['negativePooledPromptEmbeds', opts.negativePooledPromptEmbeds, 'pooledPromptEmbeds', pooled],
    ] as const;
    if (cfg) {
      for (const [name, negative, positiveName, positive] of negatives) {
        // Only a folder without text encoders gets here: with them, diffusers' "" was encoded.
        if (!negative) fail(`guidanceScale > 1 runs classifier-free guidance: give ${negatives.map(([n]) => n).join(', ')}`);
        else if (shape(negative) !== shape(positive)) fail(`${name} ${shape(negative)} must match ${positiveName} ${shape(positive)}`);
      }
    }
    return batch;
  }

  private initialLatents(opts: HiDreamGenerateOptions, batch: number, height: number, width: number, device: Device): { latents: Tensor; seed: number | null } {
    const expected = [batch, this.transformer.config.in_channels, height / this.vaeScaleFactor, width / this.vaeScaleFactor];
    if (opts.latents) {
      if (opts.latents.shape.join() !== expected.join()) {
        throw new TypeError(`HiDreamPipeline: latents must be (${expected.join(', ')}) for a ${height}x${width} image, got (${opts.latents.shape.join(', ')})`);
      }
      // In the compute dtype, as diffusers' 16-bit pipeline needs them (its latents take the pooled embedding's dtype).
      return { latents: opts.latents.dtype === this.dtype ? opts.latents.clone() : opts.latents.cast(this.dtype), seed: null };
    }
    const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 32);
    return { latents: randnTensor(expected, seed, { device, dtype: this.dtype }), seed };
  }
}

const TEXT_FOLDERS = 'tokenizer/ ... tokenizer_4/ and text_encoder/ ... text_encoder_4/ folders';

/** A prompt or embeddings, not both; a negative prompt or negative embeddings, not both. */
function checkPromptInputs(opts: HiDreamGenerateOptions): void {
  const embeds = [opts.promptEmbedsT5, opts.promptEmbedsLlama3, opts.pooledPromptEmbeds];
  if (opts.prompt !== undefined && embeds.some((e) => e !== undefined)) {
    throw new TypeError('HiDreamPipeline: give either prompt or promptEmbedsT5 / promptEmbedsLlama3 / pooledPromptEmbeds, not both');
  }
  if (opts.prompt === undefined && embeds.some((e) => e === undefined)) {
    throw new TypeError('HiDreamPipeline: give a prompt, or all of promptEmbedsT5, promptEmbedsLlama3 and pooledPromptEmbeds');
  }
  const negativeEmbeds = [opts.negativePromptEmbedsT5, opts.negativePromptEmbedsLlama3, opts.negativePooledPromptEmbeds];
  if (opts.negativePrompt !== undefined && negativeEmbeds.some((e) => e !== undefined)) {
    throw new TypeError('HiDreamPipeline: give either negativePrompt or the negative prompt embeddings, not both');
  }
  if (opts.maxSequenceLength !== undefined && opts.prompt === undefined && opts.negativePrompt === undefined) {
    throw new TypeError('HiDreamPipeline: maxSequenceLength applies to text prompts only');
  }
}
