import { checkComparable, type PixelData, type PixelImage } from './image.js';

/**
 * Sample-wise error metrics. Every difference is taken on the values widened to float64,
 * never on the stored integers: cache-dit subtracts uint8 arrays, which wraps around (3 - 5
 * becomes 254) and makes PSNR look better than it is.
 */

/** Summing in blocks keeps the float64 rounding error of long sums at block level. */
const BLOCK = 4096;

function sumOfDifferences(a: PixelData, b: PixelData, squared: boolean): number {
  const n = a.length;
  let total = 0;
  for (let start = 0; start < n; start += BLOCK) {
    const end = Math.min(n, start + BLOCK);
    let block = 0;
    if (squared) {
      for (let i = start; i < end; i++) {
        const d = a[i] - b[i];
        block += d * d;
      }
    } else {
      for (let i = start; i < end; i++) {
        block += Math.abs(a[i] - b[i]);
      }
    }
    total += block;
  }
  return total;
}

/** Mean squared error over all samples (scikit-image's `mean_squared_error`). */
export function mse(a: PixelImage, b: PixelImage): number {
  checkComparable(a, b);
  return sumOfDifferences(a.data, b.data, true) / a.data.length;
}

/** Mean absolute error over all samples. */
export function mae(a: PixelImage, b: PixelImage): number {
  checkComparable(a, b);
  return sumOfDifferences(a.data, b.data, false) / a.data.length;
}

export interface PsnrOptions {
  /** Overrides the data range (255 for 8-bit, 65535 for 16-bit, 1 for float by default). */
  dataRange?: number;
}

/**
 * Peak signal-to-noise ratio in dB, `10 log10(R^2 / MSE)` with R the data range, as
 * scikit-image's `peak_signal_noise_ratio`. Identical images give `Infinity`.
 */
export function psnr(a: PixelImage, b: PixelImage, options: PsnrOptions = {}): number {
  const naturalRange = checkComparable(a, b);
  return psnrFromMse(mse(a, b), options.dataRange ?? naturalRange);
}

export function psnrFromMse(meanSquaredError: number, dataRange: number): number {
  if (meanSquaredError === 0) return Infinity;
  return 10 * Math.log10((dataRange * dataRange) / meanSquaredError);
}
