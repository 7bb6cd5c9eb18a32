// diffusers' QwenImageTransformer2DModel: embeds packed latents and RMS-normed text, runs the
// dual-stream blocks with the text padding masked out of attention, and projects the image stream
// back to latent channels. In bfloat16 / float16 (`dtype`) it rounds where diffusers does under
// that torch_dtype: see forward().
import { tensor, tidy, type Tensor } from '@ditcache/cuda-runtime';
import {
  AdaLayerNormContinuous,
  Linear,
  MlpEmbedding,
  RMSNorm,
  checkFloat16Range,
  loadFromFolder,
  sinusoidalTimestepEmbedding,
  type ComputeDtype,
  type LoadOptions,
  type ParameterStore,
  type WeightReader,
} from '@ditcache/diffusion';

import { QwenImageTransformerBlock, type QwenImageBlock } from './block.js';
import { readQwenImageTransformerConfig, type QwenImageTransformerConfig } from './config.js';
import { qwenImageRotaryEmbedding, type ImageShape, type RotaryEmbedding } from './rotary.js';

/** Width of the sinusoidal timestep features. */
const TIME_PROJ_DIM = 256;
/** Epsilon of txt_norm and norm_out. */
const NORM_EPS = 1e-6;

export interface QwenImageTransformerInputs {
  /** Packed latents (B, image tokens, in_channels). */
  hiddenStates: Tensor;
  /** Prompt embeddings (B, text tokens, joint_attention_dim). */
  encoderHiddenStates: Tensor;
  /** (B, text tokens): non-zero for a real token, 0 for padding, which no token attends to. All tokens count when absent. */
  encoderHiddenStatesMask?: Tensor | null;
  /** (B,) in [0, 1]: sigma, i.e. the scheduler's timestep / 1000; the model scales it by 1000. */
  timestep: Tensor;
  /**
   * The latent grid of each image in patches, (frames, rows, columns), whose tokens hiddenStates
   * holds in order: diffusers' img_shapes for one sample (diffusers uses the first sample's for all).
   */
  imgShapes: readonly ImageShape[];
  /**
   * The rotary tables of imgShapes and the text length, from `rotaryEmbedding()`: a caller that
   * runs many steps on one size (the pipeline) makes them once. Made here when absent.
   */
  rotary?: RotaryEmbedding;
}

/** The sizes a call's cost depends on. */
export interface QwenImageCallShape {
  batch: number;
  imageTokens: number;
  textTokens: number;
}

/** Floating-point operations of one transformer call, counting the matrix products (a multiply-add is 2). */
export interface QwenImageFlops {
  /** img_in, txt_in and the timestep embedding. */
  embedders: number;
  perBlock: number;
  /** norm_out and proj_out. */
  output: number;
  total: number;
}

export class QwenImageTransformer implements Disposable {
  readonly config: QwenImageTransformerConfig;
  /** heads * head dim: the width of both streams. */
  readonly innerDim: number;
  readonly outChannels: number;
  /** What the weights are held and the activations computed in (the `dtype` it was loaded with). */
  readonly dtype: ComputeDtype;
  /** The blocks, run in order by forward(). Replaceable: a cache engine may put its own QwenImageBlock objects here. */
  transformerBlocks: QwenImageBlock[];
  private readonly imgIn: Linear;
  private readonly txtNorm: RMSNorm;
  private readonly txtIn: Linear;
  private readonly timestepEmbedder: MlpEmbedding;
  private readonly normOut: AdaLayerNormContinuous;
  private readonly projOut: Linear;
  private readonly params: ParameterStore;

  private constructor(config: QwenImageTransformerConfig, w: WeightReader, params: ParameterStore) {
    this.config = config;
    this.params = params;
    this.dtype = w.dtype;
    const heads = config.num_attention_heads;
    const headDim = config.attention_head_dim;
    const dim = heads * headDim;
    this.innerDim = dim;
    this.outChannels = config.out_channels ?? config.in_channels;
    this.imgIn = Linear.load(w.at('img_in'), config.in_channels, dim);
    this.txtNorm = RMSNorm.load(w.at('txt_norm'), config.joint_attention_dim, NORM_EPS);
    this.txtIn = Linear.load(w.at('txt_in'), config.joint_attention_dim, dim);
    this.timestepEmbedder = MlpEmbedding.load(w.at('time_text_embed.timestep_embedder'), TIME_PROJ_DIM, dim, 'silu');
    this.transformerBlocks = Array.from({ length: config.num_layers }, (_, i) =>
      QwenImageTransformerBlock.load(w.at('transformer_blocks').at(i), dim, heads, headDim),
    );
    this.normOut = AdaLayerNormContinuous.load(w.at('norm_out'), dim, NORM_EPS);
    this.projOut = Linear.load(w.at('proj_out'), dim, config.patch_size * config.patch_size * this.outChannels);
  }

  /**
   * Loads a diffusers `transformer/` folder (QwenImageTransformer2DModel). `dtype: 'bfloat16'`
   * or `'float16'` holds every weight in that dtype and computes in it, as diffusers'
   * `from_pretrained(..., torch_dtype=...)`.
   */
  static load(dir: string, opts: LoadOptions = {}): QwenImageTransformer {
    return loadFromFolder(dir, opts, (folder, w, params) => new QwenImageTransformer(readQwenImageTransformerConfig(folder), w, params));
  }

  /** The rotary tables (float32, on `device`) of the joint sequence: `textTokens` text tokens, then the image tokens of `imgShapes`. */
  rotaryEmbedding(imgShapes: readonly ImageShape[], textTokens: number, device?: Tensor['device']): RotaryEmbedding {
    return qwenImageRotaryEmbedding(imgShapes, textTokens, this.config.axes_dims_rope, device);
  }

  /**
   * The noise prediction (B, image tokens, patch^2 * out_channels) for packed latents, in the
   * model's dtype. Latents and embeddings of another dtype are rounded to it first. In 16-bit, as
   * diffusers: the timestep is rounded to the dtype, its sinusoidal features are computed in
   * float32 and rounded; the rotary tables stay float32 and the rotation computes in float32,
   * rounding once; every other op rounds its output to the dtype.
   */
  forward(inputs: QwenImageTransformerInputs): Tensor {
    const { timestep, validTokens } = this.checkInputs(inputs);
    return tidy(() => {
      const own = (t: Tensor): Tensor => (t.dtype === this.dtype ? t : t.cast(this.dtype));
      const x = own(inputs.hiddenStates);
      const device = x.device;
      let hidden = this.imgIn.forward(x);
      let encoder = this.txtIn.forward(this.txtNorm.forward(own(inputs.encoderHiddenStates)));
      const features = sinusoidalTimestepEmbedding(timestep, TIME_PROJ_DIM, {
        flipSinToCos: true,
        downscaleFreqShift: 0,
        scale: 1000,
        device,
        dtype: this.dtype,
      });
      const temb = this.timestepEmbedder.forward(features);
      const rotary = inputs.rotary ?? this.rotaryEmbedding(inputs.imgShapes, encoder.shape[1], device);
      const keyMask = validTokens ? this.keyMask(validTokens, encoder.shape[1], hidden.shape[1], device) : undefined;

      for (const block of this.transformerBlocks) [encoder, hidden] = block.forward(hidden, encoder, temb, rotary, keyMask);

      const sample = this.projOut.forward(this.normOut.forward(hidden, temb));
      checkFloat16Range('proj_out', sample);
      return sample;
    });
  }

  /** Matrix-product FLOPs of one forward() call of this shape (the element-wise work is left out). */
  flopsPerCall(shape: QwenImageCallShape): QwenImageFlops {
    const { batch: b, imageTokens: n, textTokens: t } = shape;
    const c = this.config;
    const d = this.innerDim;
    const s = n + t;
    const embedders = 2 * b * n * c.in_channels * d + 2 * b * t * c.joint_attention_dim * d + 2 * b * (TIME_PROJ_DIM * d + d * d);
    // Per token and d^2: q, k, v (3) + out (1) + MLP (8), each 2 FLOPs; the two 6 d modulations; joint attention.
    const perBlock = 2 * (2 * b * d * 6 * d) + 24 * b * s * d * d + 4 * b * s * s * d;
    const output = 2 * b * d * 2 * d + 2 * b * n * d * c.patch_size * c.patch_size * this.outChannels;
    return { embedders, perBlock, output, total: embedders + c.num_layers * perBlock + output };
  }

  /** Frees the weights. */
  dispose(): void {
    this.params.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** The additive (B, 1, 1, text + image tokens) key mask: 0 for every image token and valid text token, -Infinity for padding. */
  private keyMask(validTokens: Uint8Array, textTokens: number, imageTokens: number, device: Tensor['device']): Tensor {
    const batch = validTokens.length / textTokens;
    const keys = textTokens + imageTokens;
    const mask = new Float32Array(batch * keys);
    for (let b = 0; b < batch; ++b) {
      for (let j = 0; j < textTokens; ++j) if (!validTokens[b * textTokens + j]) mask[b * keys + j] = Number.NEGATIVE_INFINITY;
    }
    return tensor(mask, [batch, 1, 1, keys], { device, dtype: this.dtype });
  }

  /** Validates shapes; returns the timestep values in the model's dtype and the text mask (null when every token counts). */
  private checkInputs(inputs: QwenImageTransformerInputs): { timestep: Float32Array; validTokens: Uint8Array | null } {
    const c = this.config;
    const shape = (t: Tensor): string => `(${t.shape.join(', ')})`;
    const fail = (what: string): never => {
      throw new TypeError(`QwenImageTransformer.forward: ${what}`);
    };
    const { hiddenStates: x, encoderHiddenStates: e, encoderHiddenStatesMask: mask, timestep: t, imgShapes } = inputs;
    if (x.rank !== 3 || x.shape[2] !== c.in_channels) fail(`hiddenStates must be (B, tokens, ${c.in_channels}), got ${shape(x)}`);
    const [batch, imageTokens] = x.shape;
    if (e.rank !== 3 || e.shape[0] !== batch || e.shape[2] !== c.joint_attention_dim) {
      fail(`encoderHiddenStates must be (${batch}, tokens, ${c.joint_attention_dim}), got ${shape(e)}`);
    }
    const textTokens = e.shape[1];
    if (imgShapes.length === 0 || imgShapes.some((s) => s.length !== 3 || s.some((v) => !Number.isInteger(v) || v <= 0))) {
      fail(`imgShapes must be one or more (frames, height, width) of positive integers, got ${JSON.stringify(imgShapes)}`);
    }
    const shapeTokens = imgShapes.reduce((n, [f, h, w]) => n + f * h * w, 0);
    if (shapeTokens !== imageTokens) fail(`imgShapes ${JSON.stringify(imgShapes)} make ${shapeTokens} image tokens, but hiddenStates has ${imageTokens}`);
    const headDim = c.attention_head_dim;
    const r = inputs.rotary;
    if (r && (r.cos.rank !== 2 || r.cos.shape[0] !== textTokens + imageTokens || r.cos.shape[1] !== headDim)) {
      fail(`rotary must hold (${textTokens + imageTokens}, ${headDim}) tables (text + image tokens, head dim), got cos ${shape(r.cos)}`);
    }
    if (t.size !== batch || t.rank > 1) fail(`timestep must be (${batch},), got ${shape(t)}`);
    let validTokens: Uint8Array | null = null;
    if (mask) {
      if (mask.rank !== 2 || mask.shape[0] !== batch || mask.shape[1] !== textTokens) {
        fail(`encoderHiddenStatesMask must be (${batch}, ${textTokens}) like encoderHiddenStates' batch and tokens, got ${shape(mask)}`);
      }
      const values = mask.dtype === 'int32' ? mask.toInt32Array() : mask.toFloat32Array();
      validTokens = Uint8Array.from(values, (v) => (v !== 0 ? 1 : 0));
      if (validTokens.every((v) => v === 1)) validTokens = null;
    }
    const timestep = this.dtype === 'float32' ? t.toFloat32Array() : tidy(() => t.cast(this.dtype).toFloat32Array());
    return { timestep, validTokens };
  }
}
