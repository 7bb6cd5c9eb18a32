// diffusers' HiDreamImagePipeline without its four text encoders: prompt embeddings in (T5, the
// stacked Llama layers, the pooled CLIP embedding, and their negatives for classifier-free
// guidance), latents and an image out. The image is resized to the area of the default size,
// CFG is batched (one transformer call on [uncond, cond] per step), the transformer's output is
// negated into the flow-matching velocity, and the AutoencoderKL decodes. With `dtype` (diffusers'
// torch_dtype) the transformer, the VAE, the embeddings, the latents and the scheduler's output
// are in that dtype, as `HiDreamImagePipeline.from_pretrained(..., torch_dtype=...)` has them.
import { join } from 'node:path';

import type { CfgBranch } from '@ditcache/core';
import { TensorScope, concat, full, neg, tidy, type Tensor } from '@ditcache/cuda-runtime';
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

import { HiDreamTransformer } from './transformer.js';

/** Told to onTransformerCall listeners before each transformer call of generate(): 'batched' when the call runs the batch [uncond, cond] (CFG), 'cond' without CFG. */
export type TransformerCall = PipelineTransformerCall;

/** Passed to the per-step callback after each scheduler step. */
export type StepEnd = PipelineStepEnd;

export interface HiDreamGenerateOptions {
  /** T5 prompt embeddings (B, T5 tokens, caption_channels[0]). */
  promptEmbedsT5: Tensor;
  /** Stacked Llama hidden states (layers, B, Llama tokens, caption_channels[1]). */
  promptEmbedsLlama3: Tensor;
  /** Pooled CLIP embedding (B, text_emb_dim). */
  pooledPromptEmbeds: Tensor;
  /** The negative prompt's embeddings, shaped like the prompt's; required when guidanceScale > 1. */
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
  private readonly transformerCalls = new TransformerCallAnnouncer<TransformerCall>();

  /** `defaults`: settings for generate() where its options give none (fromPretrained reads them from the folder's ditcache.json). */
  constructor(components: {
    transformer: HiDreamTransformer;
    vae: AutoencoderKLDecoder;
    scheduler: FlowMatchEulerDiscreteScheduler;
    defaults?: PipelineDefaults;
  }) {
    this.transformer = components.transformer;
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
   * `model_index.json` when there is one (the text encoders it lists are not loaded). `opts.dtype`
   * ('float32' by default, 'bfloat16', 'float16') is what the transformer and the VAE compute in.
   * The folder's `ditcache.json`, when there is one, gives the settings generate() uses where its
   * options give none.
   */
  static fromPretrained(dir: string, opts: LoadOptions = {}): HiDreamPipeline {
    computeDtype(opts.dtype, 'HiDreamPipeline.fromPretrained: dtype');
    checkPipelineFolder(dir, 'HiDreamImagePipeline', COMPONENTS);
    const defaults = readPipelineDefaults(dir);
    const scheduler = FlowMatchEulerDiscreteScheduler.fromFolder(join(dir, 'scheduler'));
    const transformer = HiDreamTransformer.load(join(dir, 'transformer'), opts);
    let vae: AutoencoderKLDecoder | undefined;
    try {
      vae = AutoencoderKLDecoder.load(join(dir, 'vae'), opts);
      return new HiDreamPipeline({ transformer, vae, scheduler, defaults });
    } catch (e) {
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
  static spawn(dir: string, opts: LoadOptions = {}): Promise<RemotePipeline<HiDreamGenerateOptions, HiDreamGenerateResult>> {
    return RemotePipeline.open({ module: '@ditcache/adapter-hidream', exportName: 'HiDreamPipeline', modelDir: dir, loadOptions: opts });
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
    const batch = this.checkEmbeddings(opts, cfg);
    const device = opts.promptEmbedsT5.device;
    const schedule = this.scheduler.schedule({ numInferenceSteps: numSteps, sigmas: opts.sigmas, mu: calculateShift(this.transformer.maxSeq) });
    const branch: CfgBranch = cfg ? 'batched' : 'cond';

    const scope = new TensorScope();
    try {
      const { latents: initial, seed } = this.initialLatents(opts, batch, height, width);
      // Batched CFG: the negative prompt first, as diffusers concatenates them; in the compute
      // dtype, as the pipeline's text encoders in that dtype would return them.
      const both = (negative: Tensor | undefined, positive: Tensor, dim: number): Tensor =>
        cfg ? concat([(negative as Tensor).cast(this.dtype), positive.cast(this.dtype)], dim) : positive.cast(this.dtype);
      const t5 = both(opts.negativePromptEmbedsT5, opts.promptEmbedsT5, 0);
      const llama = both(opts.negativePromptEmbedsLlama3, opts.promptEmbedsLlama3, 1);
      const pooled = both(opts.negativePooledPromptEmbeds, opts.pooledPromptEmbeds, 0);

      // NaN / Inf in an input, as given (a 16-bit overflow of the rounded copy is the blocks'
      // Float16OverflowError), stops here, named; denoise checks each step's latents.
      checkFiniteInputs(
        {
          latents_in: opts.latents,
          prompt_embeds_t5: opts.promptEmbedsT5,
          prompt_embeds_llama3: opts.promptEmbedsLlama3,
          pooled_prompt_embeds: opts.pooledPromptEmbeds,
          negative_prompt_embeds_t5: cfg ? opts.negativePromptEmbedsT5 : undefined,
          negative_prompt_embeds_llama3: cfg ? opts.negativePromptEmbedsLlama3 : undefined,
          negative_pooled_prompt_embeds: cfg ? opts.negativePooledPromptEmbeds : undefined,
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

  /** Frees the transformer's and the VAE's weights. */
  dispose(): void {
    this.transformer.dispose();
    this.vae.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Checks the embeddings against the transformer and each other; returns the batch size. */
  private checkEmbeddings(opts: HiDreamGenerateOptions, cfg: boolean): number {
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
        // There are no text encoders here to embed an empty negative prompt, as diffusers would.
        if (!negative) fail(`guidanceScale > 1 runs classifier-free guidance: give ${negatives.map(([n]) => n).join(', ')}`);
        else if (shape(negative) !== shape(positive)) fail(`${name} ${shape(negative)} must match ${positiveName} ${shape(positive)}`);
      }
    }
    return batch;
  }

  private initialLatents(opts: HiDreamGenerateOptions, batch: number, height: number, width: number): { latents: Tensor; seed: number | null } {
    const expected = [batch, this.transformer.config.in_channels, height / this.vaeScaleFactor, width / this.vaeScaleFactor];
    if (opts.latents) {
      if (opts.latents.shape.join() !== expected.join()) {
        throw new TypeError(`HiDreamPipeline: latents must be (${expected.join(', ')}) for a ${height}x${width} image, got (${opts.latents.shape.join(', ')})`);
      }
      // In the compute dtype, as diffusers' 16-bit pipeline needs them (its latents take the pooled embedding's dtype).
      return { latents: opts.latents.dtype === this.dtype ? opts.latents.clone() : opts.latents.cast(this.dtype), seed: null };
    }
    const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 32);
    return { latents: randnTensor(expected, seed, { device: opts.promptEmbedsT5.device, dtype: this.dtype }), seed };
  }
}
