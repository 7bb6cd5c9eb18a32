// diffusers' FluxTransformer2DModel: embeds packed latents, text and conditioning, runs the
// double-stream blocks and then the single-stream blocks over both streams, and projects the
// image stream back to latent channels. In bfloat16 / float16 (`dtype`) it rounds where diffusers
// does under that torch_dtype: see forward().
import { add, concat, silu, tidy, type Tensor } from '@ditcache/cuda-runtime';
import {
  timesThousandInDtype,
  Linear,
  MlpEmbedding,
  checkFloat16Range,
  loadFromFolder,
  modulate,
  sinusoidalTimestepEmbedding,
  type ComputeDtype,
  type LoadOptions,
  type ParameterStore,
  type WeightReader,
} from '@ditcache/diffusion';

import { FluxSingleTransformerBlock, FluxTransformerBlock, type FluxBlock } from './blocks.js';
import { readFluxTransformerConfig, type FluxTransformerConfig } from './config.js';
import { fluxRotaryEmbedding, type RotaryEmbedding } from './rotary.js';

/** Width of the sinusoidal features of timestep and guidance. */
const TIME_PROJ_DIM = 256;

export interface FluxTransformerInputs {
  /** Packed latents (B, image tokens, in_channels). */
  hiddenStates: Tensor;
  /** Prompt embeddings (B, text tokens, joint_attention_dim). */
  encoderHiddenStates: Tensor;
  /** Pooled prompt embedding (B, pooled_projection_dim). */
  pooledProjections: Tensor;
  /** (B,) in [0, 1]: sigma, i.e. the scheduler's timestep / 1000; the model scales it by 1000. */
  timestep: Tensor;
  /** (image tokens, 3) position ids: [0, row, column]. */
  imgIds: Tensor;
  /** (text tokens, 3) position ids, zeros in FluxPipeline. */
  txtIds: Tensor;
  /** (B,) guidance scale, for guidance-distilled models (guidance_embeds) only. */
  guidance?: Tensor;
  /**
   * The rotary tables of (txtIds, imgIds), from `rotaryEmbedding(txtIds, imgIds)`: a caller that
   * runs many steps over the same ids (FluxPipeline) makes them once instead of reading the ids
   * back from the device and building them on every call. Made from the ids when absent.
   */
  rotary?: RotaryEmbedding;
  /**
   * context_embedder(encoderHiddenStates) and the text part of time_text_embed, from
   * `embedText(encoderHiddenStates, pooledProjections)`: they depend on the prompt alone, so a
   * caller that runs many steps on one prompt (FluxPipeline) makes them once per branch instead
   * of once per step. Made from the embeddings when absent.
   */
  text?: FluxTextConditioning;
}

/** What forward() makes of the prompt alone, the same at every step (see `embedText`). */
export interface FluxTextConditioning {
  /** context_embedder's output (B, text tokens, inner dim): the text stream the first block takes. */
  readonly encoder: Tensor;
  /** time_text_embed's text_embedder output (B, inner dim), added to the timestep (and guidance) embedding. */
  readonly pooled: Tensor;
}

/** The sizes a call's cost depends on. */
export interface FluxCallShape {
  batch: number;
  imageTokens: number;
  textTokens: number;
}

/** Floating-point operations of one transformer call, counting the matrix products (a multiply-add is 2). */
export interface FluxFlops {
  /** x_embedder, context_embedder and time_text_embed. */
  embedders: number;
  /** One double-stream block. */
  perDoubleBlock: number;
  /** One single-stream block. */
  perSingleBlock: number;
  /** norm_out and proj_out. */
  output: number;
  total: number;
}

/** time_text_embed: timestep (and guidance) features plus the projected pooled text embedding. */
class TimeTextEmbedding {
  constructor(
    readonly timestepEmbedder: MlpEmbedding,
    readonly guidanceEmbedder: MlpEmbedding | null,
    readonly textEmbedder: MlpEmbedding,
  ) {}

  /** The text part: text_embedder of the pooled prompt embedding, which no step changes. */
  embedText(pooled: Tensor): Tensor {
    return this.textEmbedder.forward(pooled);
  }

  /** `text` is embedText's output; the sum is diffusers' (timestep + guidance) + text. */
  forward(timesteps: Float32Array, guidance: Float32Array | null, text: Tensor): Tensor {
    // Computed in float32, rounded to the pooled embedding's dtype (diffusers' `.to(dtype=pooled_projection.dtype)`).
    const features = (values: Float32Array): Tensor =>
      sinusoidalTimestepEmbedding(values, TIME_PROJ_DIM, { flipSinToCos: true, downscaleFreqShift: 0, device: text.device, dtype: text.dtype });
    return tidy(() => {
      let conditioning = this.timestepEmbedder.forward(features(timesteps));
      if (this.guidanceEmbedder && guidance) conditioning = add(conditioning, this.guidanceEmbedder.forward(features(guidance)));
      return add(conditioning, text);
    });
  }
}

export class FluxTransformer implements Disposable {
  readonly config: FluxTransformerConfig;
  /** heads * head dim: the width of both streams. */
  readonly innerDim: number;
  readonly outChannels: number;
  /** What the weights are held and the activations computed in (the `dtype` it was loaded with). */
  readonly dtype: ComputeDtype;
  /**
   * The double-stream blocks, run in order by forward(). Replaceable: a cache engine may put
   * its own FluxBlock objects here (see the README for what forward() does with their outputs).
   */
  transformerBlocks: FluxBlock[];
  /** The single-stream blocks, run after the double-stream ones; replaceable likewise. */
  singleTransformerBlocks: FluxBlock[];
  private readonly xEmbedder: Linear;
  private readonly contextEmbedder: Linear;
  private readonly timeTextEmbed: TimeTextEmbedding;
  private readonly normOut: Linear;
  private readonly projOut: Linear;
  private readonly params: ParameterStore;

  private constructor(config: FluxTransformerConfig, w: WeightReader, params: ParameterStore) {
    this.config = config;
    this.params = params;
    this.dtype = w.dtype;
    const heads = config.num_attention_heads;
    const headDim = config.attention_head_dim;
    const dim = heads * headDim;
    this.innerDim = dim;
    this.outChannels = config.out_channels ?? config.in_channels;
    this.xEmbedder = Linear.load(w.at('x_embedder'), config.in_channels, dim);
    this.contextEmbedder = Linear.load(w.at('context_embedder'), config.joint_attention_dim, dim);
    const tte = w.at('time_text_embed');
    this.timeTextEmbed = new TimeTextEmbedding(
      MlpEmbedding.load(tte.at('timestep_embedder'), TIME_PROJ_DIM, dim, 'silu'),
      config.guidance_embeds ? MlpEmbedding.load(tte.at('guidance_embedder'), TIME_PROJ_DIM, dim, 'silu') : null,
      MlpEmbedding.load(tte.at('text_embedder'), config.pooled_projection_dim, dim, 'silu'),
    );
    this.transformerBlocks = Array.from({ length: config.num_layers }, (_, i) =>
      FluxTransformerBlock.load(w.at('transformer_blocks').at(i), dim, heads, headDim),
    );
    this.singleTransformerBlocks = Array.from({ length: config.num_single_layers }, (_, i) =>
      FluxSingleTransformerBlock.load(w.at('single_transformer_blocks').at(i), dim, heads, headDim),
    );
    this.normOut = Linear.load(w.at('norm_out.linear'), dim, 2 * dim);
    this.projOut = Linear.load(w.at('proj_out'), dim, config.patch_size * config.patch_size * this.outChannels);
  }

  /**
   * Loads a diffusers `transformer/` folder (FluxTransformer2DModel). `dtype: 'bfloat16'` or
   * `'float16'` holds every weight in that dtype and computes in it, as diffusers'
   * `from_pretrained(..., torch_dtype=...)` (FLUX keeps no module in float32).
   */
  static load(dir: string, opts: LoadOptions = {}): FluxTransformer {
    return loadFromFolder(dir, opts, (folder, w, params) => new FluxTransformer(readFluxTransformerConfig(folder), w, params));
  }

  /**
   * context_embedder of the prompt embeddings and text_embedder of the pooled one, in the model's
   * dtype (inputs of another dtype are rounded to it first): what forward() computes from the
   * prompt at every step, to pass it as `text` when the prompt stays. The caller owns the tensors.
   */
  embedText(encoderHiddenStates: Tensor, pooledProjections: Tensor): FluxTextConditioning {
    return tidy(() => ({
      encoder: this.contextEmbedder.forward(this.own(encoderHiddenStates)),
      pooled: this.timeTextEmbed.embedText(this.own(pooledProjections)),
    }));
  }

  /** The rotary tables (float32, on the ids' device) of the joint sequence: text tokens, then image tokens. */
  rotaryEmbedding(txtIds: Tensor, imgIds: Tensor): RotaryEmbedding {
    return tidy(() => fluxRotaryEmbedding(concat([txtIds, imgIds], 0), this.config.axes_dims_rope, { device: imgIds.device }));
  }

  /**
   * The noise prediction (B, image tokens, patch^2 * out_channels) for packed latents, in the
   * model's dtype. Latents and embeddings of another dtype are rounded to it first (what a
   * diffusers caller does with `.to(dtype)`). In 16-bit, as diffusers: timestep and guidance are
   * rounded to the dtype before and after the x 1000, their sinusoidal features are computed in
   * float32 and rounded; the rotary tables stay float32 and the rotation computes in float32,
   * rounding once; every other op rounds its output to the dtype.
   */
  forward(inputs: FluxTransformerInputs): Tensor {
    const { timestep, guidance } = this.checkInputs(inputs);
    return tidy(() => {
      let hidden = this.xEmbedder.forward(this.own(inputs.hiddenStates));
      const text = inputs.text ?? this.embedText(inputs.encoderHiddenStates, inputs.pooledProjections);
      const temb = this.timeTextEmbed.forward(timestep, guidance, text.pooled);
      let encoder = text.encoder;
      const rotary = inputs.rotary ?? this.rotaryEmbedding(inputs.txtIds, inputs.imgIds);

      for (const block of this.transformerBlocks) [encoder, hidden] = block.forward(hidden, encoder, temb, rotary);
      for (const block of this.singleTransformerBlocks) [encoder, hidden] = block.forward(hidden, encoder, temb, rotary);

      // AdaLayerNormContinuous: its linear gives scale first, then shift.
      const [scale, shift] = this.normOut.forward(silu(temb)).split(2, 1);
      const sample = this.projOut.forward(modulate(hidden, scale, shift));
      checkFloat16Range('proj_out', sample);
      return sample;
    });
  }

  /** Matrix-product FLOPs of one forward() call of this shape (the element-wise work is left out). */
  flopsPerCall(shape: FluxCallShape): FluxFlops {
    const { batch: b, imageTokens: n, textTokens: t } = shape;
    const c = this.config;
    const d = this.innerDim;
    const s = n + t;
    const mlp = (inF: number, outF: number): number => 2 * b * (inF * d + d * outF);
    const embedders =
      2 * b * n * c.in_channels * d +
      2 * b * t * c.joint_attention_dim * d +
      mlp(TIME_PROJ_DIM, d) * (c.guidance_embeds ? 2 : 1) +
      mlp(c.pooled_projection_dim, d);
    const attention = 4 * b * s * s * d;
    // Per token and d^2: q, k, v (3) + out (1) + MLP (8), each 2 FLOPs; plus the 6 d modulation.
    const perDoubleBlock = 2 * (2 * b * d * 6 * d) + 24 * b * s * d * d + attention;
    // q, k, v (3) + proj_mlp (4) + proj_out over 5 d (5); plus the 3 d modulation.
    const perSingleBlock = 2 * b * d * 3 * d + 24 * b * s * d * d + attention;
    const output = 2 * b * d * 2 * d + 2 * b * n * d * c.patch_size * c.patch_size * this.outChannels;
    return {
      embedders,
      perDoubleBlock,
      perSingleBlock,
      output,
      total: embedders + c.num_layers * perDoubleBlock + c.num_single_layers * perSingleBlock + output,
    };
  }

  /** `t` in the model's dtype: itself, or rounded to it (diffusers' `.to(dtype)`). */
  private own(t: Tensor): Tensor {
    return t.dtype === this.dtype ? t : t.cast(this.dtype);
  }

  /** Frees the weights. */
  dispose(): void {
    this.params.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Validates shapes and returns the timestep (and guidance) values, scaled by 1000 in the model's dtype. */
  private checkInputs(inputs: FluxTransformerInputs): { timestep: Float32Array; guidance: Float32Array | null } {
    const c = this.config;
    const shape = (t: Tensor): string => `(${t.shape.join(', ')})`;
    const fail = (what: string): never => {
      throw new TypeError(`FluxTransformer.forward: ${what}`);
    };
    const { hiddenStates: x, encoderHiddenStates: e, pooledProjections: p, imgIds, txtIds } = inputs;
    if (x.rank !== 3 || x.shape[2] !== c.in_channels) fail(`hiddenStates must be (B, tokens, ${c.in_channels}), got ${shape(x)}`);
    const [batch, imageTokens] = x.shape;
    if (e.rank !== 3 || e.shape[0] !== batch || e.shape[2] !== c.joint_attention_dim) {
      fail(`encoderHiddenStates must be (${batch}, tokens, ${c.joint_attention_dim}), got ${shape(e)}`);
    }
    if (p.rank !== 2 || p.shape[0] !== batch || p.shape[1] !== c.pooled_projection_dim)
      fail(`pooledProjections must be (${batch}, ${c.pooled_projection_dim}), got ${shape(p)}`);
    const axes = c.axes_dims_rope.length;
    if (imgIds.rank !== 2 || imgIds.shape[0] !== imageTokens || imgIds.shape[1] !== axes)
      fail(`imgIds must be (${imageTokens}, ${axes}), got ${shape(imgIds)}`);
    if (txtIds.rank !== 2 || txtIds.shape[0] !== e.shape[1] || txtIds.shape[1] !== axes) fail(`txtIds must be (${e.shape[1]}, ${axes}), got ${shape(txtIds)}`);
    const headDim = c.attention_head_dim;
    if (inputs.rotary && (inputs.rotary.cos.rank !== 2 || inputs.rotary.cos.shape[0] !== e.shape[1] + imageTokens || inputs.rotary.cos.shape[1] !== headDim)) {
      fail(`rotary must hold (${e.shape[1] + imageTokens}, ${headDim}) tables (text + image tokens, head dim), got cos ${shape(inputs.rotary.cos)}`);
    }
    if (inputs.text) {
      const dim = this.innerDim;
      const { encoder, pooled } = inputs.text;
      if (encoder.rank !== 3 || encoder.shape[0] !== batch || encoder.shape[1] !== e.shape[1] || encoder.shape[2] !== dim)
        fail(`text.encoder must be (${batch}, ${e.shape[1]}, ${dim}) (embedText of encoderHiddenStates), got ${shape(encoder)}`);
      if (pooled.rank !== 2 || pooled.shape[0] !== batch || pooled.shape[1] !== dim)
        fail(`text.pooled must be (${batch}, ${dim}) (embedText of pooledProjections), got ${shape(pooled)}`);
    }
    const perSample = (name: string, t: Tensor): Float32Array => {
      if (t.size !== batch || t.rank > 1) fail(`${name} must be (${batch},), got ${shape(t)}`);
      return timesThousandInDtype(t, this.dtype);
    };
    if (c.guidance_embeds && !inputs.guidance) fail('this model has guidance embeddings (guidance_embeds): pass guidance');
    if (!c.guidance_embeds && inputs.guidance) fail('this model has no guidance embeddings (guidance_embeds is false): omit guidance');
    return { timestep: perSample('timestep', inputs.timestep), guidance: inputs.guidance ? perSample('guidance', inputs.guidance) : null };
  }
}
