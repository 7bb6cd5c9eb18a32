// Rotary position tables over several position axes, as FLUX's FluxPosEmbed and HiDream's
// HiDreamImageEmbedND build them: every axis gets its own slice of the head dimension with
// diffusers' get_1d_rotary_pos_embed frequencies, and each frequency's cos / sin is repeated for
// the adjacent pair of channels it rotates (repeat_interleave_real=True), which is the interleaved
// rotation of the runtime's `rope`.
import { tensor, type Device, type Tensor } from '@ditcache/cuda-runtime';

/** cos and sin, each (tokens, sum of the axes' dims). */
export interface RotaryTables {
  cos: Tensor;
  sin: Tensor;
}

/**
 * The tables for `positions`, one row of `axesDims.length` ids per token. Angles are computed in
 * float64 and stored as float32, as diffusers does with freqs_dtype=torch.float64 (FLUX, HiDream);
 * `float32Angles` computes frequencies and angles in float32 instead, as get_1d_rotary_pos_embed's
 * default freqs_dtype does (HunyuanVideo).
 */
export function multiAxisRotaryTables(
  positions: ArrayLike<number>,
  axesDims: readonly number[],
  opts: { theta?: number; device?: Device; float32Angles?: boolean } = {},
): RotaryTables {
  const theta = opts.theta ?? 10000;
  // Identity for float64 angles; float32 rounding (torch's float32 arange / pow / outer) otherwise.
  const round = opts.float32Angles ? Math.fround : (v: number): number => v;
  const axes = axesDims.length;
  const oddAxis = axesDims.findIndex((dim) => !Number.isInteger(dim) || dim < 2 || dim % 2 !== 0);
  if (axes === 0 || oddAxis >= 0) throw new TypeError(`multiAxisRotaryTables: every axis dim must be an even integer >= 2, got [${axesDims.join(', ')}]`);
  if (positions.length % axes !== 0) throw new TypeError(`multiAxisRotaryTables: ${positions.length} ids are not rows of ${axes}`);
  const tokens = positions.length / axes;
  const width = axesDims.reduce((a, b) => a + b, 0);
  const freqs = axesDims.map((dim) => Array.from({ length: dim / 2 }, (_, i) => round(1 / round(theta ** round((2 * i) / dim)))));
  const cos = new Float32Array(tokens * width);
  const sin = new Float32Array(tokens * width);
  for (let s = 0; s < tokens; ++s) {
    let at = s * width;
    for (let a = 0; a < axes; ++a) {
      const pos = positions[s * axes + a];
      for (const f of freqs[a]) {
        const angle = round(pos * f);
        cos[at] = cos[at + 1] = Math.cos(angle);
        sin[at] = sin[at + 1] = Math.sin(angle);
        at += 2;
      }
    }
  }
  return { cos: tensor(cos, [tokens, width], { device: opts.device }), sin: tensor(sin, [tokens, width], { device: opts.device }) };
}
