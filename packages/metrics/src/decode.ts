import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { MetricsError } from './errors.js';
import type { PixelImage } from './image.js';
import { npyToImage, parseNpy } from './npy.js';

/** File extensions read as images (lower case, with the dot). */
export const IMAGE_EXTENSIONS: readonly string[] = ['.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff', '.avif', '.npy'];

export function isImageFile(name: string): boolean {
  return IMAGE_EXTENSIONS.includes(extname(name).toLowerCase());
}

/**
 * The colour spaces decoded as stored. sharp converts everything to 8-bit sRGB by default;
 * asking for the input's own space keeps 1-channel images 1-channel and 16-bit images 16-bit.
 */
const KEPT_SPACES: Record<string, { space: 'srgb' | 'b-w' | 'rgb16' | 'grey16'; depth: 'uchar' | 'ushort' }> = {
  srgb: { space: 'srgb', depth: 'uchar' },
  rgb: { space: 'srgb', depth: 'uchar' },
  'b-w': { space: 'b-w', depth: 'uchar' },
  rgb16: { space: 'rgb16', depth: 'ushort' },
  grey16: { space: 'grey16', depth: 'ushort' },
};

/**
 * Decodes an image file to the samples it stores: PNG, JPEG, WebP, TIFF and AVIF through
 * sharp (8- or 16-bit, grey or RGB, with or without alpha), and `.npy` arrays (uint8, uint16,
 * float32, float64; float images are taken to be in [0, 1]).
 *
 * An embedded ICC profile is left alone (`keepIccProfile`): the metrics compare stored
 * values, as scikit-image does after imageio or OpenCV reads the file, not colour-managed ones.
 */
export async function loadImage(path: string): Promise<PixelImage> {
  const extension = extname(path).toLowerCase();
  if (!IMAGE_EXTENSIONS.includes(extension)) {
    throw new MetricsError(`unsupported image format "${extension || '(no extension)'}": ${path} (supported: ${IMAGE_EXTENSIONS.join(', ')})`);
  }
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw new MetricsError(`cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
  if (extension === '.npy') return npyToImage(parseNpy(bytes, path), path);
  return decodeImageBytes(bytes, path);
}

/** Decodes encoded image bytes (PNG, JPEG, WebP, TIFF, AVIF) with sharp; `label` names the source in errors. */
export async function decodeImageBytes(bytes: Uint8Array, label: string): Promise<PixelImage> {
  let metadata: Metadata;
  try {
    metadata = await sharp(bytes).metadata();
  } catch (error) {
    throw new MetricsError(`unreadable or unsupported image ${label}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const kept = metadata.space ? KEPT_SPACES[metadata.space] : undefined;
  if (!kept || (metadata.depth !== 'uchar' && metadata.depth !== 'ushort')) {
    throw new MetricsError(
      `unsupported pixel format in ${label}: colour space ${metadata.space ?? 'unknown'}, sample type ${metadata.depth ?? 'unknown'} (supported: 8- and 16-bit grey or RGB, with or without alpha)`,
    );
  }
  // sharp drops the alpha band of 8-bit grey + alpha when asked for 'b-w'; decoded as sRGB the
  // grey band is copied to R, G and B unchanged, so take R and alpha from that instead.
  const greyWithAlpha = kept.space === 'b-w' && metadata.channels === 2;
  let decoded: { data: Buffer; info: OutputInfo };
  try {
    decoded = await sharp(bytes, { failOn: 'error' })
      .keepIccProfile()
      .toColourspace(greyWithAlpha ? 'srgb' : kept.space)
      .raw({ depth: kept.depth })
      .toBuffer({ resolveWithObject: true });
  } catch (error) {
    throw new MetricsError(`unreadable image ${label}: ${(error as Error).message}`, { cause: error });
  }
  const { data, info } = decoded;
  if (greyWithAlpha) {
    if (info.channels !== 4) throw new MetricsError(`unexpected decoding of grey + alpha image ${label}: ${info.channels} channels`);
    const pixels = info.width * info.height;
    const greyAlpha = new Uint8Array(pixels * 2);
    for (let i = 0; i < pixels; i++) {
      greyAlpha[2 * i] = data[4 * i];
      greyAlpha[2 * i + 1] = data[4 * i + 3];
    }
    return { width: info.width, height: info.height, channels: 2, data: greyAlpha };
  }
  if (kept.depth === 'ushort') {
    // A Uint16Array view needs an even byte offset; copy in the rare case sharp's buffer has none.
    const aligned = data.byteOffset % 2 === 0 ? data : Buffer.from(data);
    return {
      width: info.width,
      height: info.height,
      channels: info.channels,
      data: new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.length / 2),
    };
  }
  return {
    width: info.width,
    height: info.height,
    channels: info.channels,
    data: new Uint8Array(data.buffer, data.byteOffset, data.length),
  };
}
