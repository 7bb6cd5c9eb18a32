// diffusers' HunyuanVideoPipeline without its text encoders (Llama and CLIP): prompt embeddings,
// pooled embeddings and attention masks in, latents and video frames out. Embedded guidance
// (guidance_scale x 1000) conditions the one transformer call per step; true CFG, with a negative
// triple and true_cfg_scale above 1, adds an uncond call. `dtype: 'bfloat16'` (or 'float16')
// loads the transformer in that dtype (the VAE stays float32): the latents start float32 and take
// the transformer's dtype after the first step, as diffusers' scheduler step returns them.
import { join } from 'node:path';

import type { CfgBranch } from '@ditcache/core';
import { TensorScope, div, full, mul, tidy, type Tensor } from '@ditcache/cuda-runtime';
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

import { HunyuanVideoTransformer } from './transformer.js';
import { AutoencoderKLHunyuanVideoDecoder, type SpatialTiling } from './vae/decoder.js';

/** Told to onTransformerCall listeners before each transformer call of generate(): 'cond' (always first), then 'uncond' under true CFG. */
export type TransformerCall = PipelineTransformerCall;
/** Passed to the per-step callback after each scheduler step. */
export type StepEnd = PipelineStepEnd;

export interface HunyuanVideoGenerateOptions {
  /** Llama prompt embeddings (B, text tokens, text_embed_dim). */
  promptEmbeds: Tensor;
  /** CLIP pooled prompt embedding (B, pooled_projection_dim). */
  pooledPromptEmbeds: Tensor;
  /** (B, text tokens): 1 for a prompt token, 0 for padding. */
  promptAttentionMask: Tensor;
  /** The negative triple of true CFG: it runs when all three are given and trueCfgScale is above 1. */
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
  /** True CFG scale (default 1, off): with the negative triple, uncond + scale (cond - uncond). */
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
}

/** `dtype` (diffusers' torch_dtype) is what the transformer computes in; the VAE decoder stays float32. */
export interface HunyuanVideoLoadOptions extends LoadOptions {
  /**
   * Decode in spatial tiles (diffusers' `pipe.vae.enable_tiling()`, which the HunyuanVideo model
   * card uses): true for diffusers' tile sizes, or the sizes. Off by default, as in diffusers.
   */
  vaeTiling?: boolean | SpatialTiling;
}

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
  private readonly transformerCalls = new TransformerCallAnnouncer<TransformerCall>();

  constructor(components: HunyuanVideoPipelineComponents) {
    const { transformer, vae, scheduler } = components;
    this.transformer = transformer;
    this.vae = vae;
    this.scheduler = scheduler;
    this.defaults = components.defaults ?? {};
    const z = vae.config.latent_channels;
    if (transformer.config.in_channels !== z || transformer.outChannels !== z) {
      throw new TypeError(
        `HunyuanVideoPipeline: the transformer takes ${transformer.config.in_channels} and returns ${transformer.outChannels} channels; the VAE's latents have ${z}`,
      );
    }
  }

  /**
   * Loads a diffusers HunyuanVideo folder: `transformer/`, `vae/` and `scheduler/`, checked
   * against `model_index.json` when there is one (the text encoders it may list are not loaded:
   * the pipeline takes embeddings), and the folder's `ditcache.json`, when there is one.
   */
  static fromPretrained(dir: string, opts: HunyuanVideoLoadOptions = {}): HunyuanVideoPipeline {
    const dtype = computeDtype(opts.dtype, 'HunyuanVideoPipeline.fromPretrained: dtype');
    checkPipelineFolder(dir, 'HunyuanVideoPipeline', COMPONENTS);
    const defaults = readPipelineDefaults(dir);
    const scheduler = FlowMatchEulerDiscreteScheduler.fromFolder(join(dir, 'scheduler'));
    const transformer = HunyuanVideoTransformer.load(join(dir, 'transformer'), { ...opts, dtype });
    try {
      const vae = AutoencoderKLHunyuanVideoDecoder.load(join(dir, 'vae'), { ...opts, dtype: 'float32' });
      if (opts.vaeTiling) vae.enableTiling(opts.vaeTiling === true ? {} : opts.vaeTiling);
      return new HunyuanVideoPipeline({ transformer, vae, scheduler, defaults });
    } catch (e) {
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

  /** Registers `listener` to be told the step and CFG branch before every transformer call of generate(). Returns the function that unregisters it. */
  onTransformerCall(listener: (call: TransformerCall) => void): () => void {
    return this.transformerCalls.subscribe(listener);
  }

  /** Runs the sampler on prompt embeddings. The caller owns (and disposes) the returned tensors. */
  generate(options: HunyuanVideoGenerateOptions): HunyuanVideoGenerateResult {
    // What the call leaves out comes from the folder's ditcache.json, then from diffusers' defaults.
    const opts = withPipelineDefaults(options, this.defaults);
    const numSteps = opts.numInferenceSteps ?? DEFAULTS.numInferenceSteps;
    if (!Number.isInteger(numSteps) || numSteps < 1)
      throw new RangeError(`HunyuanVideoPipeline: numInferenceSteps must be a positive integer, got ${numSteps}`);
    const latentShape = this.latentShape(opts);
    const { batch, trueCfg } = this.checkEmbeddings(opts);
    const trueCfgScale = opts.trueCfgScale ?? DEFAULTS.trueCfgScale;
    const guidanceScale = opts.guidanceScale ?? DEFAULTS.guidanceScale;
    const sigmas = opts.sigmas ?? linspace(1, 0, numSteps + 1).slice(0, numSteps);
    if (sigmas.length !== numSteps) throw new RangeError(`HunyuanVideoPipeline: sigmas has ${sigmas.length} entries for ${numSteps} steps`);
    const device = opts.promptEmbeds.device;
    const schedule = this.scheduler.schedule({ numInferenceSteps: numSteps, sigmas });

    const scope = new TensorScope();
    try {
      const { latents: initial, seed } = this.initialLatents(opts, [batch, ...latentShape]);
      // The rotary tables depend only on the latent grid: made once per call, not per step.
      const rotary = this.transformer.rotaryEmbedding(this.transformer.patchGrid(initial.shape), device);
      // diffusers: torch.tensor([guidance_scale] * B, dtype=transformer_dtype) * 1000.
      const guidance = this.transformer.config.guidance_embeds ? mul(full([batch], guidanceScale, { device, dtype: this.dtype }), 1000) : undefined;
      const call = (step: number, branch: CfgBranch, latents: Tensor, timestep: Tensor, text: [Tensor, Tensor, Tensor]): Tensor =>
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
      const cond: [Tensor, Tensor, Tensor] = [opts.promptEmbeds, opts.pooledPromptEmbeds, opts.promptAttentionMask];
      const uncond = trueCfg
        ? ([opts.negativePromptEmbeds, opts.negativePooledPromptEmbeds, opts.negativePromptAttentionMask] as [Tensor, Tensor, Tensor])
        : null;

      // NaN / Inf in an input stops here, named; denoise checks each step's latents.
      checkFiniteInputs(
        {
          latents_in: opts.latents,
          prompt_embeds: opts.promptEmbeds,
          pooled_prompt_embeds: opts.pooledPromptEmbeds,
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

  /** Frees the weights of the transformer and the VAE. */
  dispose(): void {
    this.transformer.dispose();
    this.vae.dispose();
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

  /** Checks the embeddings' shapes; true CFG runs with the whole negative triple and trueCfgScale above 1. */
  private checkEmbeddings(opts: HunyuanVideoGenerateOptions): { batch: number; trueCfg: boolean } {
    const c = this.transformer.config;
    const shape = (t: Tensor): string => `(${t.shape.join(', ')})`;
    const fail = (what: string): never => {
      throw new TypeError(`HunyuanVideoPipeline: ${what}`);
    };
    const check = (names: [string, string, string], e: Tensor | undefined, p: Tensor | undefined, m: Tensor | undefined, batch: number | null): number => {
      if (!e || !p || !m) fail(`${names.join(', ')} come together: give all three (missing ${names.filter((_, i) => ![e, p, m][i]).join(', ')})`);
      const [te, tp, tm] = [e, p, m] as [Tensor, Tensor, Tensor];
      const b = batch ?? te.shape[0];
      if (te.rank !== 3 || te.shape[0] !== b || te.shape[2] !== c.text_embed_dim)
        fail(`${names[0]} must be (${b}, tokens, ${c.text_embed_dim}), got ${shape(te)}`);
      if (tp.rank !== 2 || tp.shape[0] !== b || tp.shape[1] !== c.pooled_projection_dim)
        fail(`${names[1]} must be (${b}, ${c.pooled_projection_dim}), got ${shape(tp)}`);
      if (tm.rank !== 2 || tm.shape[0] !== b || tm.shape[1] !== te.shape[1]) fail(`${names[2]} must be (${b}, ${te.shape[1]}), got ${shape(tm)}`);
      return b;
    };
    if (!opts.promptEmbeds) fail('promptEmbeds is required (this pipeline has no text encoders)');
    const batch = check(
      ['promptEmbeds', 'pooledPromptEmbeds', 'promptAttentionMask'],
      opts.promptEmbeds,
      opts.pooledPromptEmbeds,
      opts.promptAttentionMask,
      null,
    );
    // diffusers: a negative prompt counts when its embeddings and pooled embeddings are given.
    const hasNegative = opts.negativePromptEmbeds !== undefined && opts.negativePooledPromptEmbeds !== undefined;
    const trueCfg = hasNegative && (opts.trueCfgScale ?? DEFAULTS.trueCfgScale) > 1;
    if (trueCfg) {
      check(
        ['negativePromptEmbeds', 'negativePooledPromptEmbeds', 'negativePromptAttentionMask'],
        opts.negativePromptEmbeds,
        opts.negativePooledPromptEmbeds,
        opts.negativePromptAttentionMask,
        batch,
      );
    }
    return { batch, trueCfg };
  }

  private initialLatents(opts: HunyuanVideoGenerateOptions, shape: number[]): { latents: Tensor; seed: number | null } {
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
    return { latents: randnTensor(shape, seed, { device: opts.promptEmbeds.device }), seed };
  }
}
