// HiDream's rotary position embedding (diffusers' HiDreamImageEmbedND). Each token has 3 position
// ids: (0, row, column) for image patches, all zero for text and padding. diffusers stores every
// frequency as the 2x2 rotation [[cos, -sin], [sin, cos]] applied to an adjacent pair of head
// channels; that is the interleaved rotation of the runtime's `rope`, so the same angles are kept
// here as cos / sin tables with each value repeated for its pair. The tables are float32 in every
// dtype; the rotation computes in float32 and rounds once to the queries' dtype, as diffusers'
// apply_rope (`xq.float()` ... `.type_as(xq)`).
import { rope, tidy, type Device, type Tensor } from '@ditcache/cuda-runtime';
import { multiAxisRotaryTables, type RotaryTables } from '@ditcache/diffusion';

/** cos and sin, each (tokens, head dim), for one joint sequence (image tokens, then text). */
export type HiDreamRotary = RotaryTables;

/** The rotary tables for `positions`, one row of `axesDims.length` ids per token (frequency base 10000). */
export function hidreamRotaryEmbedding(positions: ArrayLike<number>, axesDims: readonly number[], device?: Device): HiDreamRotary {
  return multiAxisRotaryTables(positions, axesDims, { device });
}

/** Rotates queries or keys (B, S, heads, head dim) by the tables of their S tokens. */
export function applyRotary(x: Tensor, rotary: HiDreamRotary): Tensor {
  // (S, head dim) as (S, 1, head dim) broadcasts over batch and heads.
  return tidy(() => rope(x, rotary.cos.unsqueeze(1), rotary.sin.unsqueeze(1)).cast(x.dtype));
}
