// diffusers' HunyuanVideoPipeline: a prompt (through its Llama 3 and CLIP-L text encoders) or
// prompt embeddings, pooled embeddings and attention masks in, latents and video frames out.
// Embedded guidance (guidance_scale x 1000) conditions the one transformer call per step; true
// CFG, with a negative prompt (or its triple) and true_cfg_scale above 1, adds an uncond call.
// `dtype: 'bfloat16'` (or 'float16') loads the transformer and the text encoders in that dtype
// (the VAE stays float32): the latents start float32 and take the transformer's dtype after the
// first step, as diffusers' scheduler step returns them.
import { join } from 'node:path';

import type { CfgBranch } from '@ditcache/core';
import { TensorScope, div, full, mul, tidy, type Device, type Tensor } from '@ditcache/cuda-runtime';
import {
  checkFiniteInputs,
  checkPipelineFolder,
  classifierFreeGuidance,
  computeDtype,
  denoise,
  FlowMatchEulerDiscreteScheduler,
  linspace,
  randnTensor,
  readPipelineDefaults,
  RemotePipeline,
  toVideoRange,
  TransformerCallAnnouncer,
  withPipelineDefaults,
  type ComputeDtype,
  type DiffusionPipeline,
  type LoadOptions,
  type PipelineDefaults,
  type PipelineStepEnd,
  type PipelineTransformerCall,
} from '@ditcache/diffusion';

import {
  HunyuanVideoPromptEncoder,
  checkMaxSequenceLength,
  missingTextComponents,
  type HunyuanVideoEncodePromptOptions,
  type HunyuanVideoPromptEmbeddings,
} from './prompt-encoder.js';
import { HunyuanVideoTransformer } from './transformer.js';
import { AutoencoderKLHunyuanVideoDecoder, type SpatialTiling } from './vae/decoder.js';

/** Told to onTransformerCall listeners before each transformer call of generate(): 'cond' (always first), then 'uncond' under true CFG. */
export type TransformerCall = PipelineTransformerCall;
/** Passed to the per-step callback after each scheduler step. */
export type StepEnd = PipelineStepEnd;

export interface HunyuanVideoGenerateOptions {
  /** The prompt (or one per video), encoded by the folder's Llama 3 and CLIP-L; or give the prompt triple. */
  prompt?: string | readonly string[];
  /** The negative prompt of true CFG (one for all videos, or one per prompt); or give the negative triple. */
  negativePrompt?: string | readonly string[];
  /** Llama tokens of a text prompt after the template's first 95 (diffusers' max_sequence_length, default 256). */
  maxSequenceLength?: number;
  /** Llama prompt embeddings (B, text tokens, text_embed_dim), instead of a prompt. */
  promptEmbeds?: Tensor;
  /** CLIP pooled prompt embedding (B, pooled_projection_dim). */
  pooledPromptEmbeds?: Tensor;
  /** (B, text tokens): 1 for a prompt token, 0 for padding. */
  promptAttentionMask?: Tensor;
  /** The negative triple of true CFG: it runs when trueCfgScale is above 1 and these (or negativePrompt) are given. */
  negativePromptEmbeds?: Tensor;
  negativePooledPromptEmbeds?: Tensor;
  negativePromptAttentionMask?: Tensor;
  /** Video size in pixels, multiples of 16 (default 720 x 1280). */
  height?: number;
  width?: number;
  /** Frames, 4k + 1 (default 129); the latents have (frames - 1) / 4 + 1. */
  numFrames?: number;
  /** Default 50. */
  numInferenceSteps?: number;
  /** Custom sigmas, one per step (default linspace(1, 0, steps + 1) without the last, as HunyuanVideoPipeline). */
  sigmas?: readonly number[];
  /** Embedded guidance (default 6): the transformer is conditioned on guidanceScale x 1000 (guidance_embeds models). */
  guidanceScale?: number;
  /** True CFG scale (default 1, off): with a negative prompt or triple, uncond + scale (cond - uncond). */
  trueCfgScale?: number;
  /** Initial noise (B, in_channels, latent frames, height / 8, width / 8); otherwise drawn from `seed`. */
  latents?: Tensor;
  /** Seed of torch-compatible initial noise (torch.Generator('cpu').manual_seed(seed)); random when neither this nor latents is given. */
  seed?: number;
  /** Decode the final latents to frames (default true); false is diffusers' output_type="latent". */
  decode?: boolean;
  callback?: (step: StepEnd) => void;
}

export interface HunyuanVideoGenerateResult {
  /** Final latents (B, in_channels, latent frames, h, w), before the VAE. */
  latents: Tensor;
  /** (B, frames, height, width, 3) in [0, 1] (diffusers' output_type="np"), or null without decoding. */
  video: Tensor | null;
  /** The seed the initial noise came from, or null when latents were given. */
  seed: number | null;
  timesteps: Float32Array;
  sigmas: Float32Array;
}

export interface HunyuanVideoPipelineComponents {
  transformer: HunyuanVideoTransformer;
  vae: AutoencoderKLHunyuanVideoDecoder;
  scheduler: FlowMatchEulerDiscreteScheduler;
  /** Settings for generate() where its options give none (fromPretrained reads them from the folder's ditcache.json). */
  defaults?: PipelineDefaults;
  /** The text encoders (none: prompts must come as embeddings). */
  textEncoders?: HunyuanVideoPromptEncoder | null;
  /** Free the text encoders' weights after each prompt encoding. */
  releaseTextEncoders?: boolean;
}

/** `dtype` (diffusers' torch_dtype) is what the transformer and the text encoders compute in; the VAE decoder stays float32. */
export interface HunyuanVideoLoadOptions extends LoadOptions {
  /** Load the text encoders' weights with the pipeline (default: on the first prompt). */
  preloadTextEncoders?: boolean;
  /** Free the text encoders' weights after each prompt encoding (the Llama 3 8B text encoder is 16 GB in bf16). */
  releaseTextEncoders?: boolean;
  /**
   * Decode in spatial tiles (diffusers' `pipe.vae.enable_tiling()`, which the HunyuanVideo model
   * card uses): true for diffusers' tile sizes, or the sizes. Off by default, as in diffusers.
   */
  vaeTiling?: boolean | SpatialTiling;
}

/** The triples a run conditions on, given or encoded; the negative one under true CFG. */
interface HunyuanVideoEmbeddings {
  positive: Triple;
  negative: Triple | null;
}
type Triple = [embeds: Tensor, pooled: Tensor, mask: Tensor];

/** HunyuanVideoPipeline's defaults. */
const DEFAULTS = { height: 720, width: 1280, numFrames: 129, numInferenceSteps: 50, guidanceScale: 6, trueCfgScale: 1 };
/** diffusers' check_inputs: height and width must be multiples of this. */
const SIZE_MULTIPLE = 16;
const COMPONENTS = [
  ['transformer', 'HunyuanVideoTransformer3DModel'],
  ['vae', 'AutoencoderKLHunyuanVideo'],
  ['scheduler', 'FlowMatchEulerDiscreteScheduler'],
] as const;

export class HunyuanVideoPipeline implements DiffusionPipeline<HunyuanVideoGenerateOptions, HunyuanVideoGenerateResult, TransformerCall> {
  readonly transformer: HunyuanVideoTransformer;
  readonly vae: AutoencoderKLHunyuanVideoDecoder;
  readonly scheduler: FlowMatchEulerDiscreteScheduler;
  /** The folder's recommended settings (its ditcache.json), which generate() uses where its options give none. */
  readonly defaults: PipelineDefaults;
  /** The text encoders (null when the folder has none: prompts must come as embeddings). */
  readonly textEncoders: HunyuanVideoPromptEncoder | null;
  private readonly releaseTextEncoders: boolean;
  private readonly transformerCalls = new TransformerCallAnnouncer<TransformerCall>();

  constructor(components: HunyuanVideoPipelineComponents) {
    const { transformer, vae, scheduler } = components;
    this.transformer = transformer;
    this.vae = vae;
    this.scheduler = scheduler;
    this.defaults = components.defaults ?? {};
    this.textEncoders = components.textEncoders ?? null;
    this.releaseTextEncoders = components.releaseTextEncoders ?? false;
    const z = vae.config.latent_channels;
    if (transformer.config.in_channels !== z || transformer.outChannels !== z) {
      throw new TypeError(
        `HunyuanVideoPipeline: the transformer takes ${transformer.config.in_channels} and returns ${transformer.outChannels} channels; the VAE's latents have ${z}`,
      );
    }
  }

  /**
   * Loads a diffusers HunyuanVideo folder: `transformer/`, `vae/` and `scheduler/`, checked
   * against `model_index.json` when there is one, the two tokenizers and text encoders when the
   * folder has them all (their weights load on the first prompt unless `preloadTextEncoders`),
   * and the folder's `ditcache.json`, when there is one.
   */
  static fromPretrained(dir: string, opts: HunyuanVideoLoadOptions = {}): HunyuanVideoPipeline {
    const dtype = computeDtype(opts.dtype, 'HunyuanVideoPipeline.fromPretrained: dtype');
    checkPipelineFolder(dir, 'HunyuanVideoPipeline', COMPONENTS);
    const defaults = readPipelineDefaults(dir);
    const scheduler = FlowMatchEulerDiscreteScheduler.fromFolder(join(dir, 'scheduler'));
    const loadOpts: LoadOptions = { device: opts.device, weightDtype: opts.weightDtype, dtype };
    const transformer = HunyuanVideoTransformer.load(join(dir, 'transformer'), loadOpts);
    let vae: AutoencoderKLHunyuanVideoDecoder | undefined;
    let textEncoders: HunyuanVideoPromptEncoder | null = null;
    try {
      vae = AutoencoderKLHunyuanVideoDecoder.load(join(dir, 'vae'), { ...loadOpts, dtype: 'float32' });
      if (opts.vaeTiling) vae.enableTiling(opts.vaeTiling === true ? {} : opts.vaeTiling);
      if (missingTextComponents(dir).length === 0) {
        textEncoders = new HunyuanVideoPromptEncoder(dir, { device: opts.device, dtype });
        if (opts.preloadTextEncoders) textEncoders.load();
      }
      return new HunyuanVideoPipeline({ transformer, vae, scheduler, defaults, textEncoders, releaseTextEncoders: opts.releaseTextEncoders });
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
  static spawn(dir: string, opts: HunyuanVideoLoadOptions = {}): Promise<RemotePipeline<HunyuanVideoGenerateOptions, HunyuanVideoGenerateResult>> {
    return RemotePipeline.open({ module: '@ditcache/adapter-hunyuan-video', exportName: 'HunyuanVideoPipeline', modelDir: dir, loadOptions: opts });
  }

  /** What the transformer computes in (the `dtype` load option, diffusers' torch_dtype); the VAE decodes in float32. */
  get dtype(): ComputeDtype {
    return this.transformer.dtype;
  }

  /** diffusers' encode_prompt for one prompt or a batch (the caller owns the tensors); releases the encoders' weights after, with releaseTextEncoders. */
  encodePrompt(prompt: string | readonly string[], opts: HunyuanVideoEncodePromptOptions = {}): HunyuanVideoPromptEmbeddings {
    const encoders = this.requireTextEncoders();
    try {
      return encoders.encode(prompt, opts);
    } finally {
      if (this.releaseTextEncoders) encoders.release();
    }
  }

  private requireTextEncoders(): HunyuanVideoPromptEncoder {
    if (!this.textEncoders) {
      throw new TypeError(
        'HunyuanVideoPipeline: cannot encode a prompt: the folder has no tokenizer/, text_encoder/, tokenizer_2/ and text_encoder_2/ folders; give promptEmbeds, pooledPromptEmbeds and promptAttentionMask instead',
      );
    }
    return this.textEncoders;
  }

  /** Registers `listener` to be told the step and CFG branch before every transformer call of generate(). Returns the function that unregisters it. */
  onTransformerCall(listener: (call: TransformerCall) => void): () => void {
    return this.transformerCalls.subscribe(listener);
  }

  /** Runs the sampler on a prompt or prompt embeddings. The caller owns (and disposes) the returned tensors. */
  generate(options: HunyuanVideoGenerateOptions): HunyuanVideoGenerateResult {
    // What the call leaves out comes from the folder's ditcache.json, then from diffusers' defaults.
    const opts = withPipelineDefaults(options, this.defaults);
    const numSteps = opts.numInferenceSteps ?? DEFAULTS.numInferenceSteps;
    if (!Number.isInteger(numSteps) || numSteps < 1)
      throw new RangeError(`HunyuanVideoPipeline: numInferenceSteps must be a positive integer, got ${numSteps}`);
    const latentShape = this.latentShape(opts);
    checkPromptInputs(opts);
    const trueCfgScale = opts.trueCfgScale ?? DEFAULTS.trueCfgScale;
    // diffusers: a negative counts when it is a prompt, or when its embeddings and pooled embeddings are given.
    const hasNegative = opts.negativePrompt !== undefined || (opts.negativePromptEmbeds !== undefined && opts.negativePooledPromptEmbeds !== undefined);
    const trueCfg = hasNegative && trueCfgScale > 1;
    const guidanceScale = opts.guidanceScale ?? DEFAULTS.guidanceScale;
    const sigmas = opts.sigmas ?? linspace(1, 0, numSteps + 1).slice(0, numSteps);
    if (sigmas.length !== numSteps) throw new RangeError(`HunyuanVideoPipeline: sigmas has ${sigmas.length} entries for ${numSteps} steps`);
    const schedule = this.scheduler.schedule({ numInferenceSteps: numSteps, sigmas });

    const scope = new TensorScope();
    try {
      const embeds = this.resolveEmbeddings(opts, trueCfg);
      const batch = this.checkEmbeddings(embeds);
      const device = embeds.positive[0].device;
      const { latents: initial, seed } = this.initialLatents(opts, [batch, ...latentShape], device);
      // The rotary tables depend only on the latent grid: made once per call, not per step.
      const rotary = this.transformer.rotaryEmbedding(this.transformer.patchGrid(initial.shape), device);
      // diffusers: torch.tensor([guidance_scale] * B, dtype=transformer_dtype) * 1000.
      const guidance = this.transformer.config.guidance_embeds ? mul(full([batch], guidanceScale, { device, dtype: this.dtype }), 1000) : undefined;
      const call = (step: number, branch: CfgBranch, latents: Tensor, timestep: Tensor, text: Triple): Tensor =>
        this.transformerCalls.run(this.transformer, { step, numSteps, timestep: schedule.timesteps[step], branch }, () =>
          this.transformer.forward({
            hiddenStates: latents,
            timestep,
            encoderHiddenStates: text[0],
            pooledProjections: text[1],
            encoderAttentionMask: text[2],
            guidance,
            rotary,
          }),
        );
      const { positive: cond, negative: uncond } = embeds;

      // NaN / Inf in an input stops here, named; denoise checks each step's latents.
      checkFiniteInputs(
        {
          latents_in: opts.latents,
          prompt_embeds: cond[0],
          pooled_prompt_embeds: cond[1],
          negative_prompt_embeds: uncond?.[0],
          negative_pooled_prompt_embeds: uncond?.[1],
        },
        numSteps,
      );
      const latents = denoise({
        numSteps,
        timesteps: schedule.timesteps,
        latents: initial,
        callback: opts.callback,
        step: (step, latents, t) => {
          // diffusers: t.expand(B).to(latents.dtype), float32 at first, the transformer's dtype once a step has run.
          const timestep = full([batch], t, { device, dtype: latents.dtype });
          let noise = call(step, 'cond', latents, timestep, cond);
          if (uncond) noise = classifierFreeGuidance(call(step, 'uncond', latents, timestep, uncond), noise, trueCfgScale);
          return schedule.step(step, noise, latents);
        },
      });

      const video = opts.decode === false ? null : this.decodeLatents(latents);
      scope.keep(latents);
      if (video) scope.keep(video);
      return { latents, video, seed, timesteps: schedule.timesteps, sigmas: schedule.sigmas };
    } finally {
      scope.close();
    }
  }

  /** Latents (B, C, latent frames, h, w) of any dtype -> frames (B, frames, height, width, 3) in [0, 1]: unscale, decode (in float32), rescale. */
  decodeLatents(latents: Tensor): Tensor {
    return tidy(() => toVideoRange(this.vae.decode(div(latents.cast('float32'), this.vae.config.scaling_factor))));
  }

  /** Frees the weights of the transformer, the VAE and the text encoders. */
  dispose(): void {
    this.transformer.dispose();
    this.vae.dispose();
    this.textEncoders?.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** (channels, latent frames, h, w) for the requested video size, which is checked here. */
  private latentShape(opts: HunyuanVideoGenerateOptions): [number, number, number, number] {
    const spatial = this.vae.scaleFactorSpatial;
    const p = this.transformer.config.patch_size;
    const side = (name: string, px: number): number => {
      if (!Number.isInteger(px) || px <= 0 || px % SIZE_MULTIPLE !== 0 || px % (spatial * p) !== 0) {
        throw new RangeError(`HunyuanVideoPipeline: ${name} must be a positive multiple of ${Math.max(SIZE_MULTIPLE, spatial * p)}, got ${px}`);
      }
      return px / spatial;
    };
    const height = side('height', opts.height ?? DEFAULTS.height);
    const width = side('width', opts.width ?? DEFAULTS.width);
    const frames = opts.numFrames ?? DEFAULTS.numFrames;
    const temporal = this.vae.scaleFactorTemporal;
    // diffusers rounds other counts down to the frames the VAE makes; this refuses them, as the Wan pipeline does.
    if (!Number.isInteger(frames) || frames < 1 || (frames - 1) % temporal !== 0) {
      throw new RangeError(`HunyuanVideoPipeline: numFrames must be ${temporal}k + 1 (1, ${1 + temporal}, ${1 + 2 * temporal}, ..., 129), got ${frames}`);
    }
    const latentFrames = (frames - 1) / temporal + 1;
    if (latentFrames % this.transformer.config.patch_size_t !== 0) {
      throw new RangeError(`HunyuanVideoPipeline: ${latentFrames} latent frames do not split into patches of ${this.transformer.config.patch_size_t} frames`);
    }
    return [this.transformer.config.in_channels, latentFrames, height, width];
  }

  /**
   * The triples generate runs on: the given ones, or those of the prompt and, under true CFG, of
   * the negative prompt, encoded here in the caller's tensor scope.
   */
  private resolveEmbeddings(opts: HunyuanVideoGenerateOptions, trueCfg: boolean): HunyuanVideoEmbeddings {
    const encodeNegative = trueCfg && opts.negativePrompt !== undefined;
    const encoders = opts.prompt !== undefined || encodeNegative ? this.requireTextEncoders() : null;
    const encodeOpts = { maxSequenceLength: checkMaxSequenceLength(opts.maxSequenceLength, 'HunyuanVideoPipeline') };
    const triple = (e: HunyuanVideoPromptEmbeddings): Triple => [e.promptEmbeds, e.pooledPromptEmbeds, e.promptAttentionMask];
    let positive: Triple | null = null;
    let negative: Triple | null = null;
    try {
      if (opts.prompt !== undefined) positive = triple((encoders as HunyuanVideoPromptEncoder).encode(opts.prompt, encodeOpts));
      if (encodeNegative) {
        const batch = positive ? positive[0].shape[0] : (opts.promptEmbeds as Tensor).shape[0];
        const given = opts.negativePrompt as string | readonly string[];
        const texts = typeof given === 'string' ? Array<string>(batch).fill(given) : given;
        if (texts.length !== batch) throw new TypeError(`HunyuanVideoPipeline: ${texts.length} negative prompts for a batch of ${batch}`);
        negative = triple((encoders as HunyuanVideoPromptEncoder).encode(texts, encodeOpts));
      }
    } finally {
      // Both prompts are encoded before the weights go, so true CFG loads them once.
      if (encoders && this.releaseTextEncoders) encoders.release();
    }
    const given = (e: Tensor | undefined, p: Tensor | undefined, m: Tensor | undefined) => [e, p, m] as Triple;
    return {
      positive: positive ?? given(opts.promptEmbeds, opts.pooledPromptEmbeds, opts.promptAttentionMask),
      negative: trueCfg ? (negative ?? given(opts.negativePromptEmbeds, opts.negativePooledPromptEmbeds, opts.negativePromptAttentionMask)) : null,
    };
  }

  /** Checks the triples' shapes against the transformer and each other; returns the batch. */
  private checkEmbeddings({ positive, negative }: HunyuanVideoEmbeddings): number {
    const c = this.transformer.config;
    const shape = (t: Tensor): string => `(${t.shape.join(', ')})`;
    const fail = (what: string): never => {
      throw new TypeError(`HunyuanVideoPipeline: ${what}`);
    };
    const check = (names: [string, string, string], [e, p, m]: Triple, batch: number | null): number => {
      const missing = names.filter((_, i) => [e, p, m][i] === undefined);
      if (missing.length) fail(`${names.join(', ')} come together: give all three (missing ${missing.join(', ')})`);
      const b = batch ?? e.shape[0];
      if (e.rank !== 3 || e.shape[0] !== b || e.shape[2] !== c.text_embed_dim) fail(`${names[0]} must be (${b}, tokens, ${c.text_embed_dim}), got ${shape(e)}`);
      if (p.rank !== 2 || p.shape[0] !== b || p.shape[1] !== c.pooled_projection_dim)
        fail(`${names[1]} must be (${b}, ${c.pooled_projection_dim}), got ${shape(p)}`);
      if (m.rank !== 2 || m.shape[0] !== b || m.shape[1] !== e.shape[1]) fail(`${names[2]} must be (${b}, ${e.shape[1]}), got ${shape(m)}`);
      return b;
    };
    const batch = check(['promptEmbeds', 'pooledPromptEmbeds', 'promptAttentionMask'], positive, null);
    if (negative) check(['negativePromptEmbeds', 'negativePooledPromptEmbeds', 'negativePromptAttentionMask'], negative, batch);
    return batch;
  }

  private initialLatents(opts: HunyuanVideoGenerateOptions, shape: number[], device: Device): { latents: Tensor; seed: number | null } {
    if (opts.latents) {
      if (opts.latents.shape.join() !== shape.join()) {
        throw new TypeError(
          `HunyuanVideoPipeline: latents must be (${shape.join(', ')}) for this size, frame count and batch, got (${opts.latents.shape.join(', ')})`,
        );
      }
      // diffusers: latents.to(float32).
      return { latents: opts.latents.cast('float32').clone(), seed: null };
    }
    const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 32);
    return { latents: randnTensor(shape, seed, { device }), seed };
  }
}

/** A prompt or the prompt triple, not both; a negative prompt or the negative triple, not both; maxSequenceLength only with text. */
function checkPromptInputs(opts: HunyuanVideoGenerateOptions): void {
  const embeds = [opts.promptEmbeds, opts.pooledPromptEmbeds, opts.promptAttentionMask];
  if (opts.prompt !== undefined && embeds.some((e) => e !== undefined)) {
    throw new TypeError('HunyuanVideoPipeline: give either prompt or promptEmbeds / pooledPromptEmbeds / promptAttentionMask, not both');
  }
  if (opts.prompt === undefined && opts.promptEmbeds === undefined) {
    throw new TypeError(
      'HunyuanVideoPipeline: give a prompt (the folder needs tokenizer/, text_encoder/, tokenizer_2/ and text_encoder_2/), or promptEmbeds, pooledPromptEmbeds and promptAttentionMask',
    );
  }
  const negativeEmbeds = [opts.negativePromptEmbeds, opts.negativePooledPromptEmbeds, opts.negativePromptAttentionMask];
  if (opts.negativePrompt !== undefined && negativeEmbeds.some((e) => e !== undefined)) {
    throw new TypeError(
      'HunyuanVideoPipeline: give either negativePrompt or negativePromptEmbeds / negativePooledPromptEmbeds / negativePromptAttentionMask, not both',
    );
  }
  if (opts.maxSequenceLength !== undefined && opts.prompt === undefined && opts.negativePrompt === undefined) {
    throw new TypeError('HunyuanVideoPipeline: maxSequenceLength applies to text prompts only');
  }
}
