// diffusers' LTXPipeline: a prompt (through the folder's T5) or T5 prompt embeddings and their
// attention masks in, packed latents and video frames out. Classifier-free guidance is batched as diffusers
// batches it: one transformer call per step on [negative, prompt]. The schedule is LTX-Video's:
// sigmas linspace(1, 1 / steps), shifted by a mu computed from the latent token count (dynamic
// shifting) and stretched to the terminal sigma. The frame rate scales the rotary positions along
// the frames, so it changes the result. Decoding unpacks the tokens, denormalises them with the
// VAE's per-channel mean and std, blends in noise at the decode timestep when the VAE is
// timestep-conditioned, and decodes.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';

import type { CfgBranch } from '@ditcache/core';
import { TensorScope, concat, full, tensor, tidy, type Tensor } from '@ditcache/cuda-runtime';
import {
  ConfigError,
  FlowMatchEulerDiscreteScheduler,
  RemotePipeline,
  TransformerCallAnnouncer,
  batchedGuidance,
  checkFiniteInputs,
  computeDtype,
  denoise,
  linspace,
  readJsonObject,
  readPipelineDefaults,
  toVideoRange,
  torchGenerator,
  torchRandnFrom,
  withPipelineDefaults,
  type ComputeDtype,
  type DiffusionPipeline,
  type LoadOptions,
  type Mt19937,
  type PipelineDefaults,
  type PipelineStepEnd,
  type PipelineTransformerCall,
} from '@ditcache/diffusion';

import { LtxPromptEncoder, missingTextComponents, type EncodePromptOptions, type LtxPromptEmbeddings } from './prompt-encoder.js';
import { checkPromptInputs, resolveEmbeddings } from './prompt-inputs.js';
import { LtxVideoTransformer } from './transformer.js';
import { AutoencoderKLLtxVideoDecoder, blendDecodeNoise } from './vae/decoder.js';

/** Told to onTransformerCall listeners before each transformer call: 'batched' under CFG ([negative, prompt] in one call), else 'cond'. */
export type TransformerCall = PipelineTransformerCall;
/** Passed to the per-step callback after each scheduler step. */
export type StepEnd = PipelineStepEnd;

export interface LtxGenerateOptions {
  /** The prompt (or one per video), encoded by the folder's T5; or give promptEmbeds and promptAttentionMask. */
  prompt?: string | readonly string[];
  /** T5 prompt embeddings (B, text tokens, caption_channels), instead of a prompt. */
  promptEmbeds?: Tensor;
  /** (B, text tokens): 1 for a token, 0 for padding; with promptEmbeds. */
  promptAttentionMask?: Tensor;
  /** The negative prompt of CFG (default ''; one for all videos, or one per prompt); or give negativePromptEmbeds. */
  negativePrompt?: string | readonly string[];
  /** Negative prompt embeddings for CFG, shaped like promptEmbeds, with their mask. */
  negativePromptEmbeds?: Tensor;
  negativePromptAttentionMask?: Tensor;
  /** T5 tokens a text prompt is padded or truncated to (default 128). */
  maxSequenceLength?: number;
  /** Video size in pixels, multiples of 32 (default 512 x 704). */
  height?: number;
  width?: number;
  /** Frames (default 161): (temporal ratio) k + 1 decode to that many; others are floored to it, as in diffusers. */
  numFrames?: number;
  /** diffusers' frame_rate (default: the folder's ditcache.json `fps`, else 25): scales the rotary positions along the frames. */
  frameRate?: number;
  /** Default 50. */
  numInferenceSteps?: number;
  /** CFG scale (default 3); CFG runs when it is above 1. */
  guidanceScale?: number;
  /** Initial noise, packed as the pipeline takes it: (B, latent frames x h x w, in_channels); otherwise drawn from `seed` and packed. */
  latents?: Tensor;
  /** Seed of torch-compatible noise, one generator as diffusers' torch.Generator('cpu').manual_seed(seed): the initial latents when not given, then the decode noise. */
  seed?: number;
  /** Timestep of a timestep-conditioned VAE decoder (default 0), and the share of noise blended into the latents before it (default: the timestep). */
  decodeTimestep?: number;
  decodeNoiseScale?: number;
  /** Decode the final latents to frames (default true); false is diffusers' output_type="latent". */
  decode?: boolean;
  callback?: (step: StepEnd) => void;
}

export interface LtxGenerateResult {
  /** Final packed latents (B, tokens, in_channels), before the VAE. */
  latents: Tensor;
  /** (B, frames, height, width, 3) in [0, 1] (diffusers' output_type="np"), or null without decoding. */
  video: Tensor | null;
  /** The seed the initial noise came from, or null when latents were given. */
  seed: number | null;
  timesteps: Float32Array;
  sigmas: Float32Array;
}

export interface LtxPipelineComponents {
  transformer: LtxVideoTransformer;
  vae: AutoencoderKLLtxVideoDecoder;
  scheduler: FlowMatchEulerDiscreteScheduler;
  /** Settings for generate() where its options give none (fromPretrained reads them from the folder's ditcache.json). */
  defaults?: PipelineDefaults;
  /** The tokenizer and T5, or null for a pipeline that takes embeddings only. */
  textEncoders?: LtxPromptEncoder | null;
  /** Free T5's weights after each prompt encoding. */
  releaseTextEncoders?: boolean;
  /** Why there is no text encoder, for the error a prompt gets. */
  noTextEncodersReason?: string;
}

export interface LtxLoadOptions extends LoadOptions {
  /** Load T5's weights with the pipeline (default: on the first prompt). */
  preloadTextEncoders?: boolean;
  /** Free T5's weights after each prompt encoding (they load again for the next prompt). */
  releaseTextEncoders?: boolean;
}

/** LTXPipeline's defaults. */
const DEFAULTS = { height: 512, width: 704, numFrames: 161, frameRate: 25, numInferenceSteps: 50, guidanceScale: 3 };
/** LTXPipeline.check_inputs: height and width must be multiples of this. */
const SIZE_MULTIPLE = 32;

export class LtxPipeline implements DiffusionPipeline<LtxGenerateOptions, LtxGenerateResult, TransformerCall> {
  readonly transformer: LtxVideoTransformer;
  readonly vae: AutoencoderKLLtxVideoDecoder;
  readonly scheduler: FlowMatchEulerDiscreteScheduler;
  readonly defaults: PipelineDefaults;
  /** The tokenizer and T5, or null for a pipeline that takes embeddings only. */
  readonly textEncoders: LtxPromptEncoder | null;
  private readonly releaseTextEncoders: boolean;
  private readonly noTextEncodersReason: string;
  private readonly transformerCalls = new TransformerCallAnnouncer<TransformerCall>();

  constructor(components: LtxPipelineComponents) {
    const { transformer, vae, scheduler } = components;
    this.transformer = transformer;
    this.vae = vae;
    this.scheduler = scheduler;
    this.defaults = components.defaults ?? {};
    this.textEncoders = components.textEncoders ?? null;
    this.releaseTextEncoders = components.releaseTextEncoders ?? false;
    this.noTextEncodersReason = components.noTextEncodersReason ?? 'it was built without a text encoder';
    const c = transformer.config;
    // LTXPipeline gives the transformer the latent grid itself as the rotary grid, so only unpatched latents line up.
    if (c.patch_size !== 1 || c.patch_size_t !== 1) {
      throw new TypeError(
        `LtxPipeline: the transformer's patch_size ${c.patch_size} and patch_size_t ${c.patch_size_t} must be 1 (LTXPipeline's rotary grid is the latent grid)`,
      );
    }
    const z = vae.config.latent_channels;
    if (c.in_channels !== z || c.out_channels !== z) {
      throw new TypeError(`LtxPipeline: the transformer takes ${c.in_channels} and returns ${c.out_channels} channels; the VAE's latents have ${z}`);
    }
    if (!scheduler.config.use_dynamic_shifting) throw new TypeError('LtxPipeline: the scheduler must use dynamic shifting (LTXPipeline passes mu)');
  }

  /**
   * Loads a diffusers LTX-Video folder: `model_index.json` (LTXPipeline), `transformer/`, `vae/`
   * and `scheduler/`; and, when the folder has both, `tokenizer/` and `text_encoder/` for prompts
   * (T5's weights on the first prompt, unless `preloadTextEncoders`).
   */
  static fromPretrained(dir: string, options: LtxLoadOptions = {}): LtxPipeline {
    const { preloadTextEncoders, releaseTextEncoders, ...opts } = options;
    computeDtype(opts.dtype, 'LtxPipeline.fromPretrained: dtype');
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ConfigError(`${dir}: no such pipeline folder`);
    const indexPath = join(dir, 'model_index.json');
    if (!existsSync(indexPath)) throw new ConfigError(`${dir}: no model_index.json (an LTX-Video folder's names its components)`);
    const index = readJsonObject(indexPath);
    if (index._class_name !== 'LTXPipeline') {
      throw new ConfigError(
        `${indexPath} describes ${typeof index._class_name === 'string' ? `a ${index._class_name}` : 'no _class_name'}, not an LTXPipeline`,
      );
    }
    for (const [name, cls] of [
      ['transformer', 'LTXVideoTransformer3DModel'],
      ['vae', 'AutoencoderKLLTXVideo'],
      ['scheduler', 'FlowMatchEulerDiscreteScheduler'],
    ] as const) {
      const entry = index[name];
      if (!Array.isArray(entry) || entry[1] !== cls)
        throw new ConfigError(`${indexPath}: '${name}' should be [library, "${cls}"], got ${JSON.stringify(entry)}`);
      if (!existsSync(join(dir, name))) throw new ConfigError(`${dir}: no ${name}/ folder (model_index.json lists a ${cls})`);
    }
    const scheduler = FlowMatchEulerDiscreteScheduler.fromFolder(join(dir, 'scheduler'));
    const missingText = missingTextComponents(dir);
    const textEncoders = missingText.length ? null : LtxPromptEncoder.fromPretrained(dir, { ...opts, preload: preloadTextEncoders });
    let transformer: LtxVideoTransformer | undefined;
    let vae: AutoencoderKLLtxVideoDecoder | undefined;
    try {
      transformer = LtxVideoTransformer.load(join(dir, 'transformer'), opts);
      vae = AutoencoderKLLtxVideoDecoder.load(join(dir, 'vae'), opts);
      return new LtxPipeline({
        transformer,
        vae,
        scheduler,
        defaults: readPipelineDefaults(dir),
        textEncoders,
        releaseTextEncoders,
        noTextEncodersReason: missingText.length ? `${dir} has no ${missingText.map((m) => `${m}/`).join(', ')}` : undefined,
      });
    } catch (e) {
      vae?.dispose();
      transformer?.dispose();
      textEncoders?.dispose();
      throw e;
    }
  }

  /** diffusers' _get_t5_prompt_embeds for a prompt (or a batch): embeddings, mask, token ids and the truncation warning. The caller owns the tensors. */
  encodePrompt(prompt: string | readonly string[], opts: EncodePromptOptions = {}): LtxPromptEmbeddings {
    if (!this.textEncoders)
      throw new TypeError(`LtxPipeline: cannot encode a prompt: ${this.noTextEncodersReason}; give promptEmbeds and promptAttentionMask instead`);
    try {
      return this.textEncoders.encode(prompt, opts);
    } finally {
      if (this.releaseTextEncoders) this.textEncoders.release();
    }
  }

  /** Loads the pipeline in a worker thread (see RemotePipeline); `enableCache` works on the returned object as on a local pipeline. */
  static spawn(dir: string, opts: LtxLoadOptions = {}): Promise<RemotePipeline<LtxGenerateOptions, LtxGenerateResult>> {
    return RemotePipeline.open({ module: new URL('./index.js', import.meta.url).href, exportName: 'LtxPipeline', modelDir: dir, loadOptions: opts });
  }

  /** What the transformer computes in; the VAE decodes in float32. */
  get dtype(): ComputeDtype {
    return this.transformer.dtype;
  }

  onTransformerCall(listener: (call: TransformerCall) => void): () => void {
    return this.transformerCalls.subscribe(listener);
  }

  /**
   * The (latent frames, h, w) grid of a video size, which is checked here: sizes must be multiples
   * of 32 (LTXPipeline.check_inputs); like diffusers, a frame count that is not (temporal ratio) k
   * + 1 and a size the spatial ratio does not divide are floored.
   */
  latentGrid(height: number, width: number, numFrames: number): [number, number, number] {
    const spatial = this.vae.spatialCompressionRatio;
    const temporal = this.vae.temporalCompressionRatio;
    for (const [name, px] of [
      ['height', height],
      ['width', width],
    ] as const) {
      if (!Number.isInteger(px) || px < Math.max(SIZE_MULTIPLE, spatial) || px % SIZE_MULTIPLE !== 0) {
        throw new RangeError(`LtxPipeline: ${name} must be a multiple of ${SIZE_MULTIPLE} of at least ${Math.max(SIZE_MULTIPLE, spatial)}, got ${px}`);
      }
    }
    if (!Number.isInteger(numFrames) || numFrames < 1) throw new RangeError(`LtxPipeline: numFrames must be a positive integer, got ${numFrames}`);
    return [Math.floor((numFrames - 1) / temporal) + 1, Math.floor(height / spatial), Math.floor(width / spatial)];
  }

  /** Runs the sampler. The caller owns (and disposes) the returned tensors. */
  generate(options: LtxGenerateOptions): LtxGenerateResult {
    const opts = withPipelineDefaults(options, this.defaults);
    checkPromptInputs(opts);
    const cfg = (opts.guidanceScale ?? DEFAULTS.guidanceScale) > 1;
    const { inputs, owned } = resolveEmbeddings(opts, cfg, this.textEncoders, this.noTextEncodersReason, this.releaseTextEncoders);
    try {
      return this.sample({ ...opts, ...inputs, prompt: undefined, negativePrompt: undefined, maxSequenceLength: undefined });
    } finally {
      for (const t of owned) t.dispose();
    }
  }

  /** The sampler on prompt embeddings, with the folder's defaults applied. */
  private sample(opts: LtxGenerateOptions): LtxGenerateResult {
    const numSteps = opts.numInferenceSteps ?? DEFAULTS.numInferenceSteps;
    if (!Number.isInteger(numSteps) || numSteps < 1) throw new RangeError(`LtxPipeline: numInferenceSteps must be a positive integer, got ${numSteps}`);
    // A folder's ditcache.json `fps` is its frame rate: the CLI's --fps is LTX's frame_rate too.
    const frameRate = opts.frameRate ?? this.defaults.fps ?? DEFAULTS.frameRate;
    if (!(frameRate > 0)) throw new RangeError(`LtxPipeline: frameRate must be positive, got ${frameRate}`);
    const guidanceScale = opts.guidanceScale ?? DEFAULTS.guidanceScale;
    const grid = this.latentGrid(opts.height ?? DEFAULTS.height, opts.width ?? DEFAULTS.width, opts.numFrames ?? DEFAULTS.numFrames);
    const tokens = grid[0] * grid[1] * grid[2];
    const { batch, cfg } = this.checkEmbeddings(opts, guidanceScale);
    const schedule = this.scheduler.schedule({
      numInferenceSteps: numSteps,
      sigmas: linspace(1, 1 / numSteps, numSteps),
      mu: this.scheduler.dynamicShiftMu(tokens),
    });
    const promptEmbeds0 = opts.promptEmbeds as Tensor;
    const promptMask0 = opts.promptAttentionMask as Tensor;
    const device = promptEmbeds0.device;
    const branch: CfgBranch = cfg ? 'batched' : 'cond';
    // LTXPipeline's rope_interpolation_scale: (temporal ratio / frame rate, spatial ratio, spatial ratio).
    const ropeScale: [number, number, number] = [
      this.vae.temporalCompressionRatio / frameRate,
      this.vae.spatialCompressionRatio,
      this.vae.spatialCompressionRatio,
    ];

    const scope = new TensorScope();
    try {
      const dtype = this.transformer.dtype;
      const neg = opts.negativePromptEmbeds as Tensor;
      const negMask = opts.negativePromptAttentionMask as Tensor;
      const promptEmbeds = (cfg ? concat([neg, promptEmbeds0], 0) : promptEmbeds0).cast(dtype);
      const mask = cfg ? concat([negMask.cast('float32'), promptMask0.cast('float32')], 0) : promptMask0;
      const shape = [batch, tokens, this.transformer.config.in_channels];
      const seed = opts.seed ?? (opts.latents ? null : Math.floor(Math.random() * 2 ** 32));
      // diffusers' one generator: it draws the initial latents (unless given), then the decode noise.
      const generator = seed === null ? null : torchGenerator(seed);
      const initial = this.initialLatents(opts.latents, shape, grid, generator, device);
      const rotary = this.transformer.ropeTables(grid, ropeScale, device);
      checkFiniteInputs(
        {
          latents_in: opts.latents,
          prompt_embeds: opts.promptEmbeds,
          negative_prompt_embeds: cfg ? opts.negativePromptEmbeds : undefined,
        },
        numSteps,
      );
      const latents = denoise<StepEnd>({
        numSteps,
        timesteps: schedule.timesteps,
        latents: initial,
        callback: opts.callback,
        step: (step, latents, t) => {
          const input = (cfg ? concat([latents, latents], 0) : latents).cast(dtype);
          const calls = input.shape[0];
          const timestep = full([calls], t, { device });
          const velocity = this.transformerCalls
            .run(this.transformer, { step, numSteps, timestep: t, branch }, () =>
              this.transformer.forward({
                hiddenStates: input,
                encoderHiddenStates: promptEmbeds,
                timestep,
                encoderAttentionMask: mask,
                numFrames: grid[0],
                height: grid[1],
                width: grid[2],
                ropeInterpolationScale: ropeScale,
                rotary,
              }),
            )
            .cast('float32');
          return schedule.step(step, cfg ? batchedGuidance(velocity, guidanceScale) : velocity, latents);
        },
      });
      const video = opts.decode === false ? null : this.decodeLatents(latents, grid, opts, generator);
      scope.keep(latents);
      if (video) scope.keep(video);
      return { latents, video, seed: opts.latents ? null : seed, timesteps: schedule.timesteps, sigmas: schedule.sigmas };
    } finally {
      scope.close();
    }
  }

  /** Packed latents (B, F * h * w, C) -> (B, C, F, h, w). */
  unpackLatents(latents: Tensor, grid: readonly [number, number, number]): Tensor {
    const [frames, height, width] = grid;
    return tidy(() => latents.reshape(latents.shape[0], frames, height, width, -1).permute(0, 4, 1, 2, 3).contiguous());
  }

  /** (B, C, F, h, w) -> packed (B, F * h * w, C), as LTXPipeline._pack_latents with patch sizes 1. */
  packLatents(latents: Tensor): Tensor {
    const [batch, channels] = latents.shape;
    return tidy(() => latents.permute(0, 2, 3, 4, 1).contiguous().reshape(batch, -1, channels));
  }

  /**
   * Final packed latents -> frames (B, frames, height, width, 3) in [0, 1]: unpack, denormalise,
   * blend in the decode noise (timestep-conditioned VAEs), decode in float32, rescale.
   */
  decodeLatents(
    latents: Tensor,
    grid: readonly [number, number, number],
    opts: Pick<LtxGenerateOptions, 'decodeTimestep' | 'decodeNoiseScale'> = {},
    generator: Mt19937 | null = null,
  ): Tensor {
    return tidy(() => {
      let z = this.vae.denormalize(this.unpackLatents(latents.cast('float32'), grid));
      const batch = z.shape[0];
      let timestep: number[] | null = null;
      if (this.vae.config.timestep_conditioning) {
        const t = opts.decodeTimestep ?? 0;
        const scale = opts.decodeNoiseScale ?? t;
        timestep = Array(batch).fill(t);
        // diffusers draws the noise whatever its scale; with scale 0 it leaves the latents as they are.
        if (scale !== 0) {
          if (!generator) throw new TypeError("LtxPipeline: decode noise (decodeNoiseScale > 0) is drawn from the seed's generator: give seed with latents");
          const noise = tensor(torchRandnFrom(generator, z.size), z.shape, { device: z.device });
          z = blendDecodeNoise(z, noise, Array(batch).fill(scale));
        }
      } else if (opts.decodeTimestep !== undefined || opts.decodeNoiseScale !== undefined) {
        throw new TypeError('LtxPipeline: decodeTimestep / decodeNoiseScale apply to a timestep-conditioned VAE; this one has no timestep_conditioning');
      }
      return toVideoRange(this.vae.decode(z, timestep));
    });
  }

  dispose(): void {
    this.transformer.dispose();
    this.vae.dispose();
    this.textEncoders?.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  private checkEmbeddings(opts: LtxGenerateOptions, guidanceScale: number): { batch: number; cfg: boolean } {
    const captions = this.transformer.config.caption_channels;
    const shape = (t: Tensor): string => `(${t.shape.join(', ')})`;
    const { promptEmbeds: e, promptAttentionMask: m, negativePromptEmbeds: ne, negativePromptAttentionMask: nm } = opts;
    if (!e || !m) throw new TypeError('LtxPipeline: give a prompt, or both promptEmbeds and promptAttentionMask');
    if (e.rank !== 3 || e.shape[2] !== captions) throw new TypeError(`LtxPipeline: promptEmbeds must be (B, tokens, ${captions}), got ${shape(e)}`);
    const [batch, tokens] = e.shape;
    if (m.shape.join() !== [batch, tokens].join()) throw new TypeError(`LtxPipeline: promptAttentionMask must be (${batch}, ${tokens}), got ${shape(m)}`);
    const cfg = guidanceScale > 1;
    // resolveEmbeddings gave CFG its negative pair.
    if (cfg && ne && nm) {
      // diffusers concatenates the pair along the batch, so it must match the prompt's shape.
      if (ne.shape.join() !== e.shape.join()) throw new TypeError(`LtxPipeline: negativePromptEmbeds must be ${shape(e)} like promptEmbeds, got ${shape(ne)}`);
      if (nm.shape.join() !== m.shape.join())
        throw new TypeError(`LtxPipeline: negativePromptAttentionMask must be ${shape(m)} like promptAttentionMask, got ${shape(nm)}`);
    }
    return { batch, cfg };
  }

  private initialLatents(
    given: Tensor | undefined,
    shape: number[],
    grid: readonly [number, number, number],
    generator: Mt19937 | null,
    device: Tensor['device'],
  ): Tensor {
    if (given) {
      if (given.shape.join() !== shape.join()) {
        throw new TypeError(`LtxPipeline: latents must be packed (${shape.join(', ')}) for this size and frame count, got (${given.shape.join(', ')})`);
      }
      return given.cast('float32').clone();
    }
    // diffusers draws (B, C, F, h, w) and packs it.
    const [batch, , channels] = shape;
    const shape5 = [batch, channels, ...grid];
    return tidy(() =>
      this.packLatents(
        tensor(
          torchRandnFrom(
            generator as Mt19937,
            shape5.reduce((a, b) => a * b, 1),
          ),
          shape5,
          { device },
        ),
      ),
    );
  }
}
