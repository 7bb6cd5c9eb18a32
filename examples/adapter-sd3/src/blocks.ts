// SD3's JointTransformerBlock (diffusers' attention.py): image and text streams with their own
// AdaLayerNormZero modulation, joint attention and feed-forward, returning (encoder, hidden) —
// ForwardPattern 1. The last block of the model is `context_pre_only`: its text stream only
// serves as keys and values, so it modulates the text with an AdaLayerNormContinuous and
// returns no encoder stream (null). SD3.5's dual-attention blocks modulate a second copy of
// the image stream (SD35AdaLayerNormZeroX) for a self-attention of their own. In bfloat16 /
// float16 every op takes and returns the dtype, as in diffusers; in float16 a block whose output
// leaves float16's range stops the run with an error naming it (diffusers does not clip SD3).
import { ForwardPattern } from '@ditcache/core';
import { tidy, type Tensor } from '@ditcache/cuda-runtime';
import {
  AdaLayerNormContinuous,
  AdaLayerNormZero,
  FeedForward,
  Linear,
  checkFloat16Range,
  gatedResidual,
  modulate,
  modulationParameters,
  type AdaLayerNormZeroOutput,
  type WeightReader,
} from '@ditcache/diffusion';

import { JointAttention, SelfAttention, type AttentionShape } from './attention.js';

/** Epsilon of the text stream's AdaLayerNormContinuous in a context_pre_only block. */
const CONTEXT_NORM_EPS = 1e-6;

/**
 * What the transformer's block loop calls. `forward` returns [encoder, hidden]: the encoder
 * stream is null after a block that ends it. A cache engine may put its own objects of this
 * shape in the block list.
 */
export interface SD3Block {
  forward(hidden: Tensor, encoder: Tensor, temb: Tensor): [encoder: Tensor | null, hidden: Tensor];
}

/** What SD35AdaLayerNormZeroX adds to AdaLayerNormZero's outputs: the input of attn2 and its gate. */
interface DualNormOutput extends AdaLayerNormZeroOutput {
  normed2: Tensor;
  gateMsa2: Tensor;
}

/** diffusers' SD35AdaLayerNormZeroX: AdaLayerNormZero's six parts plus shift, scale and gate for attn2. */
export class SD35AdaLayerNormZeroX {
  constructor(readonly linear: Linear) {}

  static load(w: WeightReader, dim: number): SD35AdaLayerNormZeroX {
    return new SD35AdaLayerNormZeroX(Linear.load(w.at('linear'), dim, 9 * dim));
  }

  forward(x: Tensor, emb: Tensor): DualNormOutput {
    return tidy(() => {
      const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp, shiftMsa2, scaleMsa2, gateMsa2] = modulationParameters(this.linear, emb, 9);
      return { normed: modulate(x, scaleMsa, shiftMsa), gateMsa, shiftMlp, scaleMlp, gateMlp, normed2: modulate(x, scaleMsa2, shiftMsa2), gateMsa2 };
    });
  }
}

export interface JointBlockOptions extends AttentionShape {
  /** The last block: the text stream is not carried on. */
  contextPreOnly: boolean;
  /** SD3.5's second attention over the image stream. */
  dualAttention: boolean;
}

/** x + gate * ff(LayerNorm(x) * (1 + scale) + shift): the feed-forward half of either stream. */
function feedForwardResidual(ff: FeedForward, x: Tensor, p: AdaLayerNormZeroOutput): Tensor {
  return gatedResidual(x, p.gateMlp, ff.forward(modulate(x, p.scaleMlp, p.shiftMlp)));
}

/** diffusers' JointTransformerBlock. */
export class JointTransformerBlock implements SD3Block {
  /** Stated for the cache engine: (hidden, encoder, temb) in, [encoder, hidden] out. */
  static readonly forwardPattern = ForwardPattern.Pattern_1;

  constructor(
    readonly norm1: AdaLayerNormZero | SD35AdaLayerNormZeroX,
    /** AdaLayerNormContinuous in a context_pre_only block, AdaLayerNormZero otherwise. */
    readonly norm1Context: AdaLayerNormZero | AdaLayerNormContinuous,
    readonly attn: JointAttention,
    readonly attn2: SelfAttention | null,
    readonly ff: FeedForward,
    /** null in a context_pre_only block. */
    readonly ffContext: FeedForward | null,
    /** diffusers' module name (e.g. 'transformer_blocks.3'), for errors. */
    readonly name = 'transformer_blocks',
  ) {}

  static load(w: WeightReader, o: JointBlockOptions): JointTransformerBlock {
    const feedForward = (name: string) => FeedForward.load(w.at(name), o.dim, 4 * o.dim, 'gelu-approximate');
    return new JointTransformerBlock(
      o.dualAttention ? SD35AdaLayerNormZeroX.load(w.at('norm1'), o.dim) : AdaLayerNormZero.load(w.at('norm1'), o.dim),
      o.contextPreOnly ? AdaLayerNormContinuous.load(w.at('norm1_context'), o.dim, CONTEXT_NORM_EPS) : AdaLayerNormZero.load(w.at('norm1_context'), o.dim),
      JointAttention.load(w.at('attn'), o, o.contextPreOnly),
      o.dualAttention ? SelfAttention.load(w.at('attn2'), o) : null,
      feedForward('ff'),
      o.contextPreOnly ? null : feedForward('ff_context'),
      w.prefix.replace(/\.$/, ''),
    );
  }

  /** The block that ends the encoder stream (the model's last). */
  get contextPreOnly(): boolean {
    return this.ffContext === null;
  }

  forward(hidden: Tensor, encoder: Tensor, temb: Tensor): [Tensor | null, Tensor] {
    return tidy(() => {
      const image = this.norm1.forward(hidden, temb);
      const contextNorm = this.norm1Context;
      if (contextNorm instanceof AdaLayerNormContinuous) {
        // context_pre_only: the text serves as keys and values only, and goes no further.
        const [attnOut] = this.attn.forward(image.normed, contextNorm.forward(encoder, temb));
        return [null, this.imageUpdate(hidden, image, attnOut)];
      }
      const text = contextNorm.forward(encoder, temb);
      const [attnOut, contextAttnOut] = this.attn.forward(image.normed, text.normed);
      const e = gatedResidual(encoder, text.gateMsa, contextAttnOut as Tensor);
      const encoderOut = feedForwardResidual(this.ffContext as FeedForward, e, text);
      checkFloat16Range(this.name, encoderOut);
      return [encoderOut, this.imageUpdate(hidden, image, attnOut)];
    });
  }

  /** The image stream's residuals: attention, SD3.5's attn2, feed-forward. */
  private imageUpdate(hidden: Tensor, image: AdaLayerNormZeroOutput | DualNormOutput, attnOut: Tensor): Tensor {
    let h = gatedResidual(hidden, image.gateMsa, attnOut);
    if (this.attn2) {
      const dual = image as DualNormOutput;
      h = gatedResidual(h, dual.gateMsa2, this.attn2.forward(dual.normed2));
    }
    const out = feedForwardResidual(this.ff, h, image);
    checkFloat16Range(this.name, out);
    return out;
  }
}
