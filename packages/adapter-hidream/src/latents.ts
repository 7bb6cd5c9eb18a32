// HiDream's token layout (diffusers' HiDreamImageTransformer2DModel.patchify / unpatchify): the
// (B, C, H, W) latents are cut into p x p patches, one token each with features ordered
// (patch row, patch column, channel). Non-square latents are padded with zero tokens to the
// model's max_seq, and a mask marks the real ones. Padding and mask are in the latents' dtype,
// as diffusers makes them.
import { concat, ones, tidy, zeros, type Tensor } from '@ditcache/cuda-runtime';

/** The patched latents and what the transformer needs to know about them. */
export interface PatchedLatents {
  /** (B, tokens, p * p * C); tokens = rows * cols, or max_seq for padded non-square latents. */
  tokens: Tensor;
  /** (B, tokens): 1 for real tokens, 0 for padding; null when nothing was padded. */
  masks: Tensor | null;
  /** The patch grid. */
  rows: number;
  cols: number;
  /** Position ids (tokens x 3, row-major): (0, row, column) of each patch; zeros for padding. */
  positions: Float64Array;
}

/**
 * Tokens the transformer runs on for H x W latents: one per patch, or `maxSeq` when H and W
 * differ (padded), as diffusers does.
 */
export function imageTokenCount(height: number, width: number, patch: number, maxSeq: number): number {
  return height === width ? (height / patch) * (width / patch) : maxSeq;
}

/** The (0, row, column) position ids of an H x W latent's patch tokens, zero for patchify's padding tokens. */
export function patchPositions(height: number, width: number, patch: number, maxSeq: number): Float64Array {
  const rows = height / patch;
  const cols = width / patch;
  const positions = new Float64Array(imageTokenCount(height, width, patch, maxSeq) * 3);
  for (let r = 0; r < rows; ++r) {
    for (let c = 0; c < cols; ++c) {
      positions[(r * cols + c) * 3 + 1] = r;
      positions[(r * cols + c) * 3 + 2] = c;
    }
  }
  return positions;
}

/**
 * (B, C, H, W) -> tokens. As in diffusers, latents whose height and width differ are padded to
 * `maxSeq` tokens (so every aspect ratio shares one sequence length); square ones are not.
 */
export function patchify(latents: Tensor, patch: number, maxSeq: number): PatchedLatents {
  const [batch, channels, height, width] = latents.shape;
  if (latents.rank !== 4 || height % patch !== 0 || width % patch !== 0) {
    throw new TypeError(`patchify: expected (B, C, H, W) latents with H and W multiples of ${patch}, got (${latents.shape.join(', ')})`);
  }
  const rows = height / patch;
  const cols = width / patch;
  const count = rows * cols;
  const length = imageTokenCount(height, width, patch, maxSeq);
  if (length < count) {
    throw new RangeError(
      `patchify: non-square latents ${height}x${width} make ${count} tokens, more than the model's max_seq (${maxSeq}, from max_resolution)`,
    );
  }
  const positions = patchPositions(height, width, patch, maxSeq);
  return tidy(() => {
    const device = latents.device;
    const real = latents
      .reshape(batch, channels, rows, patch, cols, patch)
      .permute(0, 2, 4, 3, 5, 1)
      .reshape(batch, count, patch * patch * channels);
    if (height === width) return { tokens: real, masks: null, rows, cols, positions };
    const padding = length - count;
    const dtype = latents.dtype;
    const mask = ones([batch, count], { device, dtype });
    return {
      tokens: padding ? concat([real, zeros([batch, padding, patch * patch * channels], { device, dtype })], 1) : real,
      masks: padding ? concat([mask, zeros([batch, padding], { device, dtype })], 1) : mask,
      rows,
      cols,
      positions,
    };
  });
}

/** (B, tokens, p * p * C) -> (B, C, rows * p, cols * p), dropping padding tokens. */
export function unpatchify(tokens: Tensor, rows: number, cols: number, patch: number): Tensor {
  const [batch, length, features] = tokens.shape;
  if (tokens.rank !== 3 || length < rows * cols || features % (patch * patch) !== 0) {
    throw new TypeError(`unpatchify: (${tokens.shape.join(', ')}) does not hold a ${rows}x${cols} grid of ${patch}x${patch} patches`);
  }
  const channels = features / (patch * patch);
  return tidy(() =>
    tokens
      .narrow(1, 0, rows * cols)
      .reshape(batch, rows, cols, patch, patch, channels)
      .permute(0, 5, 1, 3, 2, 4)
      .reshape(batch, channels, rows * patch, cols * patch),
  );
}
