// Qwen-Image's dual-stream MMDiT block (diffusers' QwenImageTransformerBlock): image and text keep
// their own modulation, norms and MLPs and meet in joint attention (FLUX's, from @ditcache/diffusion,
// with padded text masked out as keys); it takes and returns both streams, (encoder, hidden) out as
// diffusers returns them. Unlike FLUX's double-stream body, a float16 block clips both streams, as
// diffusers' Qwen-Image does; values float16 cannot hold stop the run (checkFloat16Range).
import { tidy, type Tensor } from '@ditcache/cuda-runtime';
import {
  FeedForward,
  JointAttention,
  Linear,
  checkFloat16Range,
  clipToFloat16Range,
  gatedResidual,
  modulate,
  modulationParameters,
  type WeightReader,
} from '@ditcache/diffusion';

import type { RotaryEmbedding } from './rotary.js';

/**
 * What the transformer's block loop calls: [encoder, hidden] out, the next block's inputs. A cache
 * engine may put its own objects of this shape in the block array.
 */
export interface QwenImageBlock {
  forward(hidden: Tensor, encoder: Tensor, temb: Tensor, rotary: RotaryEmbedding, keyMask: Tensor | undefined): [encoder: Tensor, hidden: Tensor];
}

/** One stream's modulation (shift, scale, gate for attention, then for the MLP) and MLP. */
interface Stream {
  mod: Linear;
  mlp: FeedForward;
}

function loadStream(w: WeightReader, prefix: 'img' | 'txt', dim: number): Stream {
  return {
    mod: Linear.load(w.at(`${prefix}_mod.1`), dim, 6 * dim),
    mlp: FeedForward.load(w.at(`${prefix}_mlp`), dim, 4 * dim, 'gelu-approximate'),
  };
}

export class QwenImageTransformerBlock implements QwenImageBlock {
  constructor(
    readonly image: Stream,
    readonly text: Stream,
    readonly attn: JointAttention,
    /** diffusers' module name (e.g. 'transformer_blocks.3'), for errors. */
    readonly name = 'transformer_blocks',
  ) {}

  static load(w: WeightReader, dim: number, heads: number, headDim: number): QwenImageTransformerBlock {
    return new QwenImageTransformerBlock(
      loadStream(w, 'img', dim),
      loadStream(w, 'txt', dim),
      JointAttention.load(w.at('attn'), dim, heads, headDim),
      w.prefix.replace(/\.$/, ''),
    );
  }

  forward(hidden: Tensor, encoder: Tensor, temb: Tensor, rotary: RotaryEmbedding, keyMask: Tensor | undefined): [Tensor, Tensor] {
    return tidy(() => {
      const [shift, scale, gate, shiftMlp, scaleMlp, gateMlp] = modulationParameters(this.image.mod, temb, 6);
      const [cShift, cScale, cGate, cShiftMlp, cScaleMlp, cGateMlp] = modulationParameters(this.text.mod, temb, 6);
      const [attnOut, textAttnOut] = this.attn.forward(modulate(hidden, scale, shift), modulate(encoder, cScale, cShift), rotary, keyMask);
      const h = gatedResidual(hidden, gate, attnOut);
      const e = gatedResidual(encoder, cGate, textAttnOut);
      const hOut = clipToFloat16Range(gatedResidual(h, gateMlp, this.image.mlp.forward(modulate(h, scaleMlp, shiftMlp))));
      const eOut = clipToFloat16Range(gatedResidual(e, cGateMlp, this.text.mlp.forward(modulate(e, cScaleMlp, cShiftMlp))));
      checkFloat16Range(this.name, eOut, hOut);
      return [eOut, hOut];
    });
  }
}
