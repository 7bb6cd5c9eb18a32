// diffusers' WanTransformer3DModel: cuts video latents into 3-D patches (a Conv3d with kernel =
// stride = patch size), embeds the timestep and the text, runs the blocks over the patch tokens
// with 3-D rotary embeddings, and projects the tokens back to latent patches.
import { add, silu, tidy, type Device, type Tensor } from '@ditcache/cuda-runtime';
import {
  Conv3d,
  LayerNorm,
  Linear,
  MlpEmbedding,
  loadFromFolder,
  sinusoidalTimestepEmbedding,
  type LoadOptions,
  type ParameterStore,
  type WeightReader,
} from '@ditcache/diffusion';

import { WanTransformerBlock, modulate, type WanBlock } from './blocks.js';
import { readWanTransformerConfig, type WanTransformerConfig } from './config.js';
import { wanRotaryEmbedding, type RotaryEmbedding } from './rotary.js';

export interface WanTransformerInputs {
  /** Video latents (B, in_channels, frames, height, width). */
  hiddenStates: Tensor;
  /** (B,) on the scheduler's 0..1000 scale, as WanPipeline passes it. */
  timestep: Tensor;
  /** Prompt embeddings (B, text tokens, text_dim). */
  encoderHiddenStates: Tensor;
}

/** The sizes a call's cost depends on. */
export interface WanCallShape {
  batch: number;
  /** Patch tokens: (frames / p_t) * (height / p_h) * (width / p_w) of the latents. */
  videoTokens: number;
  textTokens: number;
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
}

/**
 * condition_embedder (WanTimeTextImageEmbedding without an image embedder): sinusoidal timestep
 * features (cos first) through time_embedder, time_proj of silu(temb) to the six modulations,
 * and the GELU-tanh text projection.
 */
export class WanConditionEmbedder {
  constructor(
    readonly freqDim: number,
    readonly timeEmbedder: MlpEmbedding,
    readonly timeProj: Linear,
    readonly textEmbedder: MlpEmbedding,
  ) {}

  static load(w: WeightReader, config: WanTransformerConfig): WanConditionEmbedder {
    const dim = config.num_attention_heads * config.attention_head_dim;
    return new WanConditionEmbedder(
      config.freq_dim,
      MlpEmbedding.load(w.at('time_embedder'), config.freq_dim, dim, 'silu'),
      Linear.load(w.at('time_proj'), dim, 6 * dim),
      MlpEmbedding.load(w.at('text_embedder'), config.text_dim, dim, 'gelu_tanh'),
    );
  }

  forward(timesteps: ArrayLike<number>, text: Tensor): WanConditions {
    return tidy(() => {
      const features = sinusoidalTimestepEmbedding(timesteps, this.freqDim, { flipSinToCos: true, downscaleFreqShift: 0, device: text.device });
      const temb = this.timeEmbedder.forward(features);
      const timestepProj = this.timeProj.forward(silu(temb)).reshape(timesteps.length, 6, -1);
      return { temb, timestepProj, text: this.textEmbedder.forward(text) };
    });
  }
}

export class WanTransformer implements Disposable {
  readonly config: WanTransformerConfig;
  /** heads * head dim: the width of the tokens. */
  readonly innerDim: number;
  /**
   * The blocks, run in order by forward(), which does nothing per block but call `forward`.
   * Replaceable: a cache engine may put its own WanBlock objects here.
   */
  blocks: WanBlock[];
  readonly patchEmbedding: Conv3d;
  readonly conditionEmbedder: WanConditionEmbedder;
  /** The output FP32LayerNorm, without affine weights. */
  readonly normOut: LayerNorm;
  readonly projOut: Linear;
  /** (1, 2, dim): added to temb for the output norm's shift and scale. */
  readonly scaleShiftTable: Tensor;
  private readonly params: ParameterStore;

  private constructor(config: WanTransformerConfig, w: WeightReader, params: ParameterStore) {
    this.config = config;
    this.params = params;
    const dim = config.num_attention_heads * config.attention_head_dim;
    const patch = config.patch_size as [number, number, number];
    this.innerDim = dim;
    this.patchEmbedding = Conv3d.load(w.at('patch_embedding'), config.in_channels, dim, { kernel: patch, stride: patch });
    this.conditionEmbedder = WanConditionEmbedder.load(w.at('condition_embedder'), config);
    this.blocks = Array.from({ length: config.num_layers }, (_, i) => WanTransformerBlock.load(w.at('blocks').at(i), config));
    this.normOut = new LayerNorm(config.eps);
    this.projOut = Linear.load(w.at('proj_out'), dim, config.out_channels * patch[0] * patch[1] * patch[2]);
    this.scaleShiftTable = w.tensor('scale_shift_table', [1, 2, dim]);
  }

  /** Loads a diffusers `transformer/` (or `transformer_2/`) folder (WanTransformer3DModel). */
  static load(dir: string, opts: LoadOptions = {}): WanTransformer {
    return loadFromFolder(dir, opts, (folder, w, params) => {
      const config = readWanTransformerConfig(folder);
      if (config.image_dim !== null || config.added_kv_proj_dim !== null) {
        throw new TypeError(`${dir}/config.json: an image-to-video model (image_dim ${config.image_dim}, added_kv_proj_dim ${config.added_kv_proj_dim}); only text-to-video is supported yet`);
      }
      return new WanTransformer(config, w, params);
    });
  }

  /** The velocity prediction (B, out_channels, frames, height, width) for video latents. */
  forward(inputs: WanTransformerInputs): Tensor {
    const { timestep, grid } = this.checkInputs(inputs);
    return tidy(() => {
      const rotary = this.rotaryEmbedding(grid, inputs.hiddenStates.device);
      let hidden = this.patchify(inputs.hiddenStates);
      const { temb, timestepProj, text } = this.conditionEmbedder.forward(timestep, inputs.encoderHiddenStates);
      for (const block of this.blocks) hidden = block.forward(hidden, text, timestepProj, rotary);
      return this.unpatchify(this.outputProjection(hidden, temb), grid);
    });
  }

  /** The rotary tables of a (frames, rows, columns) patch grid. */
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

  /** norm_out modulated by scale_shift_table + temb, then proj_out: (B, tokens, out_channels * patch volume). */
  outputProjection(hidden: Tensor, temb: Tensor): Tensor {
    return tidy(() => {
      const [shift, scale] = add(this.scaleShiftTable, temb.unsqueeze(1)).split(2, 1);
      return this.projOut.forward(modulate(hidden, scale, shift, this.config.eps));
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
    const { batch: b, videoTokens: n, textTokens: t } = shape;
    const c = this.config;
    const d = this.innerDim;
    const patchVolume = c.patch_size.reduce((x, y) => x * y, 1);
    const embedders = 2 * b * n * c.in_channels * patchVolume * d + 2 * b * (c.freq_dim * d + d * d) + 2 * b * d * 6 * d + 2 * b * t * (c.text_dim * d + d * d);
    // Self-attention: q, k, v, out over the video tokens; cross-attention: q, out over the video
    // tokens and k, v over the text; the feed-forward; and both attention products (QK^T and PV).
    const perBlock = 8 * b * n * d * d + 4 * b * n * d * d + 4 * b * t * d * d + 4 * b * n * d * c.ffn_dim + 4 * b * n * n * d + 4 * b * n * t * d;
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
    const { hiddenStates: x, encoderHiddenStates: e, timestep: t } = inputs;
    if (x.rank !== 5 || x.shape[1] !== c.in_channels) fail(`hiddenStates must be (B, ${c.in_channels}, frames, height, width), got ${shape(x)}`);
    const [batch, , ...sides] = x.shape;
    const grid = sides.map((side, i) => side / c.patch_size[i]) as [number, number, number];
    if (!grid.every(Number.isInteger)) fail(`hiddenStates frames, height and width ${sides.join(' x ')} must be multiples of the patch size ${c.patch_size.join(' x ')}`);
    if (e.rank !== 3 || e.shape[0] !== batch || e.shape[2] !== c.text_dim) fail(`encoderHiddenStates must be (${batch}, tokens, ${c.text_dim}), got ${shape(e)}`);
    if (t.size !== batch || t.rank > 1) fail(`timestep must be (${batch},), got ${shape(t)}`);
    return { timestep: t.toFloat32Array(), grid };
  }
}
