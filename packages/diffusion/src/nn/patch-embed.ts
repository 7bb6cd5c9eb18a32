// diffusers' PatchEmbed in the form SD3 uses it (pos_embed_max_size set): a strided Conv2d cuts
// latents into patch tokens, and a stored positional embedding over a square grid of
// pos_embed_max_size patches, cropped to the centre of the image's patch grid, is added.
import { add, tidy, type Tensor } from '@ditcache/cuda-runtime';

import { Conv2d } from './layers.js';
import type { WeightReader } from '../io/weights.js';

export interface PatchEmbedOptions {
  patchSize: number;
  inChannels: number;
  embedDim: number;
  /** Side of the stored positional-embedding grid, in patches. */
  posEmbedMaxSize: number;
}

export class PatchEmbed {
  constructor(
    readonly proj: Conv2d,
    /** (1, posEmbedMaxSize^2, embedDim), row-major over the grid. */
    readonly posEmbed: Tensor,
    readonly patchSize: number,
    readonly posEmbedMaxSize: number,
  ) {}

  /** Reads `proj` (the patch Conv2d) and `pos_embed` (the stored grid). */
  static load(w: WeightReader, opts: PatchEmbedOptions): PatchEmbed {
    const { patchSize: p, inChannels, embedDim, posEmbedMaxSize: max } = opts;
    return new PatchEmbed(Conv2d.load(w.at('proj'), inChannels, embedDim, { kernel: p, stride: p }), w.tensor('pos_embed', [1, max * max, embedDim]), p, max);
  }

  /** The patch grid (rows, columns) of latents `height` x `width`; throws where diffusers cannot embed them. */
  grid(height: number, width: number): [rows: number, columns: number] {
    const p = this.patchSize;
    if (height % p !== 0 || width % p !== 0) {
      throw new RangeError(`PatchEmbed: latents ${height}x${width} are not multiples of the patch size ${p}`);
    }
    const [rows, columns] = [height / p, width / p];
    if (rows > this.posEmbedMaxSize || columns > this.posEmbedMaxSize) {
      throw new RangeError(
        `PatchEmbed: latents ${height}x${width} make ${rows}x${columns} patches, more than the ${this.posEmbedMaxSize}x${this.posEmbedMaxSize} positional embeddings (pos_embed_max_size)`,
      );
    }
    return [rows, columns];
  }

  /** Latents (B, C, H, W) -> tokens (B, H/p * W/p, embedDim), row by row. */
  forward(latents: Tensor): Tensor {
    const [batch, , height, width] = latents.shape;
    const [rows, columns] = this.grid(height, width);
    return tidy(() => {
      const patches = this.proj.forward(latents);
      const tokens = patches.reshape(batch, -1, rows * columns).transpose(1, 2);
      return add(tokens, this.croppedPosEmbed(rows, columns));
    });
  }

  /** The (1, rows * columns, embedDim) positional embeddings of a centred rows x columns crop of the grid. */
  croppedPosEmbed(rows: number, columns: number): Tensor {
    const max = this.posEmbedMaxSize;
    const top = Math.floor((max - rows) / 2);
    const left = Math.floor((max - columns) / 2);
    return tidy(() =>
      this.posEmbed
        .reshape(1, max, max, -1)
        .slice(1, top, top + rows)
        .slice(2, left, left + columns)
        .contiguous()
        .reshape(1, rows * columns, -1),
    );
  }
}
