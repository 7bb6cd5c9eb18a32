import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadImage, mae, mse, psnr, ssim } from '../src/index.js';
import { DATA_DIR, GOLDENS_DIR } from './helpers/paths.js';
import { relativeError } from './helpers/synthetic.js';

interface GoldenPair {
  file: string;
  height: number;
  width: number;
  psnr: number;
  mse: number;
  ssim: number;
}

const expected = JSON.parse(readFileSync(join(GOLDENS_DIR, 'expected.json'), 'utf8')) as { pairs: GoldenPair[] };
const variants = JSON.parse(readFileSync(join(DATA_DIR, 'reference-values.json'), 'utf8')).goldens as Record<
  string,
  { ssim_gaussian: number; ssim_gaussian_population: number; ssim_win11: number; mae: number }
>;

/** The tolerance for agreeing with scikit-image. */
const TOLERANCE = 1e-6;

describe('shared goldens (scikit-image 0.26 values)', () => {
  it.each(expected.pairs.map((pair) => [pair.file, pair] as const))('%s: PSNR, MSE and SSIM', async (_name, pair) => {
    const a = await loadImage(join(GOLDENS_DIR, 'ref', pair.file));
    const b = await loadImage(join(GOLDENS_DIR, 'test', pair.file));
    expect([a.width, a.height, a.channels]).toEqual([pair.width, pair.height, 3]);
    expect(relativeError(psnr(a, b), pair.psnr)).toBeLessThan(TOLERANCE);
    expect(relativeError(mse(a, b), pair.mse)).toBeLessThan(TOLERANCE);
    expect(relativeError(ssim(a, b), pair.ssim)).toBeLessThan(TOLERANCE);
  });

  it.each(expected.pairs.map((pair) => pair.file))('%s: Gaussian-window SSIM, population covariance, 11x11 window and MAE', async (file) => {
    const a = await loadImage(join(GOLDENS_DIR, 'ref', file));
    const b = await loadImage(join(GOLDENS_DIR, 'test', file));
    const reference = variants[file];
    expect(relativeError(ssim(a, b, { window: 'gaussian' }), reference.ssim_gaussian)).toBeLessThan(TOLERANCE);
    expect(relativeError(ssim(a, b, { window: 'gaussian', useSampleCovariance: false }), reference.ssim_gaussian_population)).toBeLessThan(TOLERANCE);
    expect(relativeError(ssim(a, b, { windowSize: 11 }), reference.ssim_win11)).toBeLessThan(TOLERANCE);
    expect(relativeError(mae(a, b), reference.mae)).toBeLessThan(1e-12);
  });
});
