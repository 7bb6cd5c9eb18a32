// FLUX's rotary position embedding (diffusers' FluxPosEmbed): each token has 3 position ids
// (text tokens all zero; image tokens [0, row, column]), each id axis gets its own slice of the
// head dimension, and every frequency's cos / sin is repeated for the pair it rotates.
import type { Device, Tensor } from '@ditcache/cuda-runtime';
import { multiAxisRotaryTables, type RotaryTables } from '@ditcache/diffusion';

/** cos and sin, each (tokens, head dim), for the joint sequence (text tokens, then image tokens). */
export type RotaryEmbedding = RotaryTables;

/**
 * The rotary tables for `ids` (tokens, axes). Computed in float64 and stored as float32, as
 * diffusers does; interleaved like get_1d_rotary_pos_embed(repeat_interleave_real=True).
 */
export function fluxRotaryEmbedding(ids: Tensor, axesDims: readonly number[], opts: { theta?: number; device?: Device } = {}): RotaryEmbedding {
  if (ids.rank !== 2 || ids.shape[1] !== axesDims.length) {
    throw new TypeError(`fluxRotaryEmbedding: ids must be (tokens, ${axesDims.length}), got (${ids.shape.join(', ')})`);
  }
  return multiAxisRotaryTables(ids.toFloat32Array(), axesDims, opts);
}
