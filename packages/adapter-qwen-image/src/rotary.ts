// Qwen-Image's rotary position embedding (diffusers' QwenEmbedRope with scale_rope): image tokens
// are placed on a centred grid (row r of h at r - ceil(h / 2), so rows run from -ceil(h/2) to
// floor(h/2) - 1; likewise columns) with their image's index as the frame, and text tokens sit on
// the diagonal just past the image: all three ids equal max(h/2, w/2) + token index. Angles are
// float32 products of float32 frequencies, as diffusers' precomputed tables are.
import { tensor, type Device } from '@ditcache/cuda-runtime';
import type { RotaryTables } from '@ditcache/diffusion';

/** cos and sin, each (text tokens + image tokens, head dim): the joint sequence, text first. */
export type RotaryEmbedding = RotaryTables;

/** One image's latent grid in patches: frames, rows, columns (diffusers' img_shapes entry). */
export type ImageShape = readonly [frames: number, height: number, width: number];

const f32 = Math.fround;
/** diffusers' QwenEmbedRope theta. */
const THETA = 10000;
/** diffusers precomputes 4096 positions each way; positions beyond do not exist there. */
const MAX_POSITION = 4096;

/** The float32 inverse frequencies of an axis of `dim` channels: 1 / theta^(2i / dim). */
function axisFrequencies(dim: number): Float64Array {
  return Float64Array.from({ length: dim / 2 }, (_, i) => f32(1 / f32(THETA ** f32((2 * i) / dim))));
}

/** Position ids (tokens, 3) of the image tokens of `shapes` (in order), then of `textTokens` text tokens. */
export function qwenImagePositions(shapes: readonly ImageShape[], textTokens: number): { image: Int32Array; text: Int32Array } {
  const imageTokens = shapes.reduce((n, [f, h, w]) => n + f * h * w, 0);
  const image = new Int32Array(imageTokens * 3);
  let at = 0;
  shapes.forEach(([frames, height, width], index) => {
    for (let f = 0; f < frames; ++f) {
      for (let r = 0; r < height; ++r) {
        for (let c = 0; c < width; ++c) {
          image[at++] = index + f;
          image[at++] = r - (height - Math.floor(height / 2));
          image[at++] = c - (width - Math.floor(width / 2));
        }
      }
    }
  });
  const start = Math.max(0, ...shapes.map(([, h, w]) => Math.max(Math.floor(h / 2), Math.floor(w / 2))));
  const text = new Int32Array(textTokens * 3).map((_, i) => start + Math.floor(i / 3));
  const largest = Math.max(...image.map(Math.abs), textTokens ? start + textTokens - 1 : 0);
  if (largest >= MAX_POSITION) throw new RangeError(`qwenImageRotaryEmbedding: position ${largest} is beyond Qwen-Image's ${MAX_POSITION} rotary positions`);
  return { image, text };
}

/**
 * The rotary tables of the joint sequence (text tokens, then the image tokens of `shapes`), each
 * frequency's cos / sin repeated for the pair of channels it rotates (the runtime's interleaved rope).
 */
export function qwenImageRotaryEmbedding(shapes: readonly ImageShape[], textTokens: number, axesDims: readonly number[], device?: Device): RotaryEmbedding {
  const { image, text } = qwenImagePositions(shapes, textTokens);
  const positions = new Int32Array(text.length + image.length);
  positions.set(text);
  positions.set(image, text.length);
  const tokens = positions.length / 3;
  const width = axesDims.reduce((a, b) => a + b, 0);
  const freqs = axesDims.map(axisFrequencies);
  const cos = new Float32Array(tokens * width);
  const sin = new Float32Array(tokens * width);
  for (let s = 0; s < tokens; ++s) {
    let at = s * width;
    for (let a = 0; a < 3; ++a) {
      const pos = positions[s * 3 + a];
      for (const f of freqs[a]) {
        const angle = f32(pos * f);
        cos[at] = cos[at + 1] = Math.cos(angle);
        sin[at] = sin[at + 1] = Math.sin(angle);
        at += 2;
      }
    }
  }
  return { cos: tensor(cos, [tokens, width], { device }), sin: tensor(sin, [tokens, width], { device }) };
}
