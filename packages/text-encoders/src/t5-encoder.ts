// transformers' T5EncoderModel (T5 v1.0 and v1.1) and UMT5EncoderModel (the encoder of Wan's
// umt5-xxl): token embeddings, pre-norm layers of self-attention without scaling, biased by
// relative position buckets (T5: a table the first layer holds and every layer shares; UMT5: a
// table in every layer), and a ReLU or gated-GELU feed-forward; RMS-style layer norms (no mean,
// no bias) and a final one. In a 16-bit dtype it rounds where transformers does: norms back to the
// dtype, and in float16 the feed-forward's output projection kept in float32
// (`_keep_in_fp32_modules`), which makes the residual stream float32 from the first layer on, with
// transformers' clamp of float16 overflow in between.
import { add, attention, clamp, embedding, meanAbs, mul, tensor, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { ConfigError, Linear, type ComputeDtype, type LoadOptions, type ParameterStore, type WeightReader } from '@ditcache/diffusion';

import { activation, type Activation } from './activations.js';
import { checkIds } from './clip-text-model.js';
import { inDtype, TransformersRMSNorm } from './rms-norm.js';
import { positionBuckets } from './t5-position-bias.js';
import { TransformersConfig } from './transformers-config.js';
import { loadEncoderFolder } from './weights.js';

/** transformers' architectures of T5 checkpoints whose encoder this runs. */
const T5_ARCHITECTURES = ['T5EncoderModel', 'T5ForConditionalGeneration', 'T5Model'];
const UMT5_ARCHITECTURES = ['UMT5EncoderModel', 'UMT5ForConditionalGeneration', 'UMT5Model'];

export interface T5EncoderConfig {
  vocabSize: number;
  dModel: number;
  /** Width of one attention head. */
  dKv: number;
  numHeads: number;
  dFf: number;
  numLayers: number;
  relativeAttentionNumBuckets: number;
  relativeAttentionMaxDistance: number;
  layerNormEpsilon: number;
  /** The feed-forward activation (transformers' dense_act_fn). */
  denseActFn: string;
  /** Gated feed-forward (v1.1: act(wi_0 x) * wi_1 x). */
  isGatedAct: boolean;
  /** UMT5: every layer has its own relative position bias table, not the first layer's shared. */
  biasPerLayer: boolean;
}

/** Options of T5Encoder.forward. */
export interface T5ForwardOptions {
  /** (B, S) with 1 for tokens to attend to and 0 for padding; FluxPipeline passes none, attending to padding too. */
  attentionMask?: Tensor;
}

class FeedForward {
  constructor(
    readonly wi: Linear,
    readonly wiGate: Linear | null,
    readonly wo: Linear,
    /** What `wo` computes in: float32 under float16 (transformers keeps it so), else the model's dtype. */
    readonly woDtype: ComputeDtype,
  ) {}

  forward(x: Tensor, act: Activation): Tensor {
    const hidden = act(this.wi.forward(x));
    return this.wo.forward(inDtype(this.wiGate ? mul(hidden, this.wiGate.forward(x)) : hidden, this.woDtype));
  }
}

/** Largest float16 value, and transformers' clamp bound once a float16 hidden state has overflowed. */
const FLOAT16_MAX = 65504;
const FLOAT16_CLAMP_AFTER_OVERFLOW = FLOAT16_MAX - 1000;

/** transformers' T5 clamp of a float16 hidden state: infinities become +-64504 (a new tensor), anything else is `x`. */
function clampFloat16Overflow(x: Tensor): Tensor {
  if (x.dtype !== 'float16' || meanAbs(x) !== Infinity) return x;
  return clamp(x, -FLOAT16_CLAMP_AFTER_OVERFLOW, FLOAT16_CLAMP_AFTER_OVERFLOW);
}

class T5Layer {
  constructor(
    readonly attentionNorm: TransformersRMSNorm,
    readonly q: Linear,
    readonly k: Linear,
    readonly v: Linear,
    readonly o: Linear,
    readonly feedForwardNorm: TransformersRMSNorm,
    readonly feedForward: FeedForward,
  ) {}

  static load(w: WeightReader, c: T5EncoderConfig): T5Layer {
    const inner = c.numHeads * c.dKv;
    const attn = w.at('layer.0.SelfAttention');
    const ff = w.at('layer.1.DenseReluDense');
    const noBias = { bias: false };
    // transformers keeps `wo` in float32 under a float16 torch_dtype (not under bfloat16).
    const woInFloat32 = w.dtype === 'float16';
    const wo = woInFloat32 ? ff.float32() : ff;
    return new T5Layer(
      TransformersRMSNorm.load(w.at('layer.0.layer_norm'), c.dModel, c.layerNormEpsilon),
      Linear.load(attn.at('q'), c.dModel, inner, noBias),
      Linear.load(attn.at('k'), c.dModel, inner, noBias),
      Linear.load(attn.at('v'), c.dModel, inner, noBias),
      Linear.load(attn.at('o'), inner, c.dModel, noBias),
      TransformersRMSNorm.load(w.at('layer.1.layer_norm'), c.dModel, c.layerNormEpsilon),
      new FeedForward(
        Linear.load(ff.at(c.isGatedAct ? 'wi_0' : 'wi'), c.dModel, c.dFf, noBias),
        c.isGatedAct ? Linear.load(ff.at('wi_1'), c.dModel, c.dFf, noBias) : null,
        Linear.load(wo.at('wo'), c.dFf, c.dModel, noBias),
        woInFloat32 ? 'float32' : w.dtype,
      ),
    );
  }

  /** One layer on `x` (the compute dtype, or float32 once float16's float32 `wo` has widened the stream). */
  forward(x: Tensor, bias: Tensor, c: T5EncoderConfig, act: Activation, dtype: ComputeDtype): Tensor {
    return tidy(() => {
      const [b, s] = x.shape;
      const split = (t: Tensor) => t.reshape([b, s, c.numHeads, c.dKv]).transpose(1, 2);
      const h = this.attentionNorm.forward(x, dtype);
      const attended = attention(split(this.q.forward(h)), split(this.k.forward(h)), split(this.v.forward(h)), { mask: bias, scale: 1, headsLast: true });
      const y = clampFloat16Overflow(add(x, this.o.forward(attended.reshape([b, s, c.numHeads * c.dKv]))));
      return clampFloat16Overflow(add(y, this.feedForward.forward(this.feedForwardNorm.forward(y, dtype), act)));
    });
  }
}

export class T5Encoder implements Disposable {
  private readonly act: Activation;

  constructor(
    readonly config: T5EncoderConfig,
    /** What the encoder computes in and returns (LoadOptions' dtype, diffusers' torch_dtype). */
    readonly dtype: ComputeDtype,
    private readonly embedTokens: Tensor,
    /** One table (buckets, heads) shared by every layer (T5), or one per layer (UMT5). */
    private readonly relativeAttentionBias: readonly Tensor[],
    private readonly layers: T5Layer[],
    private readonly finalNorm: TransformersRMSNorm,
    private readonly store: ParameterStore,
  ) {
    this.act = activation(config.denseActFn, 'T5EncoderModel');
  }

  /** Loads a transformers T5EncoderModel folder, sharded or not (float32: weights keep their stored dtype; 16-bit: held in that dtype). */
  static load(dir: string, opts: LoadOptions = {}): T5Encoder {
    return loadEncoderFolder(dir, opts, (folder, w, store) => {
      const cfg = new TransformersConfig(folder.config, dir, [...T5_ARCHITECTURES, ...UMT5_ARCHITECTURES]);
      const feedForwardProj = cfg.string('feed_forward_proj', 'relu');
      const parts = feedForwardProj.split('-');
      if (parts.length > 2 || (parts.length === 2 && parts[0] !== 'gated')) {
        throw new ConfigError(`${cfg.where}: feed_forward_proj '${feedForwardProj}' is neither ACT nor gated-ACT`);
      }
      const dModel = cfg.integer('d_model', 512);
      const config: T5EncoderConfig = {
        vocabSize: cfg.integer('vocab_size', 32128),
        dModel,
        dKv: cfg.integer('d_kv', 64),
        numHeads: cfg.integer('num_heads', 8),
        dFf: cfg.integer('d_ff', 2048),
        numLayers: cfg.integer('num_layers', 6),
        relativeAttentionNumBuckets: cfg.integer('relative_attention_num_buckets', 32),
        relativeAttentionMaxDistance: cfg.integer('relative_attention_max_distance', 128),
        layerNormEpsilon: cfg.number('layer_norm_epsilon', 1e-6),
        // transformers runs "gated-gelu" with the tanh approximation.
        denseActFn: feedForwardProj === 'gated-gelu' ? 'gelu_new' : parts[parts.length - 1],
        isGatedAct: parts[0] === 'gated',
        biasPerLayer: UMT5_ARCHITECTURES.includes(cfg.architecture),
      };
      activation(config.denseActFn, cfg.where);
      const layers: T5Layer[] = [];
      for (let i = 0; i < config.numLayers; i++) layers.push(T5Layer.load(w.at('encoder.block').at(i), config));
      const biasOf = (layer: number): Tensor =>
        w.tensor(`encoder.block.${layer}.layer.0.SelfAttention.relative_attention_bias.weight`, [config.relativeAttentionNumBuckets, config.numHeads]);
      return new T5Encoder(
        config,
        w.dtype,
        w.firstOf(['encoder.embed_tokens.weight', 'shared.weight'], [config.vocabSize, dModel]),
        config.biasPerLayer ? layers.map((_, i) => biasOf(i)) : [biasOf(0)],
        layers,
        TransformersRMSNorm.load(w.at('encoder.final_layer_norm'), dModel, config.layerNormEpsilon),
        store,
      );
    });
  }

  /** The last hidden state (B, S, d_model) of int32 token ids (B, S). The caller owns it. */
  forward(inputIds: Tensor, opts: T5ForwardOptions = {}): Tensor {
    const [batch, seq] = checkIds(inputIds, null, 'T5EncoderModel');
    const c = this.config;
    const mask = opts.attentionMask;
    if (mask && (mask.rank !== 2 || mask.shape[0] !== batch || mask.shape[1] !== seq)) {
      throw new TypeError(`T5EncoderModel: attentionMask must be (${batch}, ${seq}) like the ids, got (${mask.shape.join(', ')})`);
    }
    return tidy(() => {
      const device = this.embedTokens.device;
      const buckets = tensor(positionBuckets(seq, c.relativeAttentionNumBuckets, c.relativeAttentionMaxDistance), [seq, seq], { device });
      const padding = mask
        ? tensor(
            mask.toFloat32Array().map((m) => (m > 0 ? 0 : -Infinity)),
            [batch, 1, 1, seq],
            { device },
          )
        : null;
      // (S, S, H) -> (1, H, S, S), plus the padding mask: what a layer adds to its attention scores.
      const biases = this.relativeAttentionBias.map((table) => {
        const bias = embedding(table, buckets).cast('float32').permute(2, 0, 1).unsqueeze(0).contiguous();
        return padding ? add(bias, padding) : bias;
      });
      let x = inDtype(embedding(this.embedTokens, inputIds), this.dtype);
      for (const [i, layer] of this.layers.entries()) x = layer.forward(x, biases[c.biasPerLayer ? i : 0], c, this.act, this.dtype);
      return this.finalNorm.forward(x, this.dtype);
    });
  }

  dispose(): void {
    this.store.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}
