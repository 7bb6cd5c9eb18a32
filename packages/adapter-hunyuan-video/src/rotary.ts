// HunyuanVideo's rotary position embedding (diffusers' HunyuanVideoRotaryPosEmbed): every image
// token has the position (frame, row, column) of its patch; each axis rotates its own slice of
// the head dimension (rope_axes_dim), interleaved, with angles in float32. Text tokens are not
// rotated.
import type { Device } from '@ditcache/cuda-runtime';
import { multiAxisRotaryTables, type RotaryTables } from '@ditcache/diffusion';

/** cos and sin, each (image tokens, head dim), tokens in (frame, row, column) order. */
export type RotaryEmbedding = RotaryTables;

/** The tables of a (frames, rows, columns) grid of patches. */
export function hunyuanVideoRotaryEmbedding(
  grid: readonly [frames: number, rows: number, columns: number],
  axesDims: readonly number[],
  opts: { theta: number; device?: Device },
): RotaryEmbedding {
  const [frames, rows, columns] = grid;
  const ids = new Float32Array(frames * rows * columns * 3);
  let at = 0;
  for (let f = 0; f < frames; ++f)
    for (let r = 0; r < rows; ++r)
      for (let c = 0; c < columns; ++c) {
        ids[at++] = f;
        ids[at++] = r;
        ids[at++] = c;
      }
  return multiAxisRotaryTables(ids, axesDims, { theta: opts.theta, device: opts.device, float32Angles: true });
}
