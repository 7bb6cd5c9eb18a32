// Chroma's transformer blocks: FLUX's double- and single-stream blocks (their bodies are
// @ditcache/diffusion's doubleStreamBlock / singleStreamBlock) without the norm linears, taking
// their modulation from the rows of the table the distilled guidance layer made. As in diffusers,
// the transformer's loop hands each block its own rows: a double-stream block gets 12 (B, 12, dim)
// (6 for the image stream, then 6 for the text), a single-stream block 3 (B, 3, dim), and the
// single-stream blocks take and return the joint (text, image) tokens.
import { tidy, type Tensor } from '@ditcache/cuda-runtime';
import {
  doubleStreamBlock,
  loadDoubleStreamLayers,
  loadSingleStreamLayers,
  singleStreamBlock,
  type DoubleStreamLayers,
  type RotaryTables,
  type SingleStreamLayers,
  type WeightReader,
} from '@ditcache/diffusion';

/** What every block of one transformer call shares. */
export interface ChromaBlockContext {
  /** cos / sin tables (text + image tokens, head dim). */
  readonly rotary: RotaryTables;
  /** (B, 1, 1, text + image tokens), -Infinity at the padded text keys; undefined when nothing is masked. */
  readonly keyMask: Tensor | undefined;
}

/** What the transformer's double-stream loop calls (unpatched): `temb` holds the block's 12 modulation rows. */
export interface ChromaDoubleBlock {
  forward(hidden: Tensor, encoder: Tensor, temb: Tensor, context: ChromaBlockContext): [encoder: Tensor, hidden: Tensor];
}

/** What the transformer's single-stream loop calls (unpatched): `temb` holds the block's 3 modulation rows. */
export interface ChromaSingleBlock {
  forward(joint: Tensor, temb: Tensor, context: ChromaBlockContext): Tensor;
}

/** diffusers' ChromaTransformerBlock. */
export class ChromaTransformerBlock implements ChromaDoubleBlock {
  constructor(readonly layers: DoubleStreamLayers) {}

  static load(w: WeightReader, dim: number, heads: number, headDim: number): ChromaTransformerBlock {
    return new ChromaTransformerBlock(loadDoubleStreamLayers(w, dim, heads, headDim));
  }

  forward(hidden: Tensor, encoder: Tensor, temb: Tensor, context: ChromaBlockContext): [Tensor, Tensor] {
    return tidy(() => {
      // (B, 1, dim) each: the modulation broadcasts over the tokens as it is.
      const rows = temb.split(12, 1);
      return doubleStreamBlock(this.layers, hidden, encoder, rows.slice(0, 6), rows.slice(6), context.rotary, context.keyMask);
    });
  }
}

/** diffusers' ChromaSingleTransformerBlock. */
export class ChromaSingleTransformerBlock implements ChromaSingleBlock {
  constructor(readonly layers: SingleStreamLayers) {}

  static load(w: WeightReader, dim: number, heads: number, headDim: number): ChromaSingleTransformerBlock {
    return new ChromaSingleTransformerBlock(loadSingleStreamLayers(w, dim, heads, headDim));
  }

  forward(joint: Tensor, temb: Tensor, context: ChromaBlockContext): Tensor {
    return tidy(() => singleStreamBlock(this.layers, joint, temb.split(3, 1), context.rotary, context.keyMask));
  }
}
