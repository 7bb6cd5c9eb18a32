// HiDream's rotary position embedding (diffusers' HiDreamImageEmbedND). Each token has 3 position
// ids: (0, row, column) for image patches, all zero for text and padding. diffusers stores every
// frequency as the 2x2 rotation [[cos, -sin], [sin, cos]] applied to an adjacent pair of head
// channels; that is the interleaved rotation of the runtime's `rope`, so the same angles are kept
// here as cos / sin tables with each value repeated for its pair.
import { rope, tensor, tidy, type Device, type Tensor } from '@ditcache/cuda-runtime';

/** Frequency base of every axis. */
const THETA = 10000;

/** cos and sin, each (tokens, head dim), for one joint sequence (image tokens, then text). */
export interface HiDreamRotary {
  cos: Tensor;
  sin: Tensor;
}

/**
 * The rotary tables for `positions`, one row of `axesDims.length` ids per token. Angles are
 * computed in float64 and stored as float32, as diffusers does.
 */
export function hidreamRotaryEmbedding(positions: ArrayLike<number>, axesDims: readonly number[], device?: Device): HiDreamRotary {
  const axes = axesDims.length;
  if (positions.length % axes !== 0) throw new TypeError(`hidreamRotaryEmbedding: ${positions.length} ids are not rows of ${axes}`);
  const tokens = positions.length / axes;
  const width = axesDims.reduce((a, b) => a + b, 0);
  const freqs = axesDims.map((dim) => Array.from({ length: dim / 2 }, (_, i) => 1 / THETA ** ((2 * i) / dim)));
  const cos = new Float32Array(tokens * width);
  const sin = new Float32Array(tokens * width);
  for (let s = 0; s < tokens; ++s) {
    let at = s * width;
    for (let a = 0; a < axes; ++a) {
      const pos = positions[s * axes + a];
      for (const f of freqs[a]) {
        const angle = pos * f;
        cos[at] = cos[at + 1] = Math.cos(angle);
        sin[at] = sin[at + 1] = Math.sin(angle);
        at += 2;
      }
    }
  }
  return { cos: tensor(cos, [tokens, width], { device }), sin: tensor(sin, [tokens, width], { device }) };
}

/** Rotates queries or keys (B, S, heads, head dim) by the tables of their S tokens. */
export function applyRotary(x: Tensor, rotary: HiDreamRotary): Tensor {
  // (S, head dim) as (S, 1, head dim) broadcasts over batch and heads.
  return tidy(() => rope(x, rotary.cos.unsqueeze(1), rotary.sin.unsqueeze(1)));
}
