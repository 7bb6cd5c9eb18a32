// diffusers' ChromaTransformer2DModel: FLUX.1's transformer with the per-block norm linears
// replaced by one modulation table (see modulation.ts), no pooled text embedding, and an attention
// mask over text + image tokens. Padded text keys are excluded from every attention, as in
// Chroma's reference implementation and ComfyUI (diffusers adds its float mask as a bias and so
// masks nothing: issues #12116 and #13619). In bfloat16 / float16 (`dtype`) it rounds where
// diffusers does under that torch_dtype, as FluxTransformer does.
import { concat, tensor, tidy, type Device, type Tensor } from '@ditcache/cuda-runtime';
import {
  timesThousandInDtype,
  Linear,
  checkFloat16Range,
  loadFromFolder,
  modulate,
  multiAxisRotaryTables,
  type ComputeDtype,
  type LoadOptions,
  type ParameterStore,
  type RotaryTables,
  type WeightReader,
} from '@ditcache/diffusion';

import { ChromaSingleTransformerBlock, ChromaTransformerBlock, type ChromaBlockContext, type ChromaDoubleBlock, type ChromaSingleBlock } from './blocks.js';
import { modulationRows, readChromaTransformerConfig, type ChromaTransformerConfig } from './config.js';
import { DistilledGuidanceLayer, approximatorInput } from './modulation.js';

export interface ChromaTransformerInputs {
  /** Packed latents (B, image tokens, in_channels). */
  hiddenStates: Tensor;
  /** Prompt embeddings (B, text tokens, joint_attention_dim). */
  encoderHiddenStates: Tensor;
  /** (B,) in [0, 1]: sigma, i.e. the scheduler's timestep / 1000; the model scales it by 1000. */
  timestep: Tensor;
  /** (image tokens, axes) position ids: [0, row, column]. */
  imgIds: Tensor;
  /** (text tokens, axes) position ids, zeros in ChromaPipeline. */
  txtIds: Tensor;
  /**
   * diffusers' attention_mask: (B, text + image tokens), nonzero for the tokens other tokens may
   * attend to (ChromaPipeline: the prompt's tokens and one pad token, then every image token).
   * Without it nothing is masked.
   */
  attentionMask?: Tensor;
  /** The rotary tables of (txtIds, imgIds), from rotaryEmbedding(), for a caller that runs many calls on the same ids. */
  rotary?: RotaryTables;
  /** The key mask of attentionMask, from attentionKeyMask(), for a caller that runs many calls on the same mask. */
  keyMask?: Tensor;
}

/** A transformer call up to the blocks: what runBlocks() takes. */
export interface ChromaEmbedded {
  /** Embedded image tokens (B, image tokens, dim). */
  hidden: Tensor;
  /** Embedded text tokens (B, text tokens, dim). */
  encoder: Tensor;
  /** The distilled guidance layer's table (B, modulationRows, dim). */
  modulation: Tensor;
  context: ChromaBlockContext;
}

/** The sizes a call's cost depends on. */
export interface ChromaCallShape {
  batch: number;
  imageTokens: number;
  textTokens: number;
}

/** Floating-point operations of one transformer call, counting the matrix products (a multiply-add is 2). */
export interface ChromaFlops {
  /** x_embedder, context_embedder and the distilled guidance layer. */
  embedders: number;
  perDoubleBlock: number;
  perSingleBlock: number;
  /** proj_out. */
  output: number;
  total: number;
}

/** The first modulation rows of double-stream block `index`: its image stream's, then its text stream's (6 each). */
export function doubleBlockRows(config: Pick<ChromaTransformerConfig, 'num_layers' | 'num_single_layers'>, index: number): [image: number, text: number] {
  const image = 3 * config.num_single_layers;
  return [image + 6 * index, image + 6 * config.num_layers + 6 * index];
}

/** The first of the 3 modulation rows of single-stream block `index`. */
export function singleBlockRow(index: number): number {
  return 3 * index;
}

export class ChromaTransformer implements Disposable {
  readonly config: ChromaTransformerConfig;
  /** heads * head dim: the width of both streams. */
  readonly innerDim: number;
  readonly outChannels: number;
  /** What the weights are held and the activations computed in (the `dtype` it was loaded with). */
  readonly dtype: ComputeDtype;
  /**
   * The double-stream blocks, run in order by runBlocks(). Replaceable: a cache engine may put its
   * own objects here (after ChromaPatchFunctor, they take the whole modulation table; see the README).
   */
  transformerBlocks: ChromaDoubleBlock[];
  /** The single-stream blocks, run after the double-stream ones on the joint tokens; replaceable likewise. */
  singleTransformerBlocks: ChromaSingleBlock[];
  private readonly xEmbedder: Linear;
  private readonly contextEmbedder: Linear;
  private readonly distilledGuidanceLayer: DistilledGuidanceLayer;
  private readonly projOut: Linear;
  private readonly params: ParameterStore;

  private constructor(config: ChromaTransformerConfig, w: WeightReader, params: ParameterStore) {
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
    this.distilledGuidanceLayer = DistilledGuidanceLayer.load(
      w.at('distilled_guidance_layer'),
      config.approximator_num_channels,
      config.approximator_hidden_dim,
      dim,
      config.approximator_layers,
    );
    this.transformerBlocks = Array.from({ length: config.num_layers }, (_, i) =>
      ChromaTransformerBlock.load(w.at('transformer_blocks').at(i), dim, heads, headDim),
    );
    this.singleTransformerBlocks = Array.from({ length: config.num_single_layers }, (_, i) =>
      ChromaSingleTransformerBlock.load(w.at('single_transformer_blocks').at(i), dim, heads, headDim),
    );
    this.projOut = Linear.load(w.at('proj_out'), dim, config.patch_size * config.patch_size * this.outChannels);
  }

  /**
   * Loads a diffusers `transformer/` folder (ChromaTransformer2DModel). `dtype: 'bfloat16'` or
   * `'float16'` holds every weight in that dtype and computes in it, as diffusers'
   * `from_pretrained(..., torch_dtype=...)`.
   */
  static load(dir: string, opts: LoadOptions = {}): ChromaTransformer {
    return loadFromFolder(dir, opts, (folder, w, params) => new ChromaTransformer(readChromaTransformerConfig(folder), w, params));
  }

  /** The rotary tables (float32, on the ids' device) of the joint sequence: text tokens, then image tokens. */
  rotaryEmbedding(txtIds: Tensor, imgIds: Tensor): RotaryTables {
    // Joined on the host: ids may come as integers (a safetensors file's int64 ids load as int32).
    const text = txtIds.toFloat32Array();
    const ids = new Float32Array(text.length + imgIds.size);
    ids.set(text);
    ids.set(imgIds.toFloat32Array(), text.length);
    return multiAxisRotaryTables(ids, this.config.axes_dims_rope, { device: imgIds.device });
  }

  /** diffusers' attention_mask (B, tokens) -> the key mask (B, 1, 1, tokens) the blocks add to their scores: 0 where nonzero, -Infinity where 0. */
  attentionKeyMask(attentionMask: Tensor): Tensor {
    if (attentionMask.rank !== 2)
      throw new TypeError(`ChromaTransformer: attentionMask must be (B, text + image tokens), got (${attentionMask.shape.join(', ')})`);
    const [batch, tokens] = attentionMask.shape;
    const bias = attentionMask.toFloat32Array().map((m) => (m !== 0 ? 0 : Number.NEGATIVE_INFINITY));
    return tensor(bias, [batch, 1, 1, tokens], { device: attentionMask.device });
  }

  /**
   * The noise prediction (B, image tokens, patch^2 * out_channels) for packed latents, in the
   * model's dtype. Latents and embeddings of another dtype are rounded to it first. In 16-bit, as
   * diffusers: the timestep is rounded before and after the x 1000, the approximator's input is
   * computed in float32 and rounded; the rotary tables stay float32; every other op rounds its
   * output to the dtype.
   */
  forward(inputs: ChromaTransformerInputs): Tensor {
    const timesteps = this.checkInputs(inputs);
    return tidy(() => {
      const x = this.embed(inputs, timesteps);
      const hidden = this.runBlocks(x);
      // ChromaAdaLayerNormContinuousPruned: the table's last two rows, shift first, then scale.
      const [shift, scale] = x.modulation.narrow(1, x.modulation.shape[1] - 2, 2).split(2, 1);
      const sample = this.projOut.forward(modulate(hidden, scale, shift));
      checkFloat16Range('proj_out', sample);
      return sample;
    });
  }

  /**
   * The block loops as diffusers runs them: each double-stream block gets its image and its text
   * rows of the table, the single-stream blocks run on the joint (text, image) tokens with their
   * 3 rows each. Returns the image tokens. ChromaPatchFunctor replaces this on an instance by a
   * loop that hands every block the whole table.
   */
  runBlocks(x: ChromaEmbedded): Tensor {
    return tidy(() => {
      let { hidden, encoder } = x;
      this.transformerBlocks.forEach((block, i) => {
        const [image, text] = doubleBlockRows(this.config, i);
        const temb = concat([x.modulation.narrow(1, image, 6), x.modulation.narrow(1, text, 6)], 1);
        [encoder, hidden] = block.forward(hidden, encoder, temb, x.context);
      });
      let joint = concat([encoder, hidden], 1);
      this.singleTransformerBlocks.forEach((block, j) => {
        joint = block.forward(joint, x.modulation.narrow(1, singleBlockRow(j), 3), x.context);
      });
      return joint.narrow(1, encoder.shape[1], hidden.shape[1]);
    });
  }

  /** Matrix-product FLOPs of one forward() call of this shape (the element-wise work is left out). */
  flopsPerCall(shape: ChromaCallShape): ChromaFlops {
    const { batch: b, imageTokens: n, textTokens: t } = shape;
    const c = this.config;
    const d = this.innerDim;
    const s = n + t;
    const h = c.approximator_hidden_dim;
    const rows = b * modulationRows(c);
    const approximator = 2 * rows * (c.approximator_num_channels * h + c.approximator_layers * 2 * h * h + h * d);
    const embedders = 2 * b * n * c.in_channels * d + 2 * b * t * c.joint_attention_dim * d + approximator;
    const attention = 4 * b * s * s * d;
    // Per token and d^2: q, k, v (3) + out (1) + MLP (8), each 2 FLOPs.
    const perDoubleBlock = 24 * b * s * d * d + attention;
    // q, k, v (3) + proj_mlp (4) + proj_out over 5 d (5).
    const perSingleBlock = 24 * b * s * d * d + attention;
    const output = 2 * b * n * d * c.patch_size * c.patch_size * this.outChannels;
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

  /** Everything before the blocks: embedded tokens, the modulation table, rotary tables and key mask. */
  private embed(inputs: ChromaTransformerInputs, timesteps: Float32Array): ChromaEmbedded {
    const own = (t: Tensor): Tensor => (t.dtype === this.dtype ? t : t.cast(this.dtype));
    const device: Device = inputs.hiddenStates.device;
    const c = this.config;
    const input = approximatorInput(timesteps, modulationRows(c), c.approximator_num_channels, this.dtype, device);
    const keyMask = inputs.keyMask ?? (inputs.attentionMask ? this.attentionKeyMask(inputs.attentionMask) : undefined);
    return {
      hidden: this.xEmbedder.forward(own(inputs.hiddenStates)),
      encoder: this.contextEmbedder.forward(own(inputs.encoderHiddenStates)),
      modulation: this.distilledGuidanceLayer.forward(input),
      context: { rotary: inputs.rotary ?? this.rotaryEmbedding(inputs.txtIds, inputs.imgIds), keyMask },
    };
  }

  /** Validates shapes and returns the timestep values, scaled by 1000 in the model's dtype. */
  private checkInputs(inputs: ChromaTransformerInputs): Float32Array {
    const c = this.config;
    const shape = (t: Tensor): string => `(${t.shape.join(', ')})`;
    const fail = (what: string): never => {
      throw new TypeError(`ChromaTransformer.forward: ${what}`);
    };
    const { hiddenStates: x, encoderHiddenStates: e, imgIds, txtIds, attentionMask, keyMask, rotary } = inputs;
    if (x.rank !== 3 || x.shape[2] !== c.in_channels) fail(`hiddenStates must be (B, tokens, ${c.in_channels}), got ${shape(x)}`);
    const [batch, imageTokens] = x.shape;
    if (e.rank !== 3 || e.shape[0] !== batch || e.shape[2] !== c.joint_attention_dim) {
      fail(`encoderHiddenStates must be (${batch}, tokens, ${c.joint_attention_dim}), got ${shape(e)}`);
    }
    const textTokens = e.shape[1];
    const tokens = textTokens + imageTokens;
    const axes = c.axes_dims_rope.length;
    if (imgIds.rank !== 2 || imgIds.shape[0] !== imageTokens || imgIds.shape[1] !== axes)
      fail(`imgIds must be (${imageTokens}, ${axes}), got ${shape(imgIds)}`);
    if (txtIds.rank !== 2 || txtIds.shape[0] !== textTokens || txtIds.shape[1] !== axes) fail(`txtIds must be (${textTokens}, ${axes}), got ${shape(txtIds)}`);
    if (attentionMask && (attentionMask.rank !== 2 || attentionMask.shape[0] !== batch || attentionMask.shape[1] !== tokens)) {
      fail(`attentionMask must be (${batch}, ${tokens}) (text + image tokens), got ${shape(attentionMask)}`);
    }
    if (keyMask && keyMask.shape.join() !== [batch, 1, 1, tokens].join()) fail(`keyMask must be (${batch}, 1, 1, ${tokens}), got ${shape(keyMask)}`);
    if (rotary && (rotary.cos.rank !== 2 || rotary.cos.shape[0] !== tokens || rotary.cos.shape[1] !== c.attention_head_dim)) {
      fail(`rotary must hold (${tokens}, ${c.attention_head_dim}) tables (text + image tokens, head dim), got cos ${shape(rotary.cos)}`);
    }
    const t = inputs.timestep;
    if (t.size !== batch || t.rank > 1) fail(`timestep must be (${batch},), got ${shape(t)}`);
    return timesThousandInDtype(t, this.dtype);
  }
}
