// diffusers' SD3Transformer2DModel: patch-embeds latents (with the stored positional embedding
// cropped to their size), embeds timestep and pooled text, projects the prompt embeddings,
// runs the joint blocks, and projects the image stream back to latent patches. The `dtype` load
// option (diffusers' torch_dtype) makes it compute in bfloat16 or float16 as diffusers does: every
// weight and the positional embedding in that dtype (SD3 keeps nothing in float32), the timestep
// features computed in float32 and rounded to it, and every other op in the dtype.
import { add, tidy, type Tensor } from '@ditcache/cuda-runtime';
import {
  AdaLayerNormContinuous,
  Linear,
  MlpEmbedding,
  PatchEmbed,
  loadFromFolder,
  sinusoidalTimestepEmbedding,
  type ComputeDtype,
  type LoadOptions,
  type ParameterStore,
  type WeightReader,
} from '@ditcache/diffusion';

import { JointTransformerBlock, type SD3Block } from './blocks.js';
import { readSD3TransformerConfig, type SD3TransformerConfig } from './config.js';

/** Width of the sinusoidal timestep features. */
const TIME_PROJ_DIM = 256;
/** Epsilon of the output AdaLayerNormContinuous. */
const NORM_OUT_EPS = 1e-6;

export interface SD3TransformerInputs {
  /** Latents (B, in_channels, height, width), height and width multiples of patch_size. */
  hiddenStates: Tensor;
  /** Prompt embeddings (B, text tokens, joint_attention_dim). */
  encoderHiddenStates: Tensor;
  /** Pooled prompt embedding (B, pooled_projection_dim). */
  pooledProjections: Tensor;
  /** (B,) on the scheduler's 0..1000 scale, as StableDiffusion3Pipeline passes it. */
  timestep: Tensor;
}

/**
 * diffusers' CombinedTimestepTextProjEmbeddings: timestep features plus the projected pooled text;
 * the features are computed in float32 and rounded to the pooled embedding's dtype.
 */
class TimestepTextEmbedding {
  constructor(
    readonly timestepEmbedder: MlpEmbedding,
    readonly textEmbedder: MlpEmbedding,
  ) {}

  forward(timesteps: Float32Array, pooled: Tensor): Tensor {
    return tidy(() => {
      const features = sinusoidalTimestepEmbedding(timesteps, TIME_PROJ_DIM, {
        flipSinToCos: true,
        downscaleFreqShift: 0,
        device: pooled.device,
        dtype: pooled.dtype,
      });
      return add(this.timestepEmbedder.forward(features), this.textEmbedder.forward(pooled));
    });
  }
}

export class SD3Transformer implements Disposable {
  readonly config: SD3TransformerConfig;
  /** What it computes in (the `dtype` load option); forward() casts its inputs to it and returns it. */
  readonly dtype: ComputeDtype;
  /** heads * head dim: the width of both streams. */
  readonly innerDim: number;
  readonly outChannels: number;
  /**
   * The joint blocks, run in order by forward(). Replaceable: a cache engine may put its own
   * SD3Block objects here; forward() does nothing per block but call it.
   */
  transformerBlocks: SD3Block[];
  private readonly posEmbed: PatchEmbed;
  private readonly timeTextEmbed: TimestepTextEmbedding;
  private readonly contextEmbedder: Linear;
  private readonly normOut: AdaLayerNormContinuous;
  private readonly projOut: Linear;
  private readonly params: ParameterStore;

  private constructor(config: SD3TransformerConfig, w: WeightReader, params: ParameterStore) {
    this.config = config;
    this.params = params;
    this.dtype = w.dtype;
    const heads = config.num_attention_heads;
    const headDim = config.attention_head_dim;
    const dim = heads * headDim;
    this.innerDim = dim;
    this.outChannels = config.out_channels ?? config.in_channels;
    this.posEmbed = PatchEmbed.load(w.at('pos_embed'), {
      patchSize: config.patch_size,
      inChannels: config.in_channels,
      embedDim: dim,
      posEmbedMaxSize: config.pos_embed_max_size as number,
    });
    const tte = w.at('time_text_embed');
    this.timeTextEmbed = new TimestepTextEmbedding(
      MlpEmbedding.load(tte.at('timestep_embedder'), TIME_PROJ_DIM, dim, 'silu'),
      MlpEmbedding.load(tte.at('text_embedder'), config.pooled_projection_dim, dim, 'silu'),
    );
    this.contextEmbedder = Linear.load(w.at('context_embedder'), config.joint_attention_dim, config.caption_projection_dim);
    const last = config.num_layers - 1;
    this.transformerBlocks = Array.from({ length: config.num_layers }, (_, i) =>
      JointTransformerBlock.load(w.at('transformer_blocks').at(i), {
        dim,
        heads,
        headDim,
        qkNorm: config.qk_norm === 'rms_norm',
        contextPreOnly: i === last,
        dualAttention: config.dual_attention_layers.includes(i),
      }),
    );
    this.normOut = AdaLayerNormContinuous.load(w.at('norm_out'), dim, NORM_OUT_EPS);
    this.projOut = Linear.load(w.at('proj_out'), dim, config.patch_size * config.patch_size * this.outChannels);
  }

  /** Loads a diffusers `transformer/` folder (SD3Transformer2DModel); `opts.dtype` ('float32' by default, 'bfloat16', 'float16') is what it computes in. */
  static load(dir: string, opts: LoadOptions = {}): SD3Transformer {
    return loadFromFolder(dir, opts, (folder, w, params) => new SD3Transformer(readSD3TransformerConfig(folder), w, params));
  }

  /**
   * The velocity prediction (B, out_channels, height, width) for latents (B, in_channels, height,
   * width), in the model's dtype. Latents and embeddings of another dtype are cast to it first, as
   * StableDiffusion3Pipeline casts them (diffusers' model would refuse them).
   */
  forward(inputs: SD3TransformerInputs): Tensor {
    const timesteps = this.checkInputs(inputs);
    const [batch, , height, width] = inputs.hiddenStates.shape;
    return tidy(() => {
      let hidden = this.posEmbed.forward(inputs.hiddenStates.cast(this.dtype));
      const temb = this.timeTextEmbed.forward(timesteps, inputs.pooledProjections.cast(this.dtype));
      let encoder: Tensor | null = this.contextEmbedder.forward(inputs.encoderHiddenStates.cast(this.dtype));
      for (const [i, block] of this.transformerBlocks.entries()) {
        if (encoder === null)
          throw new TypeError(`SD3Transformer.forward: block ${i - 1} ended the encoder stream, but only the last block may (context_pre_only)`);
        [encoder, hidden] = block.forward(hidden, encoder, temb);
      }
      const patches = this.projOut.forward(this.normOut.forward(hidden, temb));
      return this.unpatchify(patches, batch, height, width);
    });
  }

  /** (B, h * w, p * p * C) patch tokens -> (B, C, h * p, w * p), as diffusers' einsum "nhwpqc->nchpwq". */
  private unpatchify(patches: Tensor, batch: number, height: number, width: number): Tensor {
    const p = this.config.patch_size;
    const c = this.outChannels;
    return patches
      .reshape(batch, height / p, width / p, p, p, c)
      .permute(0, 5, 1, 3, 2, 4)
      .contiguous()
      .reshape(batch, c, height, width);
  }

  /** Throws unless latents of this size are whole patches within the positional-embedding grid. */
  checkLatentSize(height: number, width: number): void {
    this.posEmbed.grid(height, width);
  }

  /** Frees the weights. */
  dispose(): void {
    this.params.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Validates shapes and returns the timestep values. */
  private checkInputs(inputs: SD3TransformerInputs): Float32Array {
    const c = this.config;
    const shape = (t: Tensor): string => `(${t.shape.join(', ')})`;
    const fail = (what: string): never => {
      throw new TypeError(`SD3Transformer.forward: ${what}`);
    };
    const { hiddenStates: x, encoderHiddenStates: e, pooledProjections: p, timestep: t } = inputs;
    if (x.rank !== 4 || x.shape[1] !== c.in_channels) fail(`hiddenStates must be latents (B, ${c.in_channels}, height, width), got ${shape(x)}`);
    const batch = x.shape[0];
    this.checkLatentSize(x.shape[2], x.shape[3]);
    if (e.rank !== 3 || e.shape[0] !== batch || e.shape[2] !== c.joint_attention_dim) {
      fail(`encoderHiddenStates must be (${batch}, tokens, ${c.joint_attention_dim}), got ${shape(e)}`);
    }
    if (p.rank !== 2 || p.shape[0] !== batch || p.shape[1] !== c.pooled_projection_dim)
      fail(`pooledProjections must be (${batch}, ${c.pooled_projection_dim}), got ${shape(p)}`);
    if (t.size !== batch || t.rank > 1) fail(`timestep must be (${batch},), got ${shape(t)}`);
    return t.toFloat32Array();
  }
}
