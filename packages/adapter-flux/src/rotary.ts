// FLUX's rotary position embedding (diffusers' FluxPosEmbed): each token has 3 position ids
// (text tokens all zero; image tokens [0, row, column]), each id axis gets its own slice of the
// head dimension, and every frequency's cos / sin is repeated for the pair it rotates.
import { tensor, type Device, type Tensor } from '@ditcache/cuda-runtime';

/** cos and sin, each (tokens, head dim), for the joint sequence (text tokens, then image tokens). */
export interface RotaryEmbedding {
  cos: Tensor;
  sin: Tensor;
}

/**
 * The rotary tables for `ids` (tokens, axes). Computed in float64 and stored as float32, as
 * diffusers does; interleaved like get_1d_rotary_pos_embed(repeat_interleave_real=True).
 */
export function fluxRotaryEmbedding(ids: Tensor, axesDims: readonly number[], opts: { theta?: number; device?: Device } = {}): RotaryEmbedding {
  const theta = opts.theta ?? 10000;
  if (ids.rank !== 2 || ids.shape[1] !== axesDims.length) {
    throw new TypeError(`fluxRotaryEmbedding: ids must be (tokens, ${axesDims.length}), got (${ids.shape.join(', ')})`);
  }
  const tokens = ids.shape[0];
  const axes = axesDims.length;
  const width = axesDims.reduce((a, b) => a + b, 0);
  const positions = ids.toFloat32Array();
  const freqs = axesDims.map((dim) => Array.from({ length: dim / 2 }, (_, i) => 1 / theta ** ((2 * i) / dim)));
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
  return {
    cos: tensor(cos, [tokens, width], { device: opts.device }),
    sin: tensor(sin, [tokens, width], { device: opts.device }),
  };
}
