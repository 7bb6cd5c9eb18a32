// diffusers' LTXVideoTransformer3DModel: packed video latents (B, tokens, channels) in — the
// pipeline patchifies them — projected to the model width, the timestep embedded once
// (AdaLayerNormSingle: the embedding and its six-way projection), the captions projected
// (PixArtAlphaTextProjection), the blocks run over the tokens with the rotary embedding of the
// latent grid and the text's mask, and a modulated output norm before the projection back to
// latent channels. The `dtype` load option (diffusers' torch_dtype) makes it compute in bfloat16
// or float16, the rotary tables staying float32.
import { add, mul, silu, sub, tidy, type Device, type Tensor } from '@ditcache/cuda-runtime';
import {
  LayerNorm,
  Linear,
  MlpEmbedding,
  loadFromFolder,
  modulate,
  sinusoidalTimestepEmbedding,
  type ComputeDtype,
  type LoadOptions,
  type ParameterStore,
  type WeightReader,
} from '@ditcache/diffusion';

import { LtxTransformerBlock, type LtxBlock } from './blocks.js';
import { readLtxTransformerConfig, type LtxTransformerConfig } from './config.js';
import { ltxRotaryEmbedding, type RotaryEmbedding } from './rotary.js';

/** Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0) of AdaLayerNormSingle. */
const TIMESTEP_CHANNELS = 256;
/** The weightless LayerNorm before proj_out. */
const NORM_OUT_EPS = 1e-6;
/** diffusers' mask-to-bias: (1 - mask) * -10000. */
const MASKED_BIAS = -10000;

export interface LtxTransformerInputs {
  /** Packed latents (B, frames * height * width / patch volume, in_channels). */
  hiddenStates: Tensor;
  /** (B, text tokens, caption_channels). */
  encoderHiddenStates: Tensor;
  /** (B,) on the scheduler's 0..1000 scale, as LTXPipeline passes it. */
  timestep: Tensor;
  /**
   * (B, text tokens): 1 for a token, 0 for padding (any dtype); made into the bias (1 - m) *
   * -10000 as diffusers does. A rank-3 (B, 1, text tokens) tensor is taken as that bias already.
   * Null: no mask.
   */
  encoderAttentionMask: Tensor | null;
  /** The latent grid the rotary positions count over (the forward's num_frames, height, width). */
  numFrames: number;
  height: number;
  width: number;
  /** (frames, height, width) scales of the positions, LTXPipeline's (temporal ratio / frame rate, spatial ratio, spatial ratio); null: unscaled. */
  ropeInterpolationScale: readonly [number, number, number] | null;
  /** The tables of ropeTables(), for a caller that runs many steps over one grid; made here when absent. */
  rotary?: RotaryEmbedding;
}

/** The sizes a call's cost depends on. */
export interface LtxCallShape {
  batch: number;
  videoTokens: number;
  textTokens: number;
}

/** Floating-point operations of one transformer call, counting the matrix products (a multiply-add is 2). */
export interface LtxFlops {
  /** proj_in, time_embed and caption_projection. */
  embedders: number;
  /** One block. */
  perBlock: number;
  /** proj_out. */
  output: number;
  total: number;
}

/** What time_embed (AdaLayerNormSingle) gives the rest of the model. */
export interface LtxTimeEmbedding {
  /** (B, 1, 6 * dim): the projection every block adds to its scale_shift_table. */
  temb: Tensor;
  /** (B, 1, dim): the timestep embedding, which modulates the output norm. */
  embedded: Tensor;
}

/** AdaLayerNormSingle: sinusoidal features through the timestep MLP, and linear(silu(.)) to the six modulations. */
export class LtxTimeEmbedder {
  constructor(
    readonly timestepEmbedder: MlpEmbedding,
    readonly linear: Linear,
  ) {}

  static load(w: WeightReader, dim: number): LtxTimeEmbedder {
    return new LtxTimeEmbedder(MlpEmbedding.load(w.at('emb.timestep_embedder'), TIMESTEP_CHANNELS, dim, 'silu'), Linear.load(w.at('linear'), dim, 6 * dim));
  }

  forward(timesteps: ArrayLike<number>, dtype: Tensor['dtype'], device?: Device): LtxTimeEmbedding {
    return tidy(() => {
      const features = sinusoidalTimestepEmbedding(timesteps, TIMESTEP_CHANNELS, { flipSinToCos: true, downscaleFreqShift: 0, device, dtype });
      const embedded = this.timestepEmbedder.forward(features);
      const temb = this.linear.forward(silu(embedded));
      return { temb: temb.unsqueeze(1), embedded: embedded.unsqueeze(1) };
    });
  }
}

export class LtxVideoTransformer implements Disposable {
  readonly config: LtxTransformerConfig;
  /** What it computes in (the `dtype` load option); forward() casts its inputs to it and returns it. */
  readonly dtype: ComputeDtype;
  /** heads * head dim: the width of the tokens. */
  readonly innerDim: number;
  /**
   * The blocks, run in order by forward(), which does nothing per block but call `forward`.
   * Replaceable: a cache engine may put its own LtxBlock objects here.
   */
  transformerBlocks: LtxBlock[];
  readonly projIn: Linear;
  readonly timeEmbed: LtxTimeEmbedder;
  readonly captionProjection: MlpEmbedding;
  readonly normOut: LayerNorm;
  readonly projOut: Linear;
  /** (2, dim): added to the timestep embedding for the output norm's shift and scale. */
  readonly scaleShiftTable: Tensor;
  private readonly params: ParameterStore;

  private constructor(config: LtxTransformerConfig, w: WeightReader, params: ParameterStore) {
    this.config = config;
    this.params = params;
    this.dtype = w.dtype;
    const dim = config.num_attention_heads * config.attention_head_dim;
    this.innerDim = dim;
    this.projIn = Linear.load(w.at('proj_in'), config.in_channels, dim);
    this.scaleShiftTable = w.tensor('scale_shift_table', [2, dim]);
    this.timeEmbed = LtxTimeEmbedder.load(w.at('time_embed'), dim);
    this.captionProjection = MlpEmbedding.load(w.at('caption_projection'), config.caption_channels, dim, 'gelu_tanh');
    this.transformerBlocks = Array.from({ length: config.num_layers }, (_, i) => LtxTransformerBlock.load(w.at('transformer_blocks').at(i), config));
    this.normOut = new LayerNorm(NORM_OUT_EPS);
    this.projOut = Linear.load(w.at('proj_out'), dim, config.out_channels);
  }

  /** Loads a diffusers LTX-Video `transformer/` folder; `opts.dtype` ('float32' by default, 'bfloat16', 'float16') is what it computes in. */
  static load(dir: string, opts: LoadOptions = {}): LtxVideoTransformer {
    return loadFromFolder(dir, opts, (folder, w, params) => new LtxVideoTransformer(readLtxTransformerConfig(folder), w, params));
  }

  /** The rotary tables of a latent grid, float32 in every dtype (diffusers computes the rope in float32). */
  ropeTables(grid: readonly [number, number, number], scale: readonly [number, number, number] | null, device?: Device): RotaryEmbedding {
    const c = this.config;
    return ltxRotaryEmbedding(grid, this.innerDim, scale, { patchSize: c.patch_size, patchSizeT: c.patch_size_t, device });
  }

  /** The velocity prediction (B, tokens, out_channels), in the model's dtype. */
  forward(inputs: LtxTransformerInputs): Tensor {
    const timestep = this.checkInputs(inputs);
    const { hiddenStates: x, encoderHiddenStates: e } = inputs;
    return tidy(() => {
      const rotary = inputs.rotary ?? this.ropeTables([inputs.numFrames, inputs.height, inputs.width], inputs.ropeInterpolationScale, x.device);
      const maskBias = this.maskBias(inputs.encoderAttentionMask);
      let hidden = this.projIn.forward(x.cast(this.dtype));
      const { temb, embedded } = this.timeEmbed.forward(timestep, this.dtype, x.device);
      const text = this.captionProjection.forward(e.cast(this.dtype));
      for (const block of this.transformerBlocks) hidden = block.forward(hidden, text, temb, rotary, maskBias);
      return this.outputProjection(hidden, embedded);
    });
  }

  /** The additive cross-attention bias (B, 1, 1, T) of a (B, T) mask, (1 - mask) * -10000 in float32; a rank-3 bias as given. */
  maskBias(mask: Tensor | null): Tensor | null {
    if (!mask) return null;
    return tidy(() => (mask.rank === 3 ? mask.cast('float32') : mul(sub(1, mask.cast('float32')), MASKED_BIAS).unsqueeze(1)).unsqueeze(1));
  }

  /** norm_out modulated by scale_shift_table + the timestep embedding, then proj_out. */
  outputProjection(hidden: Tensor, embedded: Tensor): Tensor {
    return tidy(() => {
      // (1, 2, dim) + (B, 1, dim) -> shift, scale (B, 1, dim) each.
      const [shift, scale] = add(this.scaleShiftTable.unsqueeze(0), embedded).split(2, 1);
      return this.projOut.forward(modulate(hidden, scale, shift, { eps: NORM_OUT_EPS }));
    });
  }

  /** Matrix-product FLOPs of one forward() call of this shape (the element-wise work is left out). */
  flopsPerCall(shape: LtxCallShape): LtxFlops {
    const { batch: b, videoTokens: n, textTokens: t } = shape;
    const c = this.config;
    const d = this.innerDim;
    const embedders = 2 * b * n * c.in_channels * d + 2 * b * (256 * d + d * d + 6 * d * d) + 2 * b * t * (c.caption_channels * d + d * d);
    // Self-attention: q, k, v, out over the video tokens; cross-attention: q, out over the video
    // tokens and k, v over the text; the feed-forward (4x); the attention products.
    const perBlock = 8 * b * n * d * d + 4 * b * n * d * d + 4 * b * t * d * d + 16 * b * n * d * d + 4 * b * n * n * d + 4 * b * n * t * d;
    const output = 2 * b * n * d * c.out_channels;
    return { embedders, perBlock, output, total: embedders + c.num_layers * perBlock + output };
  }

  /** Frees the weights. */
  dispose(): void {
    this.params.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Validates shapes; returns the timestep values. */
  private checkInputs(inputs: LtxTransformerInputs): Float32Array {
    const c = this.config;
    const shape = (t: Tensor): string => `(${t.shape.join(', ')})`;
    const fail = (what: string): never => {
      throw new TypeError(`LtxVideoTransformer.forward: ${what}`);
    };
    const { hiddenStates: x, encoderHiddenStates: e, timestep: t, encoderAttentionMask: m, numFrames, height, width } = inputs;
    if (x.rank !== 3 || x.shape[2] !== c.in_channels) fail(`hiddenStates must be packed latents (B, tokens, ${c.in_channels}), got ${shape(x)}`);
    const [batch, tokens] = x.shape;
    for (const [name, n] of [
      ['numFrames', numFrames],
      ['height', height],
      ['width', width],
    ] as const) {
      if (!Number.isInteger(n) || n < 1) fail(`${name} must be a positive integer, got ${n}`);
    }
    if (numFrames * height * width !== tokens) {
      fail(
        `numFrames x height x width = ${numFrames} x ${height} x ${width} = ${numFrames * height * width} rotary positions, but hiddenStates has ${tokens} tokens`,
      );
    }
    if (e.rank !== 3 || e.shape[0] !== batch || e.shape[2] !== c.caption_channels)
      fail(`encoderHiddenStates must be (${batch}, tokens, ${c.caption_channels}), got ${shape(e)}`);
    const textTokens = e.shape[1];
    if (m && !((m.rank === 2 && m.shape.join() === [batch, textTokens].join()) || (m.rank === 3 && m.shape.join() === [batch, 1, textTokens].join()))) {
      fail(`encoderAttentionMask must be (${batch}, ${textTokens}) (or a bias (${batch}, 1, ${textTokens})), got ${shape(m)}`);
    }
    if (t.size !== batch || t.rank > 1) fail(`timestep must be (${batch},), got ${shape(t)}`);
    const s = inputs.ropeInterpolationScale;
    if (s && (s.length !== 3 || !s.every(Number.isFinite)))
      fail(`ropeInterpolationScale must be 3 finite numbers (frames, height, width), got [${s.join(', ')}]`);
    if (inputs.rotary && inputs.rotary.cos.shape.join() !== [1, tokens, this.innerDim].join()) {
      fail(`rotary must hold (1, ${tokens}, ${this.innerDim}) tables, got cos ${shape(inputs.rotary.cos)}`);
    }
    return t.toFloat32Array();
  }
}
