// diffusers' HunyuanVideoTransformer3DModel (text-to-video): patchifies the 5-D latents into
// image tokens, refines the text tokens (token refiner), runs the dual-stream blocks and then the
// single-stream blocks over (image, text) with the padded text keys masked, and unpatchifies the
// image stream back to latents. Timestep and embedded guidance come as diffusers takes them
// (sigma x 1000, guidance_scale x 1000).
import { add, tensor, tidy, type Device, type Tensor } from '@ditcache/cuda-runtime';
import {
  AdaLayerNormContinuous,
  Conv3d,
  Linear,
  MlpEmbedding,
  loadFromFolder,
  sinusoidalTimestepEmbedding,
  type ComputeDtype,
  type LoadOptions,
  type ParameterStore,
  type WeightReader,
} from '@ditcache/diffusion';

import { HunyuanVideoSingleTransformerBlock, HunyuanVideoTransformerBlock, type HunyuanVideoBlock } from './blocks.js';
import { readHunyuanVideoTransformerConfig, type HunyuanVideoTransformerConfig } from './config.js';
import { TIME_PROJ_DIM, TokenRefiner } from './refiner.js';
import { hunyuanVideoRotaryEmbedding, type RotaryEmbedding } from './rotary.js';

export interface HunyuanVideoTransformerInputs {
  /** Latents (B, in_channels, frames, height, width). */
  hiddenStates: Tensor;
  /** (B,) timesteps as the scheduler gives them (sigma x 1000). */
  timestep: Tensor;
  /** Text embeddings (B, text tokens, text_embed_dim). */
  encoderHiddenStates: Tensor;
  /** (B, text tokens): 1 for a token, 0 for padding (diffusers counts the ones as the leading valid tokens). */
  encoderAttentionMask: Tensor;
  /** Pooled text embedding (B, pooled_projection_dim). */
  pooledProjections: Tensor;
  /** (B,) embedded guidance (guidance_scale x 1000), for guidance_embeds models only. */
  guidance?: Tensor;
  /** The rotary tables of this latent grid, from `rotaryEmbedding(grid)`: a pipeline makes them once per call. */
  rotary?: RotaryEmbedding;
}

/** The sizes a call's cost depends on. */
export interface HunyuanVideoCallShape {
  batch: number;
  imageTokens: number;
  textTokens: number;
}

/** Floating-point operations of one transformer call, counting the matrix products (a multiply-add is 2). */
export interface HunyuanVideoFlops {
  /** x_embedder, the token refiner, time_text_embed. */
  embedders: number;
  perDualBlock: number;
  perSingleBlock: number;
  /** norm_out and proj_out. */
  output: number;
  total: number;
}

/** time_text_embed (HunyuanVideoConditionEmbedding): timestep (+ guidance) features plus the projected pooled embedding. */
export class ConditionEmbedding {
  constructor(
    readonly timestepEmbedder: MlpEmbedding,
    readonly guidanceEmbedder: MlpEmbedding | null,
    readonly textEmbedder: MlpEmbedding,
  ) {}

  forward(timesteps: Float32Array, guidance: Float32Array | null, pooled: Tensor): Tensor {
    const features = (values: Float32Array): Tensor =>
      sinusoidalTimestepEmbedding(values, TIME_PROJ_DIM, { flipSinToCos: true, downscaleFreqShift: 0, device: pooled.device, dtype: pooled.dtype });
    return tidy(() => {
      let conditioning = this.timestepEmbedder.forward(features(timesteps));
      if (this.guidanceEmbedder && guidance) conditioning = add(conditioning, this.guidanceEmbedder.forward(features(guidance)));
      return add(conditioning, this.textEmbedder.forward(pooled));
    });
  }
}

export class HunyuanVideoTransformer implements Disposable {
  readonly config: HunyuanVideoTransformerConfig;
  /** heads * head dim: the width of both streams. */
  readonly innerDim: number;
  readonly outChannels: number;
  /** What the weights are held and the activations computed in (the `dtype` it was loaded with). */
  readonly dtype: ComputeDtype;
  /**
   * The dual-stream blocks, run in order by forward(). Replaceable: a cache engine may put its
   * own HunyuanVideoBlock objects here.
   */
  transformerBlocks: HunyuanVideoBlock[];
  /** The single-stream blocks, run after the dual-stream ones; replaceable likewise. */
  singleTransformerBlocks: HunyuanVideoBlock[];
  private readonly xEmbedder: Conv3d;
  /** context_embedder: the token refiner. */
  readonly contextEmbedder: TokenRefiner;
  /** time_text_embed: the conditioning of every block. */
  readonly timeTextEmbed: ConditionEmbedding;
  private readonly normOut: AdaLayerNormContinuous;
  private readonly projOut: Linear;
  private readonly params: ParameterStore;

  private constructor(config: HunyuanVideoTransformerConfig, w: WeightReader, params: ParameterStore) {
    this.config = config;
    this.params = params;
    this.dtype = w.dtype;
    const heads = config.num_attention_heads;
    const headDim = config.attention_head_dim;
    const dim = heads * headDim;
    const { patch_size: p, patch_size_t: pt } = config;
    this.innerDim = dim;
    this.outChannels = config.out_channels ?? config.in_channels;
    this.xEmbedder = Conv3d.load(w.at('x_embedder.proj'), config.in_channels, dim, { kernel: [pt, p, p], stride: [pt, p, p] });
    this.contextEmbedder = TokenRefiner.load(w.at('context_embedder'), config.text_embed_dim, heads, headDim, config.num_refiner_layers);
    const tte = w.at('time_text_embed');
    this.timeTextEmbed = new ConditionEmbedding(
      MlpEmbedding.load(tte.at('timestep_embedder'), TIME_PROJ_DIM, dim, 'silu'),
      config.guidance_embeds ? MlpEmbedding.load(tte.at('guidance_embedder'), TIME_PROJ_DIM, dim, 'silu') : null,
      MlpEmbedding.load(tte.at('text_embedder'), config.pooled_projection_dim, dim, 'silu'),
    );
    this.transformerBlocks = Array.from({ length: config.num_layers }, (_, i) =>
      HunyuanVideoTransformerBlock.load(w.at('transformer_blocks').at(i), heads, headDim, config.mlp_ratio),
    );
    this.singleTransformerBlocks = Array.from({ length: config.num_single_layers }, (_, i) =>
      HunyuanVideoSingleTransformerBlock.load(w.at('single_transformer_blocks').at(i), heads, headDim, config.mlp_ratio),
    );
    this.normOut = AdaLayerNormContinuous.load(w.at('norm_out'), dim, 1e-6);
    this.projOut = Linear.load(w.at('proj_out'), dim, pt * p * p * this.outChannels);
  }

  /**
   * Loads a diffusers `transformer/` folder (HunyuanVideoTransformer3DModel). `dtype: 'bfloat16'`
   * or `'float16'` holds every weight in that dtype and computes in it, as diffusers'
   * `from_pretrained(..., torch_dtype=...)`.
   */
  static load(dir: string, opts: LoadOptions = {}): HunyuanVideoTransformer {
    return loadFromFolder(dir, opts, (folder, w, params) => new HunyuanVideoTransformer(readHunyuanVideoTransformerConfig(folder), w, params));
  }

  /** The (frames, rows, columns) grid of patches of (B, C, F, H, W) latents. */
  patchGrid(latentShape: readonly number[]): [number, number, number] {
    const { patch_size: p, patch_size_t: pt } = this.config;
    return [Math.floor(latentShape[2] / pt), Math.floor(latentShape[3] / p), Math.floor(latentShape[4] / p)];
  }

  /** The rotary tables (float32) of the image tokens of a patch grid. */
  rotaryEmbedding(grid: readonly [number, number, number], device?: Device): RotaryEmbedding {
    return hunyuanVideoRotaryEmbedding(grid, this.config.rope_axes_dim, { theta: this.config.rope_theta, device });
  }

  /**
   * The prediction (B, out_channels, frames, height, width) for latents, in the model's dtype.
   * Latents and embeddings of another dtype are rounded to it first.
   */
  forward(inputs: HunyuanVideoTransformerInputs): Tensor {
    const { timestep, guidance, maskValues } = this.checkInputs(inputs);
    return tidy(() => {
      const own = (t: Tensor): Tensor => (t.dtype === this.dtype ? t : t.cast(this.dtype));
      const x = own(inputs.hiddenStates);
      const batch = x.shape[0];
      const grid = this.patchGrid(x.shape);
      const rotary = inputs.rotary ?? this.rotaryEmbedding(grid, x.device);
      const temb = this.timeTextEmbed.forward(timestep, guidance, own(inputs.pooledProjections));
      // x_embedder: (B, dim, F', H', W') -> (B, F' H' W', dim).
      let hidden = this.xEmbedder.forward(x).reshape(batch, this.innerDim, -1).transpose(1, 2);
      let encoder = this.contextEmbedder.forward(own(inputs.encoderHiddenStates), timestep, inputs.encoderAttentionMask, maskValues);
      const mask = this.jointMask(maskValues, batch, hidden.shape[1], encoder.shape[1], x.device);

      for (const block of this.transformerBlocks) [hidden, encoder] = block.forward(hidden, encoder, temb, mask, rotary);
      for (const block of this.singleTransformerBlocks) [hidden, encoder] = block.forward(hidden, encoder, temb, mask, rotary);

      const out = this.projOut.forward(this.normOut.forward(hidden, temb));
      return this.unpatchify(out, batch, grid);
    });
  }

  /**
   * The blocks' additive key mask (B, 1, 1, image + text tokens): as diffusers, the first
   * image + (ones in the mask) keys are visible and the rest hidden, wherever the ones are.
   */
  private jointMask(maskValues: Float32Array, batch: number, imageTokens: number, textTokens: number, device: Device): Tensor {
    const n = imageTokens + textTokens;
    const out = new Float32Array(batch * n);
    for (let b = 0; b < batch; ++b) {
      let valid = 0;
      for (let j = 0; j < textTokens; ++j) valid += Math.trunc(maskValues[b * textTokens + j]);
      for (let j = imageTokens + valid; j < n; ++j) out[b * n + j] = -Infinity;
    }
    return tensor(out, [batch, 1, 1, n], { device, dtype: this.dtype });
  }

  /** (B, F' H' W', pt p p C) -> (B, C, F' pt, H' p, W' p). */
  private unpatchify(out: Tensor, batch: number, grid: readonly [number, number, number]): Tensor {
    const { patch_size: p, patch_size_t: pt } = this.config;
    const [f, h, w] = grid;
    return out
      .reshape(batch, f, h, w, this.outChannels, pt, p, p)
      .permute(0, 4, 1, 5, 2, 6, 3, 7)
      .contiguous()
      .reshape(batch, this.outChannels, f * pt, h * p, w * p);
  }

  /** Matrix-product FLOPs of one forward() call of this shape (the element-wise work is left out). */
  flopsPerCall(shape: HunyuanVideoCallShape): HunyuanVideoFlops {
    const { batch: b, imageTokens: n, textTokens: t } = shape;
    const c = this.config;
    const d = this.innerDim;
    const s = n + t;
    const m = Math.trunc(d * c.mlp_ratio);
    const patch = c.patch_size_t * c.patch_size * c.patch_size;
    const mlp = (inF: number, outF: number): number => 2 * b * (inF * d + d * outF);
    // Refiner block: q, k, v, out (4 d^2), MLP (8 d^2), gates (2 d^2 per sample); attention over t tokens.
    const refinerBlock = 2 * b * t * 12 * d * d + 4 * b * t * t * d + 2 * b * d * 2 * d;
    const embedders =
      2 * b * n * c.in_channels * patch * d +
      2 * b * t * c.text_embed_dim * d +
      mlp(TIME_PROJ_DIM, d) * (c.guidance_embeds ? 3 : 2) +
      mlp(c.pooled_projection_dim, d) +
      mlp(c.text_embed_dim, d) +
      c.num_refiner_layers * refinerBlock;
    const attention = 4 * b * s * s * d;
    // Per token: q, k, v (3 d^2) + out (1 d^2) + MLP (2 d m), each 2 FLOPs; plus the 6 d modulation of each stream.
    const perDualBlock = 2 * (2 * b * d * 6 * d) + 2 * b * s * (4 * d * d + 2 * d * m) + attention;
    // q, k, v (3 d^2) + proj_mlp (d m) + proj_out ((d + m) d); plus the 3 d modulation.
    const perSingleBlock = 2 * b * d * 3 * d + 2 * b * s * (3 * d * d + d * m + (d + m) * d) + attention;
    const output = 2 * b * d * 2 * d + 2 * b * n * d * patch * this.outChannels;
    return {
      embedders,
      perDualBlock,
      perSingleBlock,
      output,
      total: embedders + c.num_layers * perDualBlock + c.num_single_layers * perSingleBlock + output,
    };
  }

  /** Frees the weights. */
  dispose(): void {
    this.params.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Validates shapes; returns the timestep, guidance and mask values (read from the device once). */
  private checkInputs(inputs: HunyuanVideoTransformerInputs): { timestep: Float32Array; guidance: Float32Array | null; maskValues: Float32Array } {
    const c = this.config;
    const shape = (t: Tensor): string => `(${t.shape.join(', ')})`;
    const fail = (what: string): never => {
      throw new TypeError(`HunyuanVideoTransformer.forward: ${what}`);
    };
    const { hiddenStates: x, encoderHiddenStates: e, encoderAttentionMask: m, pooledProjections: p } = inputs;
    if (x.rank !== 5 || x.shape[1] !== c.in_channels) fail(`hiddenStates must be (B, ${c.in_channels}, frames, height, width), got ${shape(x)}`);
    const [batch, , frames, height, width] = x.shape;
    if (frames % c.patch_size_t !== 0 || height % c.patch_size !== 0 || width % c.patch_size !== 0) {
      fail(`hiddenStates frames, height and width must be multiples of (${c.patch_size_t}, ${c.patch_size}, ${c.patch_size}), got ${shape(x)}`);
    }
    if (e.rank !== 3 || e.shape[0] !== batch || e.shape[2] !== c.text_embed_dim) {
      fail(`encoderHiddenStates must be (${batch}, tokens, ${c.text_embed_dim}), got ${shape(e)}`);
    }
    if (m.rank !== 2 || m.shape[0] !== batch || m.shape[1] !== e.shape[1]) fail(`encoderAttentionMask must be (${batch}, ${e.shape[1]}), got ${shape(m)}`);
    if (p.rank !== 2 || p.shape[0] !== batch || p.shape[1] !== c.pooled_projection_dim) {
      fail(`pooledProjections must be (${batch}, ${c.pooled_projection_dim}), got ${shape(p)}`);
    }
    const maskValues = m.toFloat32Array();
    for (let b = 0; b < batch; ++b) {
      if (!maskValues.subarray(b * e.shape[1], (b + 1) * e.shape[1]).some((v) => v !== 0)) {
        fail(`encoderAttentionMask row ${b} has no token (all zeros): the refiner's masked mean would divide by zero`);
      }
    }
    const grid = this.patchGrid(x.shape);
    const imageTokens = grid[0] * grid[1] * grid[2];
    const r = inputs.rotary;
    if (r && (r.cos.rank !== 2 || r.cos.shape[0] !== imageTokens || r.cos.shape[1] !== c.attention_head_dim)) {
      fail(`rotary must hold (${imageTokens}, ${c.attention_head_dim}) tables (image tokens, head dim), got cos ${shape(r.cos)}`);
    }
    const perSample = (name: string, t: Tensor): Float32Array => {
      if (t.size !== batch || t.rank > 1) fail(`${name} must be (${batch},), got ${shape(t)}`);
      // Embedded as given: diffusers' sinusoidal features take them in float32 whatever the model's dtype.
      return t.toFloat32Array();
    };
    if (c.guidance_embeds && !inputs.guidance) fail('this model has guidance embeddings (guidance_embeds): pass guidance (guidance_scale x 1000)');
    if (!c.guidance_embeds && inputs.guidance) fail('this model has no guidance embeddings (guidance_embeds is false): omit guidance');
    return { timestep: perSample('timestep', inputs.timestep), guidance: inputs.guidance ? perSample('guidance', inputs.guidance) : null, maskValues };
  }
}
