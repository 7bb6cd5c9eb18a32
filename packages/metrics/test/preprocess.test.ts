import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { clipPixelValues, imageBatch, loadImage, pixelImage, resizeBicubicLikePillow, rgbPlanes, toRgb8 } from '../src/index.js';
import { DATA_DIR, GOLDENS_DIR } from './helpers/paths.js';

const reference = JSON.parse(readFileSync(join(DATA_DIR, 'reference-values.json'), 'utf8')) as {
  pillow_version: string;
  pillow_bicubic: { file: string; width: number; height: number; sha256: string }[];
};

describe("bicubic resize, bit-exact with Pillow's Image.resize(BICUBIC)", () => {
  it.each(reference.pillow_bicubic.map((c) => [`${c.file} -> ${c.width}x${c.height}`, c] as const))('%s', async (_label, c) => {
    const image = await loadImage(join(GOLDENS_DIR, 'ref', c.file));
    const resized = resizeBicubicLikePillow(toRgb8(image), image.width, image.height, c.width, c.height);
    expect(createHash('sha256').update(resized).digest('hex')).toBe(c.sha256);
  });
});

describe('network inputs', () => {
  it('replicates grey, drops alpha and scales by the data range', () => {
    const grey = pixelImage(new Uint16Array([0, 65535]), 2, 1, 1);
    expect(Array.from(rgbPlanes(grey))).toEqual([0, 1, 0, 1, 0, 1]);
    const rgba = pixelImage(new Uint8Array([255, 0, 51, 7]), 1, 1, 4);
    expect(Array.from(rgbPlanes(rgba))).toEqual([1, 0, 0.2].map(Math.fround));
    const batch = imageBatch([rgba, rgba], (v) => 2 * v - 1);
    expect(batch.dims).toEqual([2, 3, 1, 1]);
    expect(Array.from(batch.data)).toEqual([1, -1, -0.6, 1, -1, -0.6].map(Math.fround));
  });

  it('CLIP: shortest edge to the input size, centre crop, normalised', async () => {
    // img_01 is 76x49: the short edge becomes 224, the long one trunc(224 * 76 / 49) = 347.
    const image = await loadImage(join(GOLDENS_DIR, 'ref', 'img_01.png'));
    const settings = { imageSize: 224, mean: [0.5, 0.5, 0.5] as const, std: [0.5, 0.5, 0.5] as const };
    const values = clipPixelValues(image, settings);
    const resized = resizeBicubicLikePillow(toRgb8(image), 76, 49, 347, 224);
    const left = Math.floor((347 - 224) / 2);
    for (const [y, x, c] of [
      [0, 0, 0],
      [100, 17, 1],
      [223, 223, 2],
    ]) {
      const expected = (resized[(y * 347 + x + left) * 3 + c] / 255 - 0.5) / 0.5;
      expect(values[c * 224 * 224 + y * 224 + x]).toBeCloseTo(expected, 6);
    }
  });
});
