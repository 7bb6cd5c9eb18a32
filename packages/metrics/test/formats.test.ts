import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { encodeNpy, loadImage, mae, MetricsError, mse, parseNpy, psnr, ssim } from '../src/index.js';
import { DATA_DIR, FIXTURES_DIR } from './helpers/paths.js';
import { readChunks, writeRgbPng } from './helpers/png.js';
import { relativeError } from './helpers/synthetic.js';
import { scratchDir } from '../../../scripts/testing/scratch-dir.js';

interface FixtureReference {
  file1: string;
  file2: string;
  psnr: number;
  mse: number;
  mae: number;
  ssim: number;
  ssim_gaussian: number;
}

const fixtures = JSON.parse(readFileSync(join(DATA_DIR, 'reference-values.json'), 'utf8')).fixtures as Record<string, FixtureReference>;

describe('decoded formats against scikit-image on the stored arrays', () => {
  const layouts: Record<string, [channels: number, type: string]> = {
    rgb16: [3, 'Uint16Array'],
    grey16: [1, 'Uint16Array'],
    grey8: [1, 'Uint8Array'],
    rgba8: [4, 'Uint8Array'],
    greyalpha8: [2, 'Uint8Array'],
    greyalpha16: [2, 'Uint16Array'],
    float32: [3, 'Float32Array'],
    float64grey: [1, 'Float64Array'],
  };

  it.each(Object.keys(layouts))('%s', async (name) => {
    const reference = fixtures[name];
    const a = await loadImage(join(FIXTURES_DIR, reference.file1));
    const b = await loadImage(join(FIXTURES_DIR, reference.file2));
    expect([a.channels, a.data.constructor.name]).toEqual(layouts[name]);
    expect(relativeError(psnr(a, b), reference.psnr)).toBeLessThan(1e-9);
    expect(relativeError(mse(a, b), reference.mse)).toBeLessThan(1e-9);
    expect(relativeError(mae(a, b), reference.mae)).toBeLessThan(1e-9);
    // scikit-image computes SSIM of float32 images in float32; we stay in float64, hence 1e-6.
    expect(relativeError(ssim(a, b), reference.ssim)).toBeLessThan(1e-6);
    expect(relativeError(ssim(a, b, { window: 'gaussian' }), reference.ssim_gaussian)).toBeLessThan(1e-6);
  });

  it('keeps the samples of a PNG as stored even when it carries an ICC profile', async () => {
    const width = 6;
    const height = 5;
    const pixels = Uint8Array.from({ length: width * height * 3 }, (_, i) => (i * 37 + 11) % 256);
    // Lift a Display P3 profile from a file sharp tags, then write our own PNG with known
    // samples and that profile: sharp's default decode would convert them to sRGB.
    const tagged = await sharp(pixels, { raw: { width, height, channels: 3 } })
      .withIccProfile('p3')
      .png()
      .toBuffer();
    const profile = readChunks(tagged).find((chunk) => chunk.type === 'iCCP');
    expect(profile).toBeDefined();
    const dir = scratchDir('metrics-icc-');
    writeFileSync(join(dir, 'p3.png'), writeRgbPng(pixels, width, height, [profile!]));
    expect((await sharp(join(dir, 'p3.png')).metadata()).hasProfile).toBe(true);
    const decoded = await loadImage(join(dir, 'p3.png'));
    expect(Array.from(decoded.data)).toEqual(Array.from(pixels));
    const colourManaged = await sharp(join(dir, 'p3.png')).raw().toBuffer();
    expect(Array.from(colourManaged)).not.toEqual(Array.from(pixels));
  });

  it('round-trips .npy files', () => {
    const image = { width: 3, height: 2, channels: 2, data: Float64Array.from({ length: 12 }, (_, i) => i / 11) };
    const parsed = parseNpy(encodeNpy(image));
    expect(parsed.shape).toEqual([2, 3, 2]);
    expect(Array.from(parsed.data)).toEqual(Array.from(image.data));
  });

  it('rejects unsupported, unreadable and malformed files with their names', async () => {
    const dir = scratchDir('metrics-bad-');
    writeFileSync(join(dir, 'notes.txt'), 'hello');
    writeFileSync(join(dir, 'broken.png'), 'not a png at all');
    writeFileSync(join(dir, 'bad.npy'), Buffer.from('\x93NUMPY\x01\x00'));
    await expect(loadImage(join(dir, 'notes.txt'))).rejects.toThrow(/unsupported image format "\.txt".*notes\.txt/);
    await expect(loadImage(join(dir, 'broken.png'))).rejects.toThrow(/unreadable or unsupported image .*broken\.png/);
    await expect(loadImage(join(dir, 'missing.png'))).rejects.toThrow(/cannot read .*missing\.png/);
    await expect(loadImage(join(dir, 'bad.npy'))).rejects.toBeInstanceOf(MetricsError);
  });
});
