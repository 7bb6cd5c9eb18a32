// The decoder LLMs newer pipelines encode prompts with, on the text path: transformers' Llama
// (HiDream's Llama 3.1, HunyuanVideo's Llama 3 text encoder) and Qwen2 / Qwen2.5-VL's language
// model (Qwen-Image). One class, since the two differ only in config: biased q/k/v (Qwen2), the
// rotary rule (Llama 3.1's rescaled frequencies; Qwen2.5-VL's multimodal rotary, plain on text)
// and where the weights sit in the checkpoint. Pre-norm layers of grouped-query attention under a
// causal mask (plus the prompt's padding mask) and a SwiGLU MLP; the pipelines read hidden states
// of inner layers, so every layer's output can be returned, as transformers' hidden_states.
import { add, attention, embedding, mul, rope, silu, tensor, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { ConfigError, Linear, type ComputeDtype, type LoadOptions, type ParameterStore, type WeightReader } from '@ditcache/diffusion';

import { checkIds } from './clip-text-model.js';
import { decoderRotaryConfig, decoderRotaryTables, type DecoderRotaryConfig } from './decoder-rotary.js';
import { inDtype, TransformersRMSNorm } from './rms-norm.js';
import { TransformersConfig } from './transformers-config.js';
import { loadEncoderFolder } from './weights.js';

const LLAMA = ['LlamaForCausalLM', 'LlamaModel'];
const QWEN2 = ['Qwen2ForCausalLM', 'Qwen2Model'];
const QWEN2_5_VL = ['Qwen2_5_VLForConditionalGeneration', 'Qwen2_5_VLModel'];

export interface DecoderLMConfig {
  architecture: string;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  rmsNormEps: number;
  /** Biases on q / k / v (Qwen2, Llama's attention_bias) and on o (Llama's attention_bias only). */
  qkvBias: boolean;
  outputBias: boolean;
  mlpBias: boolean;
  rotary: DecoderRotaryConfig;
}

export interface DecoderLMForwardOptions {
  /** (B, S) with 1 for tokens and 0 for padding; padded keys are masked, as transformers does. */
  attentionMask?: Tensor;
  /** Return every hidden state (transformers' output_hidden_states); otherwise only the last. */
  outputHiddenStates?: boolean;
}

export interface DecoderLMOutput {
  /** (B, S, hidden): the final norm's output. */
  lastHiddenState: Tensor;
  /**
   * transformers' hidden_states: the embeddings, then each layer's output, the last one after the
   * final norm (so `hiddenStates.at(-1)` is lastHiddenState's values; a separate tensor); null
   * unless asked for.
   */
  hiddenStates: Tensor[] | null;
}

class DecoderLayer {
  constructor(
    readonly inputNorm: TransformersRMSNorm,
    readonly q: Linear,
    readonly k: Linear,
    readonly v: Linear,
    readonly o: Linear,
    readonly postAttentionNorm: TransformersRMSNorm,
    readonly gate: Linear,
    readonly up: Linear,
    readonly down: Linear,
  ) {}

  static load(w: WeightReader, c: DecoderLMConfig): DecoderLayer {
    const attn = w.at('self_attn');
    const mlp = w.at('mlp');
    const d = c.hiddenSize;
    return new DecoderLayer(
      TransformersRMSNorm.load(w.at('input_layernorm'), d, c.rmsNormEps),
      Linear.load(attn.at('q_proj'), d, c.numAttentionHeads * c.headDim, { bias: c.qkvBias }),
      Linear.load(attn.at('k_proj'), d, c.numKeyValueHeads * c.headDim, { bias: c.qkvBias }),
      Linear.load(attn.at('v_proj'), d, c.numKeyValueHeads * c.headDim, { bias: c.qkvBias }),
      Linear.load(attn.at('o_proj'), c.numAttentionHeads * c.headDim, d, { bias: c.outputBias }),
      TransformersRMSNorm.load(w.at('post_attention_layernorm'), d, c.rmsNormEps),
      Linear.load(mlp.at('gate_proj'), d, c.intermediateSize, { bias: c.mlpBias }),
      Linear.load(mlp.at('up_proj'), d, c.intermediateSize, { bias: c.mlpBias }),
      Linear.load(mlp.at('down_proj'), c.intermediateSize, d, { bias: c.mlpBias }),
    );
  }

  forward(x: Tensor, mask: Tensor, rotary: { cos: Tensor; sin: Tensor }, c: DecoderLMConfig, dtype: ComputeDtype): Tensor {
    return tidy(() => {
      const [b, s] = x.shape;
      const heads = (t: Tensor, n: number) => t.reshape([b, s, n, c.headDim]);
      const rotate = (t: Tensor) => rope(t, rotary.cos, rotary.sin, { interleaved: false });
      const h = this.inputNorm.forward(x, dtype);
      const q = rotate(heads(this.q.forward(h), c.numAttentionHeads)).transpose(1, 2);
      const k = rotate(heads(this.k.forward(h), c.numKeyValueHeads)).transpose(1, 2);
      const v = heads(this.v.forward(h), c.numKeyValueHeads).transpose(1, 2);
      const attended = attention(q, k, v, { mask, headsLast: true }).reshape([b, s, c.numAttentionHeads * c.headDim]);
      const y = add(x, this.o.forward(attended));
      const m = this.postAttentionNorm.forward(y, dtype);
      return add(y, this.down.forward(mul(silu(this.gate.forward(m)), this.up.forward(m))));
    });
  }
}

/** The text config: Qwen2.5-VL nests it under text_config (transformers 5) or keeps it at the top (earlier checkpoints). */
function textConfig(raw: Record<string, unknown>): Record<string, unknown> {
  const nested = raw.text_config;
  return nested && typeof nested === 'object' ? { ...(nested as object), architectures: raw.architectures } : raw;
}

export class DecoderLM implements Disposable {
  constructor(
    readonly config: DecoderLMConfig,
    /** What the model computes in and returns (LoadOptions' dtype, diffusers' torch_dtype). */
    readonly dtype: ComputeDtype,
    private readonly embedTokens: Tensor,
    private readonly layers: DecoderLayer[],
    private readonly finalNorm: TransformersRMSNorm,
    private readonly store: ParameterStore,
  ) {}

  /**
   * Loads a transformers Llama, Qwen2 or Qwen2.5-VL folder (config.json and safetensors, sharded
   * or not); only the language model's weights are read (no lm_head, no vision tower). float32:
   * weights keep their stored dtype; 16-bit: held in that dtype.
   */
  static load(dir: string, opts: LoadOptions = {}): DecoderLM {
    return loadEncoderFolder(dir, opts, (folder, w, store) => {
      const cfg = new TransformersConfig(textConfig(folder.config), dir, [...LLAMA, ...QWEN2, ...QWEN2_5_VL]);
      const llama = LLAMA.includes(cfg.architecture);
      const act = cfg.string('hidden_act', 'silu');
      if (act !== 'silu') throw new ConfigError(`${cfg.where}: hidden_act '${act}' is not supported (supported: silu)`);
      const hiddenSize = cfg.integer('hidden_size');
      const numAttentionHeads = cfg.integer('num_attention_heads');
      // Without head_dim, hidden_size / heads; a fraction there is refused by integer(), naming head_dim.
      const headDim = cfg.integer('head_dim', hiddenSize / numAttentionHeads);
      const attentionBias = llama ? cfg.boolean('attention_bias', false) : true;
      const config: DecoderLMConfig = {
        architecture: cfg.architecture,
        vocabSize: cfg.integer('vocab_size'),
        hiddenSize,
        intermediateSize: cfg.integer('intermediate_size'),
        numHiddenLayers: cfg.integer('num_hidden_layers'),
        numAttentionHeads,
        numKeyValueHeads: cfg.integer('num_key_value_heads', numAttentionHeads),
        headDim,
        rmsNormEps: cfg.number('rms_norm_eps', 1e-6),
        qkvBias: attentionBias,
        outputBias: llama && attentionBias,
        mlpBias: llama ? cfg.boolean('mlp_bias', false) : false,
        rotary: decoderRotaryConfig(cfg, headDim, llama ? 500000 : 1000000),
      };
      if (config.numAttentionHeads % config.numKeyValueHeads !== 0) {
        throw new ConfigError(`${cfg.where}: num_attention_heads ${numAttentionHeads} is not a multiple of num_key_value_heads ${config.numKeyValueHeads}`);
      }
      // Where the language model sits: Qwen2.5-VL's transformers 5 layout, or the usual model. prefix, or none (a bare *Model).
      const prefix = ['model.language_model.', 'model.', ''].find((p) => folder.has(`${p}embed_tokens.weight`));
      if (prefix === undefined) throw new ConfigError(`${dir}: no embed_tokens.weight under model.language_model., model. or the root`);
      const lm = prefix ? w.at(prefix.slice(0, -1)) : w;
      const layers: DecoderLayer[] = [];
      for (let i = 0; i < config.numHiddenLayers; i++) layers.push(DecoderLayer.load(lm.at('layers').at(i), config));
      return new DecoderLM(
        config,
        w.dtype,
        lm.tensor('embed_tokens.weight', [config.vocabSize, hiddenSize]),
        layers,
        TransformersRMSNorm.load(lm.at('norm'), hiddenSize, config.rmsNormEps),
        store,
      );
    });
  }

  /** Runs the language model on int32 token ids (B, S). The caller owns the outputs. */
  forward(inputIds: Tensor, opts: DecoderLMForwardOptions = {}): DecoderLMOutput {
    const [batch, seq] = checkIds(inputIds, null, this.config.architecture);
    const keep = opts.attentionMask ? checkMask(opts.attentionMask, batch, seq, this.config.architecture) : null;
    return tidy(() => {
      const device = this.embedTokens.device;
      const mask = tensor(causalPaddingMask(batch, seq, keep), [batch, 1, seq, seq], { device });
      // transformers rounds its float32 tables to the model's dtype before rotating.
      const tables = decoderRotaryTables(this.config.rotary, seq, device);
      const rotary = { cos: inDtype(tables.cos, this.dtype), sin: inDtype(tables.sin, this.dtype) };
      let x = inDtype(embedding(this.embedTokens, inputIds), this.dtype);
      const hiddenStates = opts.outputHiddenStates ? [x] : null;
      for (const [i, layer] of this.layers.entries()) {
        x = layer.forward(x, mask, rotary, this.config, this.dtype);
        if (hiddenStates && i < this.layers.length - 1) hiddenStates.push(x);
      }
      const lastHiddenState = this.finalNorm.forward(x, this.dtype);
      hiddenStates?.push(lastHiddenState.clone());
      return { lastHiddenState, hiddenStates };
    });
  }

  dispose(): void {
    this.store.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** The mask's rows as 0 / 1, after checking its shape against the ids. */
function checkMask(mask: Tensor, batch: number, seq: number, model: string): Float32Array {
  if (mask.rank !== 2 || mask.shape[0] !== batch || mask.shape[1] !== seq) {
    throw new TypeError(`${model}: attentionMask must be (${batch}, ${seq}) like the ids, got (${mask.shape.join(', ')})`);
  }
  return mask.toFloat32Array();
}

/**
 * The additive mask (B, 1, S, S): a query sees keys at or before it that are not padding. A
 * query whose every visible key is padding (left padding) would have nothing to attend to, which
 * transformers does not define either: refused.
 */
function causalPaddingMask(batch: number, seq: number, keep: Float32Array | null): Float32Array {
  const mask = new Float32Array(batch * seq * seq);
  for (let b = 0; b < batch; b++) {
    for (let q = 0; q < seq; q++) {
      let visible = 0;
      for (let k = 0; k < seq; k++) {
        const open = k <= q && (keep === null || keep[b * seq + k] > 0);
        mask[(b * seq + q) * seq + k] = open ? 0 : -Infinity;
        if (open) visible++;
      }
      if (visible === 0) {
        throw new RangeError(`attentionMask: row ${b} masks every token up to position ${q}; pad on the right, as the pipelines' tokenizers do`);
      }
    }
  }
  return mask;
}
