// diffusers' HiDreamImageTransformer2DModel: patchifies (B, C, H, W) latents, embeds them, the
// timestep, the pooled text and every text stream (T5 once, one Llama layer per block), runs the
// double-stream blocks and then the single-stream blocks, and projects the image tokens back to
// latent patches. The text side grows per block: each block sees the "initial" text tokens (T5,
// then the last block's Llama projection) plus its own Llama projection, and the loop keeps only
// the initial tokens of what a block returns. The `dtype` load option (diffusers' torch_dtype)
// makes it compute in bfloat16 or float16 as diffusers does: every weight in that dtype (HiDream
// keeps none in float32), the timestep features computed in float32 and rounded to it, the
// rotary tables in float32, and every other op in the dtype.
import { add, concat, ones, tidy, type Device, type Tensor } from '@ditcache/cuda-runtime';
import {
  Linear,
  MlpEmbedding,
  modulate,
  modulationParameters,
  loadFromFolder,
  sinusoidalTimestepEmbedding,
  type ComputeDtype,
  type LoadOptions,
  type ParameterStore,
  type WeightReader,
} from '@ditcache/diffusion';

import { HiDreamDoubleStreamBlock, HiDreamSingleStreamBlock, type DoubleStreamBlock, type HiDreamBlockContext, type SingleStreamBlock } from './blocks.js';
import { readHiDreamTransformerConfig, type HiDreamTransformerConfig } from './config.js';
import { swigluHiddenDim } from './feed-forward.js';
import { imageTokenCount, patchPositions, patchify, unpatchify } from './latents.js';
import { hidreamRotaryEmbedding, type HiDreamRotary } from './rotary.js';

/** Width of the sinusoidal timestep features. */
const TIME_PROJ_DIM = 256;

export interface HiDreamTransformerInputs {
  /** Latents (B, in_channels, H, W); H and W multiples of patch_size. */
  hiddenStates: Tensor;
  /** (B,) timesteps on the scheduler's 0..1000 scale. */
  timesteps: Tensor;
  /** T5 embeddings (B, T5 tokens, caption_channels[0]). */
  encoderHiddenStatesT5: Tensor;
  /** The stacked Llama hidden states (layers, B, Llama tokens, caption_channels[1]). */
  encoderHiddenStatesLlama3: Tensor;
  /** Pooled text embedding (B, text_emb_dim). */
  pooledEmbeds: Tensor;
  /**
   * The rotary tables of the call's joint sequence, from `rotaryEmbedding(...)`: a caller that runs
   * many steps over one latent size and prompt length (HiDreamPipeline) makes them once. Made from
   * the shapes when absent.
   */
  rotary?: HiDreamRotary;
}

/** A transformer call up to the blocks: what embed() gives to runBlocks() and the output layer. */
export interface HiDreamEmbedded {
  /** (B, image tokens, dim): the embedded patches (padded to max_seq for non-square latents). */
  hidden: Tensor;
  /** (B, T5 tokens, dim): the projected T5 states. */
  t5: Tensor;
  /** What the double-stream blocks share (masks over the image tokens). */
  context: HiDreamBlockContext;
  /** The patch grid of the latents. */
  rows: number;
  cols: number;
}

/** The sizes a call's cost depends on. */
export interface HiDreamCallShape {
  batch: number;
  /** The image tokens the blocks run on: padded to max_seq for non-square latents (see imageTokens()). */
  imageTokens: number;
  t5Tokens: number;
  /** Tokens of one Llama layer. */
  llamaTokens: number;
}

/** Floating-point operations of one transformer call, counting the matrix products (a multiply-add is 2). */
export interface HiDreamFlops {
  /** x_embedder, t_embedder, p_embedder and the caption projections. */
  embedders: number;
  /** One double-stream block. */
  perDoubleBlock: number;
  /** One single-stream block. */
  perSingleBlock: number;
  /** final_layer. */
  output: number;
  total: number;
}

/** t_embedder: sinusoidal features of the timesteps, then an MLP. */
export class TimestepEmbedder {
  constructor(readonly mlp: MlpEmbedding) {}

  /**
   * (B,) timesteps on the 0..1000 scale -> (B, dim). The features are computed in float32 and
   * rounded to `dtype` (the latents' dtype: diffusers' `time_proj(t).to(dtype=wdtype)`).
   */
  forward(timesteps: Tensor, dtype: ComputeDtype = 'float32'): Tensor {
    const values = timesteps.toFloat32Array();
    return tidy(() =>
      this.mlp.forward(sinusoidalTimestepEmbedding(values, TIME_PROJ_DIM, { flipSinToCos: true, downscaleFreqShift: 0, device: timesteps.device, dtype })),
    );
  }
}

/** final_layer (HiDreamImageOutEmbed): adaLN-modulated layer norm, then the patch projection. */
export class HiDreamOutputLayer {
  constructor(
    readonly adaLNModulation: Linear,
    readonly linear: Linear,
  ) {}

  forward(hidden: Tensor, temb: Tensor): Tensor {
    return tidy(() => {
      const [shift, scale] = modulationParameters(this.adaLNModulation, temb, 2);
      return this.linear.forward(modulate(hidden, scale, shift));
    });
  }
}

/** The text tokens every double-stream block starts from: [T5 projection, the last block's Llama projection]. */
export function initialEncoderStates(x: HiDreamEmbedded): Tensor {
  return concat([x.t5, x.context.llamaStates[x.context.llamaStates.length - 1]], 1);
}

/**
 * The single-stream blocks' context: the image mask extended over the `textTokens` text tokens
 * each block sees (the initial ones and its own Llama projection), which are never masked.
 */
export function singleStreamContext(context: HiDreamBlockContext, textTokens: number): HiDreamBlockContext {
  const { masks } = context;
  if (!masks) return context;
  return { ...context, masks: concat([masks, ones([masks.shape[0], textTokens], { device: masks.device, dtype: masks.dtype })], 1) };
}

export class HiDreamTransformer implements Disposable {
  readonly config: HiDreamTransformerConfig;
  /** What it computes in (the `dtype` load option); forward() casts its inputs to it and returns it. */
  readonly dtype: ComputeDtype;
  /** heads * head dim: the width of every stream. */
  readonly innerDim: number;
  readonly outChannels: number;
  /** Tokens that padded (non-square) latents are brought to: max_resolution / patch_size^2. */
  readonly maxSeq: number;
  /**
   * The double-stream blocks, run in order by runBlocks(). Replaceable (see patchHiDreamForCaching
   * and the README for what each list's blocks take and return, unpatched and patched).
   */
  doubleStreamBlocks: DoubleStreamBlock[];
  /** The single-stream blocks, run after the double-stream ones; replaceable likewise. */
  singleStreamBlocks: SingleStreamBlock[];
  readonly xEmbedder: Linear;
  readonly tEmbedder: TimestepEmbedder;
  readonly pEmbedder: MlpEmbedding;
  /** One Llama projection per block, in block order, then the T5 projection. */
  readonly captionProjection: readonly Linear[];
  readonly finalLayer: HiDreamOutputLayer;
  private readonly params: ParameterStore;

  private constructor(config: HiDreamTransformerConfig, w: WeightReader, params: ParameterStore) {
    this.config = config;
    this.params = params;
    this.dtype = w.dtype;
    const dim = config.num_attention_heads * config.attention_head_dim;
    const patch = config.patch_size;
    this.innerDim = dim;
    this.outChannels = config.out_channels ?? config.in_channels;
    this.maxSeq = Math.floor((config.max_resolution[0] * config.max_resolution[1]) / (patch * patch));
    this.xEmbedder = Linear.load(w.at('x_embedder.proj'), patch * patch * config.in_channels, dim);
    this.tEmbedder = new TimestepEmbedder(MlpEmbedding.load(w.at('t_embedder.timestep_embedder'), TIME_PROJ_DIM, dim, 'silu'));
    this.pEmbedder = MlpEmbedding.load(w.at('p_embedder.pooled_embedder'), config.text_emb_dim, dim, 'silu');
    this.doubleStreamBlocks = Array.from({ length: config.num_layers }, (_, i) =>
      HiDreamDoubleStreamBlock.load(w.at('double_stream_blocks').at(i).at('block'), config),
    );
    this.singleStreamBlocks = Array.from({ length: config.num_single_layers }, (_, i) =>
      HiDreamSingleStreamBlock.load(w.at('single_stream_blocks').at(i).at('block'), config),
    );
    this.finalLayer = new HiDreamOutputLayer(
      Linear.load(w.at('final_layer.adaLN_modulation.1'), dim, 2 * dim),
      Linear.load(w.at('final_layer.linear'), dim, patch * patch * this.outChannels),
    );
    const [t5Width, llamaWidth] = config.caption_channels;
    const blocks = config.num_layers + config.num_single_layers;
    this.captionProjection = Array.from({ length: blocks + 1 }, (_, i) =>
      Linear.load(w.at('caption_projection').at(i).at('linear'), i < blocks ? llamaWidth : t5Width, dim, { bias: false }),
    );
  }

  /** Loads a diffusers `transformer/` folder (HiDreamImageTransformer2DModel); `opts.dtype` ('float32' by default, 'bfloat16', 'float16') is what it computes in. */
  static load(dir: string, opts: LoadOptions = {}): HiDreamTransformer {
    return loadFromFolder(dir, opts, (folder, w, params) => new HiDreamTransformer(readHiDreamTransformerConfig(folder), w, params));
  }

  /**
   * The prediction (B, out_channels, H, W) for latents (B, in_channels, H, W), in the model's
   * dtype. Latents and embeddings of another dtype are cast to it first, as HiDreamPipeline casts
   * them (diffusers' model would refuse them).
   */
  forward(inputs: HiDreamTransformerInputs): Tensor {
    return tidy(() => {
      const embedded = this.embed(inputs);
      const hidden = this.runBlocks(embedded);
      return unpatchify(this.finalLayer.forward(hidden, embedded.context.temb), embedded.rows, embedded.cols, this.config.patch_size);
    });
  }

  /**
   * The rotary tables of a call's joint sequence, for latents of `latentShape` (B, C, H, W) and
   * `textTokens` text tokens (T5 plus twice the Llama tokens: the last block's and a block's own):
   * the image patch positions (padded to max_seq when not square), then the text at (0, 0, 0).
   */
  rotaryEmbedding(latentShape: readonly number[], textTokens: number, device?: Device): HiDreamRotary {
    const positions = patchPositions(latentShape[2], latentShape[3], this.config.patch_size, this.maxSeq);
    const ids = new Float64Array(positions.length + 3 * textTokens);
    ids.set(positions);
    return hidreamRotaryEmbedding(ids, this.config.axes_dims_rope, device);
  }

  /** Everything before the blocks: checks, patchify, the embedders, the caption projections and the rotary tables. */
  embed(inputs: HiDreamTransformerInputs): HiDreamEmbedded {
    this.checkInputs(inputs);
    const c = this.config;
    return tidy(() => {
      const { tokens, masks, rows, cols } = patchify(inputs.hiddenStates.cast(this.dtype), c.patch_size, this.maxSeq);
      const device = tokens.device;
      const hidden = this.xEmbedder.forward(tokens);
      const temb = add(this.tEmbedder.forward(inputs.timesteps, this.dtype), this.pEmbedder.forward(inputs.pooledEmbeds.cast(this.dtype)));
      const llama = inputs.encoderHiddenStatesLlama3.cast(this.dtype);
      const llamaStates = c.llama_layers.map((layer, block) => this.captionProjection[block].forward(llama.narrow(0, layer, 1).squeeze(0)));
      const t5 = this.captionProjection[llamaStates.length].forward(inputs.encoderHiddenStatesT5.cast(this.dtype));
      // Text tokens: T5, the last block's Llama states and a block's own.
      const textTokens = t5.shape[1] + 2 * llama.shape[2];
      const rotary = inputs.rotary ?? this.rotaryEmbedding(inputs.hiddenStates.shape, textTokens, device);
      const jointTokens = hidden.shape[1] + textTokens;
      if (rotary.cos.shape[0] !== jointTokens) {
        throw new TypeError(`HiDreamTransformer.forward: rotary must hold tables for ${jointTokens} tokens (image, then text), got ${rotary.cos.shape[0]}`);
      }
      return { hidden, t5, context: { temb, rotary, masks, llamaStates }, rows, cols };
    });
  }

  /**
   * The blocks, as diffusers' forward runs them: each double-stream block gets the initial text
   * tokens plus its own Llama projection and the loop keeps the initial ones of what it returns;
   * the single-stream blocks run on [image, initial text] plus their own Llama projection, cut
   * back after each block. Returns the image tokens (B, image tokens, dim).
   */
  runBlocks(x: HiDreamEmbedded): Tensor {
    return tidy(() => {
      const { context } = x;
      let blockId = 0;
      let hidden = x.hidden;
      let initial = initialEncoderStates(x);
      const initialLen = initial.shape[1];
      for (const block of this.doubleStreamBlocks) {
        [hidden, initial] = block.forward(hidden, concat([initial, context.llamaStates[blockId]], 1), context);
        initial = initial.narrow(1, 0, initialLen);
        blockId += 1;
      }
      const imageLen = hidden.shape[1];
      hidden = concat([hidden, initial], 1);
      const jointLen = hidden.shape[1];
      const single = singleStreamContext(context, initialLen + context.llamaStates[0].shape[1]);
      for (const block of this.singleStreamBlocks) {
        hidden = block.forward(concat([hidden, context.llamaStates[blockId]], 1), single).narrow(1, 0, jointLen);
        blockId += 1;
      }
      return hidden.narrow(1, 0, imageLen);
    });
  }

  /** The image tokens the blocks run on for latents of this height and width. */
  imageTokens(height: number, width: number): number {
    return imageTokenCount(height, width, this.config.patch_size, this.maxSeq);
  }

  /** Matrix-product FLOPs of one forward() call of this shape (element-wise work left out). */
  flopsPerCall(shape: HiDreamCallShape): HiDreamFlops {
    const { batch: b, imageTokens: n, t5Tokens, llamaTokens } = shape;
    const c = this.config;
    const d = this.innerDim;
    const patch = c.patch_size;
    const text = t5Tokens + 2 * llamaTokens;
    const joint = n + text;
    const blocks = c.num_layers + c.num_single_layers;
    const linear = (rows: number, inF: number, outF: number): number => 2 * rows * inF * outF;
    const swiglu = (rows: number, hidden: number): number => 3 * linear(rows, d, swigluHiddenDim(hidden));
    // The routed experts count for the ones each token is sent to; the shared expert for every token.
    const imageMlp = (rows: number): number =>
      c.num_routed_experts > 0
        ? linear(rows, d, c.num_routed_experts) + c.num_activated_experts * swiglu(rows, 4 * d) + swiglu(rows, 2 * d)
        : swiglu(rows, 4 * d);
    // q, k, v and out projections, then QK^T and AV over the joint sequence.
    const attention = (tokens: number): number => 4 * linear(b * tokens, d, d) + 4 * b * tokens * tokens * d;
    const embedders =
      linear(b * n, patch * patch * c.in_channels, d) +
      linear(b, TIME_PROJ_DIM, d) +
      linear(b, d, d) +
      linear(b, c.text_emb_dim, d) +
      linear(b, d, d) +
      blocks * linear(b * llamaTokens, c.caption_channels[1], d) +
      linear(b * t5Tokens, c.caption_channels[0], d);
    const perDoubleBlock = linear(b, d, 12 * d) + attention(joint) + imageMlp(b * n) + swiglu(b * text, 4 * d);
    const perSingleBlock = linear(b, d, 6 * d) + attention(joint) + imageMlp(b * joint);
    const output = linear(b, d, 2 * d) + linear(b * n, d, patch * patch * this.outChannels);
    return {
      embedders,
      perDoubleBlock,
      perSingleBlock,
      output,
      total: embedders + c.num_layers * perDoubleBlock + c.num_single_layers * perSingleBlock + output,
    };
  }

  /** Frees the weights. */
  dispose(): void {
    this.params.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  private checkInputs(inputs: HiDreamTransformerInputs): void {
    const c = this.config;
    const shape = (t: Tensor): string => `(${t.shape.join(', ')})`;
    const fail = (what: string): never => {
      throw new TypeError(`HiDreamTransformer.forward: ${what}`);
    };
    const { hiddenStates: x, timesteps: t, encoderHiddenStatesT5: t5, encoderHiddenStatesLlama3: llama, pooledEmbeds: pooled } = inputs;
    const [t5Width, llamaWidth] = c.caption_channels;
    if (x.rank !== 4 || x.shape[1] !== c.in_channels) fail(`hiddenStates must be latents (B, ${c.in_channels}, H, W), got ${shape(x)}`);
    const [batch, , height, width] = x.shape;
    if (height % c.patch_size !== 0 || width % c.patch_size !== 0)
      fail(`hiddenStates height and width must be multiples of patch_size ${c.patch_size}, got ${shape(x)}`);
    if ((height / c.patch_size) * (width / c.patch_size) > this.imageTokens(height, width)) {
      fail(`non-square latents ${shape(x)} make more tokens than max_seq (${this.maxSeq}, from max_resolution [${c.max_resolution.join(', ')}])`);
    }
    if (t.rank !== 1 || t.size !== batch) fail(`timesteps must be (${batch},), got ${shape(t)}`);
    if (t5.rank !== 3 || t5.shape[0] !== batch || t5.shape[2] !== t5Width)
      fail(`encoderHiddenStatesT5 must be (${batch}, tokens, ${t5Width}), got ${shape(t5)}`);
    if (llama.rank !== 4 || llama.shape[1] !== batch || llama.shape[3] !== llamaWidth) {
      fail(`encoderHiddenStatesLlama3 must be stacked Llama layers (layers, ${batch}, tokens, ${llamaWidth}), got ${shape(llama)}`);
    }
    const deepest = Math.max(...c.llama_layers);
    if (llama.shape[0] <= deepest) fail(`encoderHiddenStatesLlama3 stacks ${llama.shape[0]} Llama layers, but llama_layers reads layer ${deepest}`);
    if (pooled.rank !== 2 || pooled.shape[0] !== batch || pooled.shape[1] !== c.text_emb_dim)
      fail(`pooledEmbeds must be (${batch}, ${c.text_emb_dim}), got ${shape(pooled)}`);
  }
}
