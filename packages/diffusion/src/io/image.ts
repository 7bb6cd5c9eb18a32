// From decoded VAE output to pictures: diffusers' VaeImageProcessor.postprocess (denormalise to
// [0, 1], channels last), VideoProcessor.postprocess_video (the same per frame) and the PIL
// conversion (x 255, round half to even, 8-bit), written as PNG.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { add, clamp, mul, tidy, type Tensor } from '@ditcache/cuda-runtime';
import sharp from 'sharp';

/**
 * (B, C, H, W) decoder output in [-1, 1] -> (B, H, W, C) float32 in [0, 1], as output_type="np"
 * gives: denormalised in the decoder's dtype, then widened to float32 (diffusers' `.float()`).
 */
export function toImageRange(decoded: Tensor): Tensor {
  if (decoded.rank !== 4) throw new TypeError(`toImageRange: expected (B, C, H, W) decoder output, got (${decoded.shape.join(', ')})`);
  return tidy(() =>
    asFloat32(
      clamp(add(mul(decoded, 0.5), 0.5), 0, 1)
        .permute(0, 2, 3, 1)
        .contiguous(),
    ),
  );
}

/** (B, C, F, H, W) video decoder output in [-1, 1] -> (B, F, H, W, C) float32 in [0, 1], as output_type="np" gives (widened like toImageRange's). */
export function toVideoRange(decoded: Tensor): Tensor {
  if (decoded.rank !== 5) throw new TypeError(`toVideoRange: expected (B, C, F, H, W) decoder output, got (${decoded.shape.join(', ')})`);
  return tidy(() =>
    asFloat32(
      clamp(add(mul(decoded, 0.5), 0.5), 0, 1)
        .permute(0, 2, 3, 4, 1)
        .contiguous(),
    ),
  );
}

/** `t` itself when float32, else its float32 copy. */
function asFloat32(t: Tensor): Tensor {
  return t.dtype === 'float32' ? t : t.cast('float32');
}

/** An 8-bit RGB (or grey) picture, rows top to bottom, channels interleaved. */
export interface Image8 {
  width: number;
  height: number;
  channels: number;
  data: Uint8Array;
}

/**
 * Image `index` of a (B, H, W, C) tensor in [0, 1] as 8 bits per channel, rounded the way
 * diffusers' numpy_to_pil rounds ((x * 255).round(), ties to even).
 */
export function toImage8(images: Tensor, index = 0): Image8 {
  if (images.rank !== 4) throw new TypeError(`toImage8: expected (B, H, W, C) images, got (${images.shape.join(', ')})`);
  const [batch, height, width, channels] = images.shape;
  if (!Number.isInteger(index) || index < 0 || index >= batch) throw new RangeError(`toImage8: image ${index} of a batch of ${batch}`);
  if (channels !== 1 && channels !== 3) throw new TypeError(`toImage8: ${channels} channels; expected 1 (grey) or 3 (RGB)`);
  const slice = images.narrow(0, index, 1);
  const values = slice.toFloat32Array();
  slice.dispose();
  const data = new Uint8Array(values.length);
  for (let i = 0; i < values.length; ++i) data[i] = roundHalfEven(Math.fround(values[i] * 255));
  return { width, height, channels, data };
}

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** PNG bytes of an 8-bit picture. */
export function encodePng(image: Image8): Promise<Buffer> {
  return sharp(image.data, { raw: { width: image.width, height: image.height, channels: image.channels as 1 | 3 } })
    .png()
    .toBuffer();
}

/** Writes image `index` of a (B, H, W, C) tensor in [0, 1] to `path` as an 8-bit PNG. */
export async function savePng(images: Tensor, path: string, index = 0): Promise<void> {
  await writeFile(path, await encodePng(toImage8(images, index)));
}

/**
 * Writes every frame of video `index` of a (B, F, H, W, C) tensor in [0, 1] to `dir` as
 * 8-bit PNGs named frame_0000.png, frame_0001.png, ...; returns their paths in frame order.
 */
export async function savePngFrames(video: Tensor, dir: string, index = 0): Promise<string[]> {
  if (video.rank !== 5) throw new TypeError(`savePngFrames: expected (B, F, H, W, C) frames, got (${video.shape.join(', ')})`);
  const batch = video.shape[0];
  if (!Number.isInteger(index) || index < 0 || index >= batch) throw new RangeError(`savePngFrames: video ${index} of a batch of ${batch}`);
  await mkdir(dir, { recursive: true });
  const frames = tidy(() => video.narrow(0, index, 1).squeeze(0));
  try {
    const paths: string[] = [];
    for (let f = 0; f < frames.shape[0]; ++f) {
      const path = join(dir, `frame_${String(f).padStart(4, '0')}.png`);
      await writeFile(path, await encodePng(toImage8(frames, f)));
      paths.push(path);
    }
    return paths;
  } finally {
    frames.dispose();
  }
}

/**
 * Writes video `index` of a (B, F, H, W, C) tensor in [0, 1] as a looping animation: animated
 * WebP for a `.webp` path, GIF for `.gif` (256 colours), at `fps` frames per second.
 */
export async function saveAnimation(video: Tensor, path: string, opts: { index?: number; fps?: number } = {}): Promise<void> {
  if (video.rank !== 5) throw new TypeError(`saveAnimation: expected (B, F, H, W, C) frames, got (${video.shape.join(', ')})`);
  const format = /\.webp$/i.test(path) ? 'webp' : /\.gif$/i.test(path) ? 'gif' : null;
  if (!format) throw new TypeError(`saveAnimation: ${path} must end in .webp or .gif`);
  const index = opts.index ?? 0;
  if (!Number.isInteger(index) || index < 0 || index >= video.shape[0]) throw new RangeError(`saveAnimation: video ${index} of a batch of ${video.shape[0]}`);
  const fps = opts.fps ?? 16;
  if (!(fps > 0)) throw new RangeError(`saveAnimation: fps must be positive, got ${fps}`);
  const frames = tidy(() => video.narrow(0, index, 1).squeeze(0));
  try {
    const pngs = await Promise.all(Array.from({ length: frames.shape[0] }, (_, f) => encodePng(toImage8(frames, f))));
    const animation = sharp(pngs, { join: { animated: true } });
    // One delay per frame: a single number sets only the first frame's.
    const delay = Array<number>(pngs.length).fill(Math.round(1000 / fps));
    await writeFile(path, await (format === 'webp' ? animation.webp({ loop: 0, delay, lossless: true }) : animation.gif({ loop: 0, delay })).toBuffer());
  } finally {
    frames.dispose();
  }
}
