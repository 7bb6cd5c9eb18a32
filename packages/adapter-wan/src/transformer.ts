// diffusers' WanTransformer3DModel: cuts video latents into 3-D patches (a Conv3d with kernel =
// stride = patch size), embeds the timestep and the text (and, in image-to-video models, the CLIP
// image embedding), runs the blocks over the patch tokens with 3-D rotary embeddings, and
// projects the tokens back to latent patches. The `dtype` load option (diffusers' torch_dtype)
// makes it compute in bfloat16 or float16 as diffusers does: the weights in that dtype but those
// of `_keep_in_fp32_modules` (time_embedder, the scale_shift_tables, the affine norms), the
// timestep embedding computed in float32, the rotary tables in float32, and the norms with their
// modulation in float32, rounded once to the model's dtype.
import { add, silu, tidy, type Device, type Tensor } from '@ditcache/cuda-runtime';
import {
  Conv3d,
  FeedForward,
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

import { WanTransformerBlock, fp32LayerNorm, type WanBlock } from './blocks.js';
import { readWanTransformerConfig, type WanTransformerConfig } from './config.js';
import { wanRotaryEmbedding, type RotaryEmbedding } from './rotary.js';

export interface WanTransformerInputs {
  /** Video latents (B, in_channels, frames, height, width). */
  hiddenStates: Tensor;
  /** (B,) on the scheduler's 0..1000 scale, as WanPipeline passes it. */
  timestep: Tensor;
  /** Prompt embeddings (B, text tokens, text_dim). */
  encoderHiddenStates: Tensor;
  /**
   * Image-to-video models (config image_dim): the CLIP image embeddings (B, image tokens,
   * image_dim); with a pos_embed_seq_len (first-last-frame models) two per video, the first and
   * the last frame's, (2B, image tokens, image_dim) with 2 x image tokens = pos_embed_seq_len.
   */
  encoderHiddenStatesImage?: Tensor;
  /**
   * The rotary tables of the latents' patch grid, from `rotaryEmbedding(patchGrid(latents.shape))`:
   * a caller that runs many steps over one latent size (WanPipeline) makes them once instead of on
   * every call. Made from the grid when absent.
   */
  rotary?: RotaryEmbedding;
}

/** The sizes a call's cost depends on. */
export interface WanCallShape {
  batch: number;
  /** Patch tokens: (frames / p_t) * (height / p_h) * (width / p_w) of the latents. */
  videoTokens: number;
  textTokens: number;
  /** Image tokens per video the blocks attend to (image-to-video models; 0 otherwise). */
  imageTokens?: number;
}

/** Floating-point operations of one transformer call, counting the matrix products (a multiply-add is 2). */
export interface WanFlops {
  /** patch_embedding and condition_embedder. */
  embedders: number;
  /** One block. */
  perBlock: number;
  /** proj_out. */
  output: number;
  total: number;
}

/** What condition_embedder gives the rest of the model. */
export interface WanConditions {
  /** (B, dim): the timestep embedding, which modulates the output norm. */
  temb: Tensor;
  /** (B, 6, dim): the timestep projection every block adds to its scale_shift_table. */
  timestepProj: Tensor;
  /** (B, text tokens, dim): the projected prompt embeddings. */
  text: Tensor;
  /** (B, image tokens, dim): the embedded image of an image-to-video model, else null. */
  image: Tensor | null;
}

/** diffusers' FP32LayerNorm default: nn.LayerNorm's eps, with affine weights. */
const IMAGE_NORM_EPS = 1e-5;

/**
 * WanImageEmbedding: the CLIP image embedding through an affine LayerNorm, an erf-GELU
 * feed-forward to the model width and another LayerNorm; first-last-frame models first join each
 * video's two image embeddings into one sequence and add a learned position embedding. The norms
 * are FP32LayerNorms with float32 weights (diffusers keeps modules named norm1 / norm2 in float32).
 */
export class WanImageEmbedding {
  constructor(
    readonly norm1: LayerNorm,
    readonly ff: FeedForward,
    readonly norm2: LayerNorm,
    /** (1, pos_embed_seq_len, image_dim), or null. */
    readonly posEmbed: Tensor | null,
  ) {}

  static load(w: WeightReader, imageDim: number, dim: number, posEmbedSeqLen: number | null): WanImageEmbedding {
    return new WanImageEmbedding(
      LayerNorm.load(w.float32().at('norm1'), imageDim, IMAGE_NORM_EPS),
      FeedForward.load(w.at('ff'), imageDim, imageDim, 'gelu', dim),
      LayerNorm.load(w.float32().at('norm2'), dim, IMAGE_NORM_EPS),
      posEmbedSeqLen === null ? null : w.tensor('pos_embed', [1, posEmbedSeqLen, imageDim]),
    );
  }

  /** (B, tokens, image_dim), or (2B, tokens, image_dim) with a position embedding -> (B, image tokens, dim). */
  forward(image: Tensor): Tensor {
    return tidy(() => {
      const [, tokens, imageDim] = image.shape;
      const joined = this.posEmbed ? add(image.reshape(-1, 2 * tokens, imageDim), this.posEmbed) : image;
      return fp32LayerNorm(this.norm2, this.ff.forward(fp32LayerNorm(this.norm1, joined)));
    });
  }
}

/**
 * condition_embedder (WanTimeTextImageEmbedding): sinusoidal timestep features (cos first)
 * through time_embedder, time_proj of silu(temb) to the six modulations, the GELU-tanh text
 * projection, and in image-to-video models the image embedder. time_embedder keeps float32
 * weights and computes temb in float32, which then takes the text's dtype, as in diffusers.
 */
export class WanConditionEmbedder {
  constructor(
    readonly freqDim: number,
    readonly timeEmbedder: MlpEmbedding,
    readonly timeProj: Linear,
    readonly textEmbedder: MlpEmbedding,
    readonly imageEmbedder: WanImageEmbedding | null = null,
  ) {}

  static load(w: WeightReader, config: WanTransformerConfig): WanConditionEmbedder {
    const dim = config.num_attention_heads * config.attention_head_dim;
    return new WanConditionEmbedder(
      config.freq_dim,
      MlpEmbedding.load(w.float32().at('time_embedder'), config.freq_dim, dim, 'silu'),
      Linear.load(w.at('time_proj'), dim, 6 * dim),
      MlpEmbedding.load(w.at('text_embedder'), config.text_dim, dim, 'gelu_tanh'),
      config.image_dim === null ? null : WanImageEmbedding.load(w.at('image_embedder'), config.image_dim, dim, config.pos_embed_seq_len),
    );
  }

  forward(timesteps: ArrayLike<number>, text: Tensor, image: Tensor | null = null): WanConditions {
    if (image && !this.imageEmbedder) throw new TypeError('WanConditionEmbedder.forward: an image embedding given to a text-to-video model');
    return tidy(() => {
      const features = sinusoidalTimestepEmbedding(timesteps, this.freqDim, { flipSinToCos: true, downscaleFreqShift: 0, device: text.device });
      const temb = this.timeEmbedder.forward(features).cast(text.dtype);
      const timestepProj = this.timeProj.forward(silu(temb)).reshape(timesteps.length, 6, -1);
      return { temb, timestepProj, text: this.textEmbedder.forward(text), image: image && this.imageEmbedder ? this.imageEmbedder.forward(image) : null };
    });
  }
}

export class WanTransformer implements Disposable {
  readonly config: WanTransformerConfig;
  /** What it computes in (the `dtype` load option); forward() casts its inputs to it and returns it. */
  readonly dtype: ComputeDtype;
  /** heads * head dim: the width of the tokens. */
  readonly innerDim: number;
  /**
   * The blocks, run in order by forward(), which does nothing per block but call `forward`.
   * Replaceable: a cache engine may put its own WanBlock objects here.
   */
  blocks: WanBlock[];
  readonly patchEmbedding: Conv3d;
  readonly conditionEmbedder: WanConditionEmbedder;
  /** The output FP32LayerNorm, without affine weights (modulate() computes it in float32). */
  readonly normOut: LayerNorm;
  readonly projOut: Linear;
  /** (1, 2, dim), float32: added to temb for the output norm's shift and scale. */
  readonly scaleShiftTable: Tensor;
  private readonly params: ParameterStore;

  private constructor(config: WanTransformerConfig, w: WeightReader, params: ParameterStore) {
    this.config = config;
    this.params = params;
    this.dtype = w.dtype;
    const dim = config.num_attention_heads * config.attention_head_dim;
    const patch = config.patch_size as [number, number, number];
    this.innerDim = dim;
    this.patchEmbedding = Conv3d.load(w.at('patch_embedding'), config.in_channels, dim, { kernel: patch, stride: patch });
    this.conditionEmbedder = WanConditionEmbedder.load(w.at('condition_embedder'), config);
    this.blocks = Array.from({ length: config.num_layers }, (_, i) => WanTransformerBlock.load(w.at('blocks').at(i), config));
    this.normOut = new LayerNorm(config.eps);
    this.projOut = Linear.load(w.at('proj_out'), dim, config.out_channels * patch[0] * patch[1] * patch[2]);
    this.scaleShiftTable = w.float32().tensor('scale_shift_table', [1, 2, dim]);
  }

  /**
   * Loads a diffusers `transformer/` (or `transformer_2/`) folder (WanTransformer3DModel);
   * `opts.dtype` ('float32' by default, 'bfloat16', 'float16') is what it computes in.
   */
  static load(dir: string, opts: LoadOptions = {}): WanTransformer {
    return loadFromFolder(dir, opts, (folder, w, params) => new WanTransformer(readWanTransformerConfig(folder), w, params));
  }

  /**
   * The velocity prediction (B, out_channels, frames, height, width) for video latents, in the
   * model's dtype. Latents and embeddings of another dtype are cast to it first, as WanPipeline
   * casts them (diffusers' model would refuse them).
   */
  forward(inputs: WanTransformerInputs): Tensor {
    const { timestep, grid } = this.checkInputs(inputs);
    return tidy(() => {
      const rotary = inputs.rotary ?? this.rotaryEmbedding(grid, inputs.hiddenStates.device);
      let hidden = this.patchify(inputs.hiddenStates.cast(this.dtype));
      const image = inputs.encoderHiddenStatesImage?.cast(this.dtype) ?? null;
      const conditions = this.conditionEmbedder.forward(timestep, inputs.encoderHiddenStates.cast(this.dtype), image);
      const { temb, timestepProj, text } = conditions;
      for (const block of this.blocks) hidden = block.forward(hidden, text, timestepProj, rotary, conditions.image);
      return this.unpatchify(this.outputProjection(hidden, temb), grid);
    });
  }

  /** The (frames, rows, columns) patch grid of latents (B, C, frames, height, width); fractional where they are not multiples of the patch size. */
  patchGrid(latentShape: readonly number[]): [number, number, number] {
    return latentShape.slice(2).map((side, i) => side / this.config.patch_size[i]) as [number, number, number];
  }

  /** The rotary tables of a (frames, rows, columns) patch grid, float32 in every dtype (diffusers keeps `rope` in float32). */
  rotaryEmbedding(grid: readonly [number, number, number], device?: Device): RotaryEmbedding {
    return wanRotaryEmbedding(grid, this.config.attention_head_dim, { maxSeqLen: this.config.rope_max_seq_len, device });
  }

  /** Latents (B, C, F, H, W) -> patch tokens (B, tokens, dim), frame-major. */
  patchify(latents: Tensor): Tensor {
    return tidy(() => {
      const patches = this.patchEmbedding.forward(latents);
      const [batch, dim] = patches.shape;
      return patches.reshape(batch, dim, -1).transpose(1, 2).contiguous();
    });
  }

  /** norm_out modulated by scale_shift_table + temb (in float32), then proj_out: (B, tokens, out_channels * patch volume). */
  outputProjection(hidden: Tensor, temb: Tensor): Tensor {
    return tidy(() => {
      const [shift, scale] = add(this.scaleShiftTable, temb.cast('float32').unsqueeze(1)).split(2, 1);
      return this.projOut.forward(modulate(hidden, scale, shift, { eps: this.config.eps, inFloat32: true }));
    });
  }

  /** Patch tokens (B, tokens, out_channels * patch volume) -> latents (B, out_channels, F, H, W). */
  unpatchify(tokens: Tensor, grid: readonly [number, number, number]): Tensor {
    const [pt, ph, pw] = this.config.patch_size;
    const [frames, rows, columns] = grid;
    const batch = tokens.shape[0];
    return tidy(() =>
      tokens
        .reshape(batch, frames, rows, columns, pt, ph, pw, -1)
        .permute(0, 7, 1, 4, 2, 5, 3, 6)
        .contiguous()
        .reshape(batch, -1, frames * pt, rows * ph, columns * pw),
    );
  }

  /** Matrix-product FLOPs of one forward() call of this shape (the element-wise work is left out). */
  flopsPerCall(shape: WanCallShape): WanFlops {
    const { batch: b, videoTokens: n, textTokens: t, imageTokens: m = 0 } = shape;
    const c = this.config;
    const d = this.innerDim;
    const e = c.image_dim ?? 0;
    const patchVolume = c.patch_size.reduce((x, y) => x * y, 1);
    const embedders =
      2 * b * n * c.in_channels * patchVolume * d +
      2 * b * (c.freq_dim * d + d * d) +
      2 * b * d * 6 * d +
      2 * b * t * (c.text_dim * d + d * d) +
      2 * b * m * (e * e + e * d);
    // Self-attention: q, k, v, out over the video tokens; cross-attention: q, out over the video
    // tokens and k, v over the text (and the added k, v over the image tokens); the feed-forward;
    // and the attention products (QK^T and PV) with the video, text and image tokens.
    const perBlock = 8 * b * n * d * d + 4 * b * n * d * d + 4 * b * (t + m) * d * d + 4 * b * n * d * c.ffn_dim + 4 * b * n * n * d + 4 * b * n * (t + m) * d;
    const output = 2 * b * n * d * c.out_channels * patchVolume;
    return { embedders, perBlock, output, total: embedders + c.num_layers * perBlock + output };
  }

  /** Frees the weights. */
  dispose(): void {
    this.params.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Validates shapes; returns the timestep values and the patch grid. */
  private checkInputs(inputs: WanTransformerInputs): { timestep: Float32Array; grid: [number, number, number] } {
    const c = this.config;
    const shape = (t: Tensor): string => `(${t.shape.join(', ')})`;
    const fail = (what: string): never => {
      throw new TypeError(`WanTransformer.forward: ${what}`);
    };
    const { hiddenStates: x, encoderHiddenStates: e, encoderHiddenStatesImage: image, timestep: t } = inputs;
    if (x.rank !== 5 || x.shape[1] !== c.in_channels) fail(`hiddenStates must be (B, ${c.in_channels}, frames, height, width), got ${shape(x)}`);
    const batch = x.shape[0];
    const grid = this.patchGrid(x.shape);
    if (!grid.every(Number.isInteger))
      fail(`hiddenStates frames, height and width ${x.shape.slice(2).join(' x ')} must be multiples of the patch size ${c.patch_size.join(' x ')}`);
    const tokens = grid[0] * grid[1] * grid[2];
    if (inputs.rotary && (inputs.rotary.cos.rank !== 4 || inputs.rotary.cos.shape[1] !== tokens || inputs.rotary.cos.shape[3] !== c.attention_head_dim)) {
      fail(`rotary must hold (1, ${tokens}, 1, ${c.attention_head_dim}) tables (the patch grid's tokens, head dim), got cos ${shape(inputs.rotary.cos)}`);
    }
    if (e.rank !== 3 || e.shape[0] !== batch || e.shape[2] !== c.text_dim)
      fail(`encoderHiddenStates must be (${batch}, tokens, ${c.text_dim}), got ${shape(e)}`);
    if (t.size !== batch || t.rank > 1) fail(`timestep must be (${batch},), got ${shape(t)}`);
    if (c.image_dim === null) {
      if (image) fail(`encoderHiddenStatesImage given, but this is a text-to-video model (config.json has no image_dim)`);
    } else if (!image) {
      fail(`encoderHiddenStatesImage (the CLIP image embeddings) is required: this is an image-to-video model (image_dim ${c.image_dim})`);
    } else if (c.pos_embed_seq_len === null) {
      if (image.rank !== 3 || image.shape[0] !== batch || image.shape[2] !== c.image_dim)
        fail(`encoderHiddenStatesImage must be (${batch}, tokens, ${c.image_dim}), got ${shape(image)}`);
    } else if (image.rank !== 3 || image.shape[0] !== 2 * batch || 2 * image.shape[1] !== c.pos_embed_seq_len || image.shape[2] !== c.image_dim) {
      fail(
        `encoderHiddenStatesImage must be (${2 * batch}, ${c.pos_embed_seq_len / 2}, ${c.image_dim}): the first and the last frame's embeddings of each video, got ${shape(image)}`,
      );
    }
    return { timestep: t.toFloat32Array(), grid };
  }
}
