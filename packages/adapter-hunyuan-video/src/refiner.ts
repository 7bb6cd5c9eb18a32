// HunyuanVideo's context embedder, the token refiner (diffusers' HunyuanVideoTokenRefiner): the
// text tokens are projected to the model width and refined by a few self-attention blocks
// conditioned on the timestep and on the masked mean of the text embeddings. Padded tokens see
// only the first token, and nobody sees them (diffusers' self_attn_mask).
import { add, div, mul, silu, sum, tensor, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { FeedForward, LayerNorm, Linear, MlpEmbedding, gatedResidual, sinusoidalTimestepEmbedding, type WeightReader } from '@ditcache/diffusion';

import { RefinerAttention } from './attention.js';

/** Width of the sinusoidal timestep features. */
export const TIME_PROJ_DIM = 256;
/** Epsilon of the refiner blocks' layer norms. */
const NORM_EPS = 1e-6;
/** HunyuanVideoTokenRefiner's mlp_ratio (the transformer's mlp_ratio does not reach it). */
const REFINER_MLP_RATIO = 4;

/** diffusers' HunyuanVideoIndividualTokenRefinerBlock. */
export class TokenRefinerBlock {
  constructor(
    readonly norm1: LayerNorm,
    readonly attn: RefinerAttention,
    readonly norm2: LayerNorm,
    readonly ff: FeedForward,
    /** HunyuanVideoAdaNorm: the attention and MLP gates from silu(temb). */
    readonly normOut: Linear,
  ) {}

  static load(w: WeightReader, heads: number, headDim: number): TokenRefinerBlock {
    const dim = heads * headDim;
    return new TokenRefinerBlock(
      LayerNorm.load(w.at('norm1'), dim, NORM_EPS),
      RefinerAttention.load(w.at('attn'), dim, heads, headDim),
      LayerNorm.load(w.at('norm2'), dim, NORM_EPS),
      FeedForward.load(w.at('ff'), dim, dim * REFINER_MLP_RATIO, 'linear-silu'),
      Linear.load(w.at('norm_out.linear'), dim, 2 * dim),
    );
  }

  forward(x: Tensor, temb: Tensor, mask: Tensor): Tensor {
    return tidy(() => {
      const attnOut = this.attn.forward(this.norm1.forward(x), mask);
      const [gateMsa, gateMlp] = this.normOut.forward(silu(temb)).split(2, 1);
      const h = gatedResidual(x, gateMsa, attnOut);
      return gatedResidual(h, gateMlp, this.ff.forward(this.norm2.forward(h)));
    });
  }
}

/**
 * The refiner's additive self-attention mask (B, 1, L, L) from a (B, L) token mask: query i sees
 * key j when both are valid tokens, and every query sees key 0.
 */
export function refinerAttentionMask(mask: Float32Array, batch: number, tokens: number, opts: { device: Tensor['device']; dtype: Tensor['dtype'] }): Tensor {
  const out = new Float32Array(batch * tokens * tokens);
  for (let b = 0; b < batch; ++b) {
    const valid = (j: number): boolean => mask[b * tokens + j] !== 0;
    for (let i = 0; i < tokens; ++i) for (let j = 0; j < tokens; ++j) out[(b * tokens + i) * tokens + j] = j === 0 || (valid(i) && valid(j)) ? 0 : -Infinity;
  }
  return tensor(out, [batch, 1, tokens, tokens], opts);
}

/** diffusers' HunyuanVideoTokenRefiner. */
export class TokenRefiner {
  constructor(
    readonly timestepEmbedder: MlpEmbedding,
    readonly textEmbedder: MlpEmbedding,
    readonly projIn: Linear,
    /** token_refiner.refiner_blocks, run in order. */
    readonly blocks: TokenRefinerBlock[],
  ) {}

  static load(w: WeightReader, inChannels: number, heads: number, headDim: number, layers: number): TokenRefiner {
    const dim = heads * headDim;
    const tte = w.at('time_text_embed');
    return new TokenRefiner(
      MlpEmbedding.load(tte.at('timestep_embedder'), TIME_PROJ_DIM, dim, 'silu'),
      MlpEmbedding.load(tte.at('text_embedder'), inChannels, dim, 'silu'),
      Linear.load(w.at('proj_in'), inChannels, dim),
      Array.from({ length: layers }, (_, i) => TokenRefinerBlock.load(w.at('token_refiner.refiner_blocks').at(i), heads, headDim)),
    );
  }

  /**
   * The conditioning of the refiner blocks (diffusers' CombinedTimestepTextProjEmbeddings): the
   * timestep features plus the projected masked mean of the text tokens.
   */
  conditioning(x: Tensor, timesteps: Float32Array, mask: Tensor): Tensor {
    return tidy(() => {
      // The mean over valid tokens is taken in float32 and rounded to x's dtype.
      const m = mask.cast('float32').unsqueeze(-1);
      const pooled = div(sum(mul(x.cast('float32'), m), 1), sum(m, 1)).cast(x.dtype);
      const features = sinusoidalTimestepEmbedding(timesteps, TIME_PROJ_DIM, { flipSinToCos: true, downscaleFreqShift: 0, device: x.device, dtype: x.dtype });
      return add(this.timestepEmbedder.forward(features), this.textEmbedder.forward(pooled));
    });
  }

  /** (B, L, text_embed_dim) text embeddings and their (B, L) mask -> (B, L, dim) refined tokens. */
  forward(x: Tensor, timesteps: Float32Array, mask: Tensor, maskValues: Float32Array): Tensor {
    return tidy(() => {
      const temb = this.conditioning(x, timesteps, mask);
      const [batch, tokens] = mask.shape;
      const attnMask = refinerAttentionMask(maskValues, batch, tokens, { device: x.device, dtype: x.dtype });
      let h = this.projIn.forward(x);
      for (const block of this.blocks) h = block.forward(h, temb, attnMask);
      return h;
    });
  }
}
