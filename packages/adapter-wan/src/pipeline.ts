// diffusers' WanPipeline without its text encoder: prompt embeddings in, latents and video frames
// out. Wan 2.1 denoises with one transformer; Wan 2.2 hands the low-noise steps (timesteps below
// boundary_ratio * num_train_timesteps) to a second expert, transformer_2, with its own guidance
// scale. Classifier-free guidance runs the transformer twice per step, cond then uncond.
// `dtype: 'bfloat16'` (or 'float16') loads the transformers in that dtype and keeps the VAE and the
// text encoder in float32, the Wan model card's recipe for diffusers: the prompt embeddings and the
// latents go to the transformer in its dtype, guidance combines its outputs in that dtype, the
// scheduler steps as diffusers' does on them, and the latents reach the VAE in float32.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';

import type { CfgBranch } from '@ditcache/core';
import { TensorScope, full, tidy, type Tensor } from '@ditcache/cuda-runtime';
import {
  AutoencoderKLWanDecoder,
  checkFiniteInputs,
  classifierFreeGuidance,
  computeDtype,
  ConfigError,
  denoise,
  FlowMatchEulerDiscreteScheduler,
  UniPCMultistepScheduler,
  randnTensor,
  readJsonObject,
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
  type SamplingSchedule,
} from '@ditcache/diffusion';

import { WanPromptEncoder, type WanEncodePromptOptions, type WanPromptEmbeddings } from './prompt-encoder.js';
import { WanTransformer } from './transformer.js';

/** Which transformer a call runs: the only one of Wan 2.1, or Wan 2.2's high-noise / low-noise expert. */
export type WanExpert = 'transformer' | 'transformer_2';

/** Told to onTransformerCall listeners before each transformer call of generate(): 'cond' for the prompt (always first), 'uncond' for the negative prompt under CFG. */
export interface TransformerCall extends PipelineTransformerCall {
  /** The transformer this call runs (its block list is `transformer.blocks` or `transformer_2.blocks`). */
  expert: WanExpert;
}

/** Passed to the per-step callback after each scheduler step. */
export interface StepEnd extends PipelineStepEnd {
  expert: WanExpert;
}

export interface WanGenerateOptions {
  /** The prompt (or one per video), encoded by the folder's UMT5 text encoder; or give promptEmbeds. */
  prompt?: string | readonly string[];
  /** UMT5 prompt embeddings (B, text tokens, text_dim), instead of a prompt. */
  promptEmbeds?: Tensor;
  /** The negative prompt of CFG (or one per video); "" when neither it nor negativePromptEmbeds is given, as in diffusers. */
  negativePrompt?: string | readonly string[];
  /** Negative prompt embeddings (B, text tokens, text_dim); without a text encoder, required when guidanceScale > 1. */
  negativePromptEmbeds?: Tensor;
  /** UMT5 tokens a text prompt is padded or truncated to (default 512). */
  maxSequenceLength?: number;
  /** Video size in pixels, multiples of 16 and of the VAE scale x the patch size (default 480 x 832). */
  height?: number;
  width?: number;
  /** 4k + 1 frames (default 81). */
  numFrames?: number;
  /** Default 50. */
  numInferenceSteps?: number;
  /** CFG scale of `transformer` (default 5); CFG (two calls per step) runs when it is above 1. */
  guidanceScale?: number;
  /** CFG scale of `transformer_2` (Wan 2.2 only; default guidanceScale). */
  guidanceScale2?: number;
  /** Initial noise (B, in_channels, latent frames, height / 8, width / 8); otherwise drawn from `seed`. */
  latents?: Tensor;
  /** Seed of torch-compatible initial noise (torch.Generator('cpu').manual_seed(seed)); random when neither this nor latents is given. */
  seed?: number;
  /** Decode the final latents to frames (default true); false is diffusers' output_type="latent". */
  decode?: boolean;
  callback?: (step: StepEnd) => void;
}

export interface WanGenerateResult {
  /** Final latents (B, in_channels, latent frames, h, w), before the VAE. */
  latents: Tensor;
  /** (B, frames, height, width, 3) in [0, 1] (diffusers' output_type="np"), or null without decoding. */
  video: Tensor | null;
  /** The seed the initial noise came from, or null when latents were given. */
  seed: number | null;
  timesteps: Float32Array;
  sigmas: Float32Array;
}

export type WanScheduler = FlowMatchEulerDiscreteScheduler | UniPCMultistepScheduler;

export interface WanPipelineComponents {
  transformer: WanTransformer;
  /** Wan 2.2's low-noise expert; requires boundaryRatio. */
  transformer2?: WanTransformer | null;
  vae: AutoencoderKLWanDecoder;
  scheduler: WanScheduler;
  /** Wan 2.2: transformer_2 runs the steps whose timestep is below boundaryRatio * num_train_timesteps. */
  boundaryRatio?: number | null;
  /** The tokenizer and UMT5 encoder, or null for a pipeline that takes embeddings only. */
  promptEncoder?: WanPromptEncoder | null;
  /** Free the text encoder's weights after each generate call's encoding (they load again when next needed). */
  releaseTextEncoder?: boolean;
  /** Settings for generate() where its options give none (fromPretrained reads them from the folder's ditcache.json). */
  defaults?: PipelineDefaults;
}

/**
 * `dtype` (diffusers' torch_dtype) is what the transformers compute in; the VAE decoder and the
 * text encoder stay float32 (diffusers' Wan recipe loads the VAE with torch_dtype=torch.float32).
 */
export interface WanLoadOptions extends LoadOptions {
  /** Free the text encoder's weights after each generate call's encoding (they load again when next needed). */
  releaseTextEncoder?: boolean;
}

/** WanPipeline's defaults. */
const DEFAULTS = { height: 480, width: 832, numFrames: 81, numInferenceSteps: 50, guidanceScale: 5 };

/** diffusers' WanPipeline.check_inputs: height and width must be multiples of this. */
const SIZE_MULTIPLE = 16;

export class WanPipeline implements DiffusionPipeline<WanGenerateOptions, WanGenerateResult, TransformerCall> {
  readonly transformer: WanTransformer;
  readonly transformer2: WanTransformer | null;
  readonly vae: AutoencoderKLWanDecoder;
  readonly scheduler: WanScheduler;
  readonly boundaryRatio: number | null;
  /** The tokenizer and UMT5 encoder, or null for a pipeline that takes embeddings only. */
  readonly promptEncoder: WanPromptEncoder | null;
  private readonly releaseTextEncoder: boolean;
  /** The folder's recommended settings (its ditcache.json), which generate() uses where its options give none. */
  readonly defaults: PipelineDefaults;
  private readonly transformerCalls = new TransformerCallAnnouncer<TransformerCall>();

  constructor(components: WanPipelineComponents) {
    const { transformer, transformer2 = null, vae, scheduler, boundaryRatio = null, promptEncoder = null, releaseTextEncoder = false } = components;
    this.promptEncoder = promptEncoder;
    this.releaseTextEncoder = releaseTextEncoder;
    this.defaults = components.defaults ?? {};
    this.transformer = transformer;
    this.transformer2 = transformer2;
    this.vae = vae;
    this.scheduler = scheduler;
    this.boundaryRatio = boundaryRatio;
    if (boundaryRatio !== null && !(boundaryRatio >= 0 && boundaryRatio <= 1))
      throw new RangeError(`WanPipeline: boundaryRatio must lie in [0, 1], got ${boundaryRatio}`);
    if (boundaryRatio !== null && !transformer2)
      throw new TypeError(`WanPipeline: boundaryRatio ${boundaryRatio} hands the low-noise steps to transformer2, which is missing`);
    if (boundaryRatio === null && transformer2)
      throw new TypeError('WanPipeline: transformer2 runs only below a boundaryRatio; give one (Wan 2.2) or leave transformer2 out (Wan 2.1)');
    const z = vae.config.z_dim;
    for (const [name, t] of [
      ['transformer', transformer],
      ['transformer2', transformer2],
    ] as const) {
      if (!t) continue;
      if (t.config.image_dim !== null) {
        throw new TypeError(
          `WanPipeline: ${name} is an image-to-video model (image_dim ${t.config.image_dim}); this pipeline is text-to-video, and the image-to-video pipeline (CLIP image encoder, VAE encoder) is not there yet: run the transformer itself with encoderHiddenStatesImage`,
        );
      }
      if (t.config.in_channels !== z || t.config.out_channels !== z) {
        throw new TypeError(`WanPipeline: ${name} takes ${t.config.in_channels} and returns ${t.config.out_channels} channels; the VAE's latents have ${z}`);
      }
    }
    if (
      transformer2 &&
      (transformer2.config.patch_size.join() !== transformer.config.patch_size.join() || transformer2.config.text_dim !== transformer.config.text_dim)
    ) {
      throw new TypeError('WanPipeline: transformer and transformer2 must share patch_size and text_dim');
    }
    if (transformer2 && transformer2.dtype !== transformer.dtype) {
      throw new TypeError(`WanPipeline: transformer computes in ${transformer.dtype} but transformer2 in ${transformer2.dtype}; load both with the same dtype`);
    }
  }

  /**
   * Loads a diffusers Wan folder: `model_index.json` (WanPipeline), `transformer/`, `vae/`,
   * `scheduler/`, for Wan 2.2 (a non-null boundary_ratio) `transformer_2/`, and `tokenizer/` and
   * `text_encoder/` where model_index.json lists them (prompts need them; embeddings do not). The
   * text encoder's weights load when a prompt is first encoded. The folder's `ditcache.json`, when
   * there is one, gives the settings generate() uses where its options give none.
   */
  static fromPretrained(dir: string, opts: WanLoadOptions = {}): WanPipeline {
    computeDtype(opts.dtype, 'WanPipeline.fromPretrained: dtype');
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ConfigError(`${dir}: no such pipeline folder`);
    const indexPath = join(dir, 'model_index.json');
    if (!existsSync(indexPath)) throw new ConfigError(`${dir}: no model_index.json (a Wan folder's names its components and boundary_ratio)`);
    const index = readJsonObject(indexPath);
    if (index._class_name !== 'WanPipeline') {
      throw new ConfigError(`${indexPath} describes ${typeof index._class_name === 'string' ? `a ${index._class_name}` : 'no _class_name'}, not a WanPipeline`);
    }
    const boundaryRatio = index.boundary_ratio ?? null;
    const defaults = readPipelineDefaults(dir);
    if (boundaryRatio !== null && typeof boundaryRatio !== 'number')
      throw new ConfigError(`${indexPath}: 'boundary_ratio' should be a number or null, got ${JSON.stringify(boundaryRatio)}`);
    if (index.expand_timesteps === true) throw new ConfigError(`${indexPath}: expand_timesteps (Wan 2.2 TI2V's per-token timesteps) is not supported`);
    const component = (name: string, classes: readonly string[]): string => {
      const entry = index[name];
      if (!Array.isArray(entry) || !classes.includes(entry[1] as string)) {
        throw new ConfigError(`${indexPath}: '${name}' should be [library, ${classes.map((c) => `"${c}"`).join(' | ')}], got ${JSON.stringify(entry)}`);
      }
      if (!existsSync(join(dir, name))) throw new ConfigError(`${dir}: no ${name}/ folder (model_index.json lists a ${entry[1] as string})`);
      return entry[1] as string;
    };
    component('transformer', ['WanTransformer3DModel']);
    component('vae', ['AutoencoderKLWan']);
    if (boundaryRatio !== null) {
      if (!existsSync(join(dir, 'transformer_2'))) {
        throw new ConfigError(`${dir}: boundary_ratio ${boundaryRatio} makes this a two-expert Wan 2.2 folder, but it has no transformer_2/ folder`);
      }
      component('transformer_2', ['WanTransformer3DModel']);
    }
    const schedulerClass = component('scheduler', ['FlowMatchEulerDiscreteScheduler', 'UniPCMultistepScheduler']);
    // diffusers saves [null, null] for components a pipeline was built without.
    const listed = (name: string): boolean => Array.isArray(index[name]) && (index[name] as unknown[])[1] !== null;
    if (listed('tokenizer') !== listed('text_encoder'))
      throw new ConfigError(`${indexPath}: lists only one of tokenizer and text_encoder; prompt encoding needs both`);
    if (listed('text_encoder')) {
      component('tokenizer', ['T5TokenizerFast', 'T5Tokenizer', 'AutoTokenizer']);
      component('text_encoder', ['UMT5EncoderModel', 'T5EncoderModel']);
    }
    const scheduler =
      schedulerClass === 'UniPCMultistepScheduler'
        ? UniPCMultistepScheduler.fromFolder(join(dir, 'scheduler'))
        : FlowMatchEulerDiscreteScheduler.fromFolder(join(dir, 'scheduler'));

    const loaded: Disposable[] = [];
    try {
      const transformer = WanTransformer.load(join(dir, 'transformer'), opts);
      loaded.push(transformer);
      const transformer2 = boundaryRatio === null ? null : WanTransformer.load(join(dir, 'transformer_2'), opts);
      if (transformer2) loaded.push(transformer2);
      const vae = AutoencoderKLWanDecoder.load(join(dir, 'vae'), { ...opts, dtype: 'float32' });
      loaded.push(vae);
      const promptEncoder = listed('text_encoder')
        ? new WanPromptEncoder(dir, { device: opts.device, weightDtype: opts.weightDtype, dtype: opts.dtype })
        : null;
      return new WanPipeline({
        transformer,
        transformer2,
        vae,
        scheduler,
        boundaryRatio,
        promptEncoder,
        releaseTextEncoder: opts.releaseTextEncoder,
        defaults,
      });
    } catch (e) {
      for (const part of loaded) part[Symbol.dispose]();
      throw e;
    }
  }
  /**
   * Loads the pipeline in a worker thread: `generate` then returns a promise and never blocks
   * the event loop, reports progress as events, and stops on an AbortSignal. `enableCache`,
   * `summary` and `disableCache` work on the returned object as on a local pipeline.
   */
  static spawn(dir: string, opts: WanLoadOptions = {}): Promise<RemotePipeline<WanGenerateOptions, WanGenerateResult>> {
    return RemotePipeline.open({ module: '@ditcache/adapter-wan', exportName: 'WanPipeline', modelDir: dir, loadOptions: opts });
  }

  /** What the transformers compute in (the `dtype` load option, diffusers' torch_dtype); the VAE decodes in float32. */
  get dtype(): ComputeDtype {
    return this.transformer.dtype;
  }

  /**
   * Registers `listener` to be told the step, CFG branch and expert before every transformer
   * call of generate() (for a cache engine). Returns the function that unregisters it.
   */
  onTransformerCall(listener: (call: TransformerCall) => void): () => void {
    return this.transformerCalls.subscribe(listener);
  }

  /**
   * The expert that denoises at `timestep`: transformer_2 below the boundary, transformer at or
   * above it and always in Wan 2.1. diffusers compares the float32 timestep with the boundary
   * in float32.
   */
  expertAt(timestep: number): WanExpert {
    if (this.boundaryRatio === null) return 'transformer';
    return timestep >= Math.fround(this.boundaryRatio * this.scheduler.config.num_train_timesteps) ? 'transformer' : 'transformer_2';
  }

  /**
   * diffusers' WanPipeline.encode_prompt: UMT5 embeddings of the prompt(s), zero past each
   * prompt's tokens. The caller owns the tensors. Needs a folder with a tokenizer and text encoder.
   */
  encodePrompt(prompt: string | readonly string[], opts: WanEncodePromptOptions = {}): WanPromptEmbeddings {
    if (!this.promptEncoder) throw new TypeError('WanPipeline: this pipeline has no tokenizer / text_encoder, so it takes promptEmbeds, not a prompt');
    try {
      return this.promptEncoder.encode(prompt, opts);
    } finally {
      if (this.releaseTextEncoder) this.promptEncoder.release();
    }
  }

  /** Runs the sampler, from prompts or from their embeddings. The caller owns (and disposes) the returned tensors. */
  generate(options: WanGenerateOptions): WanGenerateResult {
    // What the call leaves out comes from the folder's ditcache.json, then from diffusers' defaults.
    const opts = withPipelineDefaults(options, this.defaults);
    const text = this.textEmbeddings(opts);
    try {
      return this.sample({ ...opts, ...text.embeddings });
    } finally {
      for (const t of text.owned) t.dispose();
    }
  }

  /** The embeddings generate runs on: given, or encoded from the prompts (those it encoded are `owned`, to be disposed). */
  private textEmbeddings(opts: WanGenerateOptions): { embeddings: { promptEmbeds: Tensor; negativePromptEmbeds?: Tensor }; owned: Tensor[] } {
    if ((opts.prompt === undefined) === (opts.promptEmbeds === undefined)) throw new TypeError('WanPipeline: give either prompt or promptEmbeds');
    const cfg = (opts.guidanceScale ?? DEFAULTS.guidanceScale) > 1;
    if (opts.prompt === undefined && (!cfg || opts.negativePromptEmbeds || !this.promptEncoder)) {
      return { embeddings: { promptEmbeds: opts.promptEmbeds as Tensor, negativePromptEmbeds: opts.negativePromptEmbeds }, owned: [] };
    }
    if (opts.negativePrompt !== undefined && opts.negativePromptEmbeds) throw new TypeError('WanPipeline: give either negativePrompt or negativePromptEmbeds');
    const owned: Tensor[] = [];
    const encode = (prompts: string | readonly string[]): Tensor => {
      const { promptEmbeds, inputIds, attentionMask } = this.encodePrompt(prompts, { maxSequenceLength: opts.maxSequenceLength });
      inputIds.dispose();
      attentionMask.dispose();
      owned.push(promptEmbeds);
      return promptEmbeds;
    };
    try {
      const promptEmbeds = opts.promptEmbeds ?? encode(opts.prompt as string | readonly string[]);
      const batch = promptEmbeds.shape[0];
      let negativePromptEmbeds = opts.negativePromptEmbeds;
      if (cfg && !negativePromptEmbeds) {
        const negative = opts.negativePrompt ?? '';
        if (typeof negative !== 'string' && negative.length !== batch)
          throw new TypeError(`WanPipeline: negativePrompt has ${negative.length} prompts for a batch of ${batch}`);
        negativePromptEmbeds = encode(typeof negative === 'string' ? Array<string>(batch).fill(negative) : negative);
      }
      return { embeddings: { promptEmbeds, negativePromptEmbeds }, owned };
    } catch (e) {
      for (const t of owned) t.dispose();
      throw e;
    }
  }

  private sample(opts: WanGenerateOptions & { promptEmbeds: Tensor }): WanGenerateResult {
    const numSteps = opts.numInferenceSteps ?? DEFAULTS.numInferenceSteps;
    if (!Number.isInteger(numSteps) || numSteps < 1) throw new RangeError(`WanPipeline: numInferenceSteps must be a positive integer, got ${numSteps}`);
    const latentShape = this.latentShape(opts);
    const { batch, cfg } = this.checkEmbeddings(opts);
    // diffusers: prompt_embeds.to(transformer_dtype), once per call.
    const dtype = this.transformer.dtype;
    const guidance = {
      transformer: opts.guidanceScale ?? DEFAULTS.guidanceScale,
      transformer_2: opts.guidanceScale2 ?? opts.guidanceScale ?? DEFAULTS.guidanceScale,
    };
    const device = opts.promptEmbeds.device;
    const schedule: SamplingSchedule & Partial<Disposable> = this.scheduler.schedule({ numInferenceSteps: numSteps });

    const scope = new TensorScope();
    try {
      const promptEmbeds = opts.promptEmbeds.cast(dtype);
      const negativePromptEmbeds = opts.negativePromptEmbeds?.cast(dtype);
      const { latents: initial, seed } = this.initialLatents(opts, [batch, ...latentShape]);
      // The rotary tables depend only on the latent grid: made once per call (and expert), not per step.
      const rotaries = new Map(
        [this.transformer, this.transformer2].flatMap((m) => (m ? [[m, m.rotaryEmbedding(m.patchGrid(initial.shape), device)] as const] : [])),
      );
      const call = (step: number, branch: CfgBranch, expert: WanExpert, latents: Tensor, promptEmbeds: Tensor, timestep: Tensor): Tensor => {
        const model = expert === 'transformer' ? this.transformer : (this.transformer2 as WanTransformer);
        return this.transformerCalls.run(model, { step, numSteps, timestep: schedule.timesteps[step], branch, expert }, () =>
          model.forward({ hiddenStates: latents, timestep, encoderHiddenStates: promptEmbeds, rotary: rotaries.get(model) }),
        );
      };

      // NaN / Inf in an input, as given (a 16-bit overflow of the rounded copy is the blocks'
      // Float16OverflowError), stops here, named; denoise checks each step's latents.
      checkFiniteInputs(
        { latents_in: opts.latents, prompt_embeds: opts.promptEmbeds, negative_prompt_embeds: cfg ? opts.negativePromptEmbeds : undefined },
        numSteps,
      );
      const latents = denoise<StepEnd>({
        numSteps,
        timesteps: schedule.timesteps,
        latents: initial,
        callback: opts.callback,
        // Wan's records also say which expert made the step.
        stepEnd: ({ latents, ...end }) => ({ ...end, expert: this.expertAt(end.timestep), latents }),
        step: (step, latents, t) => {
          const expert = this.expertAt(t);
          const timestep = full([batch], t, { device });
          let noise = call(step, 'cond', expert, latents, promptEmbeds, timestep);
          if (cfg) {
            const uncond = call(step, 'uncond', expert, latents, negativePromptEmbeds as Tensor, timestep);
            noise = classifierFreeGuidance(uncond, noise, guidance[expert]);
          }
          return schedule.step(step, noise, latents);
        },
      });

      const video = opts.decode === false ? null : this.decodeLatents(latents);
      scope.keep(latents);
      if (video) scope.keep(video);
      return { latents, video, seed, timesteps: schedule.timesteps, sigmas: schedule.sigmas };
    } finally {
      scope.close();
      schedule[Symbol.dispose]?.();
    }
  }

  /** Latents (B, z_dim, latent frames, h, w) of any dtype -> frames (B, frames, height, width, 3) in [0, 1]: denormalize, decode (in float32), rescale. */
  decodeLatents(latents: Tensor): Tensor {
    return tidy(() => toVideoRange(this.vae.decode(this.vae.denormalize(latents.cast('float32')))));
  }

  /** Frees the weights of both transformers, the VAE and the text encoder. */
  dispose(): void {
    this.promptEncoder?.dispose();
    this.transformer.dispose();
    this.transformer2?.dispose();
    this.vae.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** (channels, latent frames, h, w) for the requested video size, which is checked here. */
  private latentShape(opts: WanGenerateOptions): [number, number, number, number] {
    const spatial = this.vae.scaleFactorSpatial;
    const temporal = this.vae.scaleFactorTemporal;
    const [, ph, pw] = this.transformer.config.patch_size;
    const side = (name: string, px: number, patch: number): number => {
      const multiple = lcm(SIZE_MULTIPLE, spatial * patch);
      if (!Number.isInteger(px) || px <= 0 || px % multiple !== 0)
        throw new RangeError(`WanPipeline: ${name} must be a positive multiple of ${multiple}, got ${px}`);
      return px / spatial;
    };
    const height = side('height', opts.height ?? DEFAULTS.height, ph);
    const width = side('width', opts.width ?? DEFAULTS.width, pw);
    const frames = opts.numFrames ?? DEFAULTS.numFrames;
    if (!Number.isInteger(frames) || frames < 1 || (frames - 1) % temporal !== 0) {
      throw new RangeError(`WanPipeline: numFrames must be ${temporal}k + 1 (1, ${1 + temporal}, ${1 + 2 * temporal}, ...), got ${frames}`);
    }
    return [this.transformer.config.in_channels, (frames - 1) / temporal + 1, height, width];
  }

  private checkEmbeddings(opts: WanGenerateOptions & { promptEmbeds: Tensor }): { batch: number; cfg: boolean } {
    const textDim = this.transformer.config.text_dim;
    const shape = (t: Tensor): string => `(${t.shape.join(', ')})`;
    const { promptEmbeds: e, negativePromptEmbeds: ne } = opts;
    if (e.rank !== 3 || e.shape[2] !== textDim) throw new TypeError(`WanPipeline: promptEmbeds must be (B, tokens, ${textDim}), got ${shape(e)}`);
    const batch = e.shape[0];
    if (this.boundaryRatio === null && opts.guidanceScale2 !== undefined) {
      throw new TypeError('WanPipeline: guidanceScale2 is for the second expert of Wan 2.2; this pipeline has no boundaryRatio');
    }
    const cfg = (opts.guidanceScale ?? DEFAULTS.guidanceScale) > 1;
    if (cfg && !ne) {
      throw new TypeError(
        'WanPipeline: guidanceScale > 1 runs classifier-free guidance, which needs negativePromptEmbeds (diffusers encodes "" when no negative prompt is given; this pipeline has no text encoder to do so)',
      );
    }
    if (cfg && ne && (ne.rank !== 3 || ne.shape[0] !== batch || ne.shape[2] !== textDim)) {
      throw new TypeError(`WanPipeline: negativePromptEmbeds must be (${batch}, tokens, ${textDim}), got ${shape(ne)}`);
    }
    return { batch, cfg };
  }

  private initialLatents(opts: WanGenerateOptions & { promptEmbeds: Tensor }, shape: number[]): { latents: Tensor; seed: number | null } {
    if (opts.latents) {
      if (opts.latents.shape.join() !== shape.join()) {
        throw new TypeError(`WanPipeline: latents must be (${shape.join(', ')}) for this size and frame count, got (${opts.latents.shape.join(', ')})`);
      }
      return { latents: opts.latents.clone(), seed: null };
    }
    const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 32);
    return { latents: randnTensor(shape, seed, { device: opts.promptEmbeds.device }), seed };
  }
}

function lcm(a: number, b: number): number {
  const gcd = (x: number, y: number): number => (y === 0 ? x : gcd(y, x % y));
  return (a / gcd(a, b)) * b;
}
