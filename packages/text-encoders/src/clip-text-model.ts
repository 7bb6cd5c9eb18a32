// transformers' CLIPTextModel (and CLIPTextModelWithProjection): token + position embeddings,
// pre-norm transformer layers under a causal mask, a final layer norm, and the pooled output at
// each sequence's end-of-text token (projected by text_projection in the WithProjection variant).
import { add, attention, concat, embedding, tensor, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { LayerNorm, Linear, type ComputeDtype, type LoadOptions, type ParameterStore, type WeightReader } from '@ditcache/diffusion';

import { activation, type Activation } from './activations.js';
import { TransformersConfig } from './transformers-config.js';
import { loadEncoderFolder } from './weights.js';

export interface ClipTextConfig {
  architecture: 'CLIPTextModel' | 'CLIPTextModelWithProjection';
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  maxPositionEmbeddings: number;
  layerNormEps: number;
  hiddenAct: string;
  /** 2 in configs older than transformers' fix: pooling then takes the highest token id's position. */
  eosTokenId: number;
  /** Width of text_projection (WithProjection only). */
  projectionDim: number | null;
}

export interface ClipTextOutput {
  /** (B, S, hidden) after the final layer norm. */
  lastHiddenState: Tensor;
  /** (B, hidden): the final state at each sequence's end-of-text token (CLIPTextModel's pooler_output). */
  pooledOutput: Tensor;
  /** (B, projection_dim): text_projection(pooledOutput), for CLIPTextModelWithProjection; else null. */
  textEmbeds: Tensor | null;
  /**
   * With `outputHiddenStates`: transformers' hidden_states, the embeddings' output and then each
   * layer's (B, S, hidden), before the final layer norm (SD3 reads the penultimate, index -2); else null.
   */
  hiddenStates: Tensor[] | null;
}

/** Options of ClipTextModel.forward. */
export interface ClipForwardOptions {
  /** Return every layer's output as hiddenStates (transformers' output_hidden_states). */
  outputHiddenStates?: boolean;
}

const ARCHITECTURES = ['CLIPTextModel', 'CLIPTextModelWithProjection'] as const;

class ClipEncoderLayer {
  constructor(
    readonly norm1: LayerNorm,
    readonly q: Linear,
    readonly k: Linear,
    readonly v: Linear,
    readonly out: Linear,
    readonly norm2: LayerNorm,
    readonly fc1: Linear,
    readonly fc2: Linear,
  ) {}

  static load(w: WeightReader, c: ClipTextConfig): ClipEncoderLayer {
    const d = c.hiddenSize;
    const attn = w.at('self_attn');
    return new ClipEncoderLayer(
      LayerNorm.load(w.at('layer_norm1'), d, c.layerNormEps),
      Linear.load(attn.at('q_proj'), d, d),
      Linear.load(attn.at('k_proj'), d, d),
      Linear.load(attn.at('v_proj'), d, d),
      Linear.load(attn.at('out_proj'), d, d),
      LayerNorm.load(w.at('layer_norm2'), d, c.layerNormEps),
      Linear.load(w.at('mlp.fc1'), d, c.intermediateSize),
      Linear.load(w.at('mlp.fc2'), c.intermediateSize, d),
    );
  }

  forward(x: Tensor, causalMask: Tensor, heads: number, act: Activation): Tensor {
    return tidy(() => {
      const [b, s, d] = x.shape;
      const split = (t: Tensor) => t.reshape([b, s, heads, d / heads]).transpose(1, 2);
      const h = this.norm1.forward(x);
      const attended = attention(split(this.q.forward(h)), split(this.k.forward(h)), split(this.v.forward(h)), { mask: causalMask, headsLast: true });
      const y = add(x, this.out.forward(attended.reshape([b, s, d])));
      return add(y, this.fc2.forward(act(this.fc1.forward(this.norm2.forward(y)))));
    });
  }
}

export class ClipTextModel implements Disposable {
  private readonly act: Activation;

  constructor(
    readonly config: ClipTextConfig,
    /** What the model computes in and returns (LoadOptions' dtype, diffusers' torch_dtype). */
    readonly dtype: ComputeDtype,
    private readonly tokenEmbedding: Tensor,
    private readonly positionEmbedding: Tensor,
    private readonly layers: ClipEncoderLayer[],
    private readonly finalNorm: LayerNorm,
    private readonly textProjection: Linear | null,
    private readonly store: ParameterStore,
  ) {
    this.act = activation(config.hiddenAct, 'CLIPTextModel');
  }

  /** Loads a transformers CLIPTextModel / CLIPTextModelWithProjection folder (float32: weights keep their stored dtype; 16-bit: held in that dtype). */
  static load(dir: string, opts: LoadOptions = {}): ClipTextModel {
    return loadEncoderFolder(dir, opts, (folder, w, store) => {
      const raw = folder.config;
      // A full CLIPModel config nests the text tower's settings.
      const text =
        raw.model_type === 'clip' && raw.text_config && typeof raw.text_config === 'object'
          ? { ...(raw.text_config as object), architectures: raw.architectures }
          : raw;
      const cfg = new TransformersConfig(text as Record<string, unknown>, dir, ARCHITECTURES);
      const withProjection = cfg.architecture === 'CLIPTextModelWithProjection';
      const config: ClipTextConfig = {
        architecture: cfg.architecture as ClipTextConfig['architecture'],
        vocabSize: cfg.integer('vocab_size', 49408),
        hiddenSize: cfg.integer('hidden_size', 512),
        intermediateSize: cfg.integer('intermediate_size', 2048),
        numHiddenLayers: cfg.integer('num_hidden_layers', 12),
        numAttentionHeads: cfg.integer('num_attention_heads', 8),
        maxPositionEmbeddings: cfg.integer('max_position_embeddings', 77),
        layerNormEps: cfg.number('layer_norm_eps', 1e-5),
        hiddenAct: cfg.string('hidden_act', 'quick_gelu'),
        eosTokenId: cfg.integer('eos_token_id', 2),
        projectionDim: withProjection ? cfg.integer('projection_dim', 512) : null,
      };
      activation(config.hiddenAct, cfg.where);
      const d = config.hiddenSize;
      // Checkpoints saved by transformers 4 (FLUX.1's) prefix the tower with text_model.; version 5 does not.
      const tm = folder.has('text_model.embeddings.token_embedding.weight') ? w.at('text_model') : w;
      const layers: ClipEncoderLayer[] = [];
      for (let i = 0; i < config.numHiddenLayers; i++) layers.push(ClipEncoderLayer.load(tm.at('encoder.layers').at(i), config));
      return new ClipTextModel(
        config,
        w.dtype,
        tm.tensor('embeddings.token_embedding.weight', [config.vocabSize, d]),
        tm.tensor('embeddings.position_embedding.weight', [config.maxPositionEmbeddings, d]),
        layers,
        LayerNorm.load(tm.at('final_layer_norm'), d, config.layerNormEps),
        withProjection ? Linear.load(w.at('text_projection'), d, config.projectionDim as number, { bias: false }) : null,
        store,
      );
    });
  }

  /** Runs the text tower on int32 token ids (B, S), S at most max_position_embeddings. The caller owns the outputs. */
  forward(inputIds: Tensor, opts: ClipForwardOptions = {}): ClipTextOutput {
    const [batch, seq] = checkIds(inputIds, this.config.maxPositionEmbeddings, 'CLIPTextModel');
    const ids = inputIds.toInt32Array();
    return tidy(() => {
      const device = this.tokenEmbedding.device;
      const positions = tensor(
        Int32Array.from({ length: seq }, (_, i) => i),
        [seq],
        { device },
      );
      // float32 compute widens stored 16-bit tables; a 16-bit dtype adds the two in that dtype, as transformers.
      const dtype = this.dtype;
      let x = add(embedding(this.tokenEmbedding, inputIds).cast(dtype), embedding(this.positionEmbedding, positions).cast(dtype));
      const causal = new Float32Array(seq * seq);
      for (let q = 0; q < seq; q++) for (let k = q + 1; k < seq; k++) causal[q * seq + k] = -Infinity;
      const mask = tensor(causal, [1, 1, seq, seq], { device });
      const hiddenStates = opts.outputHiddenStates ? [x] : null;
      for (const layer of this.layers) {
        x = layer.forward(x, mask, this.config.numAttentionHeads, this.act);
        hiddenStates?.push(x);
      }
      const lastHiddenState = this.finalNorm.forward(x);
      const rows: Tensor[] = [];
      for (let b = 0; b < batch; b++) {
        const at = this.poolingPosition(ids.subarray(b * seq, (b + 1) * seq));
        rows.push(lastHiddenState.narrow(0, b, 1).narrow(1, at, 1).reshape([1, this.config.hiddenSize]));
      }
      const pooledOutput = concat(rows, 0);
      return { lastHiddenState, pooledOutput, textEmbeds: this.textProjection ? this.textProjection.forward(pooledOutput) : null, hiddenStates };
    });
  }

  /** Where a sequence is pooled: its first end-of-text token, or (legacy eos id 2) its highest id's first position. */
  private poolingPosition(ids: Int32Array): number {
    let at = 0;
    if (this.config.eosTokenId === 2) {
      for (let i = 1; i < ids.length; i++) if (ids[i] > ids[at]) at = i;
      return at;
    }
    at = ids.indexOf(this.config.eosTokenId);
    return at < 0 ? 0 : at;
  }

  dispose(): void {
    this.store.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Checks int32 (B, S) token ids against a model's limit; returns [B, S]. */
export function checkIds(ids: Tensor, maxLength: number | null, model: string): [number, number] {
  if (ids.dtype !== 'int32' || ids.rank !== 2)
    throw new TypeError(`${model}: input ids must be int32 (batch, tokens), got ${ids.dtype} (${ids.shape.join(', ')})`);
  const [batch, seq] = ids.shape;
  if (seq === 0 || batch === 0) throw new TypeError(`${model}: input ids (${ids.shape.join(', ')}) are empty`);
  if (maxLength !== null && seq > maxLength) throw new RangeError(`${model}: ${seq} tokens exceed the model's ${maxLength} positions`);
  return [batch, seq];
}
