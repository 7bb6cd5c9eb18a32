// FLUX's latent layout, shared by the FLUX-derived families (FLUX.1, Chroma): the VAE's
// (B, C, h, w) latents are cut into 2x2 patches and packed as (B, h/2 * w/2 tokens, C * 4); each
// token's position ids are [0, row, column] of its patch.
import { tensor, tidy, type Device, type Tensor } from '@ditcache/cuda-runtime';

/** (B, C, h, w) -> (B, (h/2) * (w/2), C * 4). */
export function packLatents(latents: Tensor): Tensor {
  const [batch, channels, height, width] = latents.shape;
  if (latents.rank !== 4 || height % 2 !== 0 || width % 2 !== 0) {
    throw new TypeError(`packLatents: expected (B, C, h, w) with even h and w, got (${latents.shape.join(', ')})`);
  }
  return tidy(() =>
    latents
      .reshape(batch, channels, height / 2, 2, width / 2, 2)
      .permute(0, 2, 4, 1, 3, 5)
      .reshape(batch, (height / 2) * (width / 2), channels * 4),
  );
}

/** (B, (h/2) * (w/2), C * 4) -> (B, C, h, w), the inverse of packLatents. */
export function unpackLatents(packed: Tensor, height: number, width: number): Tensor {
  const [batch, tokens, packedChannels] = packed.shape;
  if (packed.rank !== 3 || tokens !== (height / 2) * (width / 2) || packedChannels % 4 !== 0) {
    throw new TypeError(`unpackLatents: (${packed.shape.join(', ')}) is not a packed ${height}x${width} latent`);
  }
  const channels = packedChannels / 4;
  return tidy(() =>
    packed
      .reshape(batch, height / 2, width / 2, channels, 2, 2)
      .permute(0, 3, 1, 4, 2, 5)
      .reshape(batch, channels, height, width),
  );
}

/** Position ids (rows * cols, 3) of a rows x cols grid of patches: [0, row, column]. */
export function latentImageIds(rows: number, cols: number, device?: Device): Tensor {
  const ids = new Float32Array(rows * cols * 3);
  for (let r = 0; r < rows; ++r) {
    for (let c = 0; c < cols; ++c) {
      const at = (r * cols + c) * 3;
      ids[at + 1] = r;
      ids[at + 2] = c;
    }
  }
  return tensor(ids, [rows * cols, 3], { device });
}
