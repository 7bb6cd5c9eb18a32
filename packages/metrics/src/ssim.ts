import { MetricsError } from './errors.js';
import { checkComparable, type PixelData, type PixelImage } from './image.js';

/**
 * Structural similarity, equal to scikit-image's
 * `structural_similarity(a, b, channel_axis=2)` with its defaults: a 7x7 uniform window,
 * sample covariance (N / (N - 1) with N = 49), K1 = 0.01, K2 = 0.03, the data range from
 * the sample type, the SSIM map cropped by half a window on every side and averaged over
 * all channels. The Gaussian variant is `gaussian_weights=True` (sigma 1.5, truncated at
 * 3.5 sigma, so an 11x11 window; scikit-image keeps the sample-covariance factor with
 * N = 121 there too unless `use_sample_covariance=False`).
 *
 * Because the map is cropped by exactly the window radius, every value that is kept comes
 * from a window lying inside the image, so the border mode of scikit-image's filters never
 * matters and only the "valid" part is computed here.
 *
 * The window sums are computed separably: sliding sums along each row, kept in a ring of
 * the last `window` rows, then summed down the columns. For integer images every sum is an
 * integer far below 2^53, so the float64 running sums are exact and carry no drift.
 */

export type SsimWindow = 'uniform' | 'gaussian';

export interface SsimOptions {
  /** 'uniform' (default, 7x7 box) or 'gaussian' (sigma 1.5, 11x11). */
  window?: SsimWindow;
  /** Side of the uniform window, odd, default 7. Ignored for the Gaussian window. */
  windowSize?: number;
  /** Standard deviation of the Gaussian window, default 1.5. */
  sigma?: number;
  /** Scale variances by N / (N - 1) as scikit-image does by default (true). */
  useSampleCovariance?: boolean;
  /** Overrides the data range (255 for 8-bit, 65535 for 16-bit, 1 for float by default). */
  dataRange?: number;
  k1?: number;
  k2?: number;
}

/** scipy's `gaussian_filter` radius rule with skimage's `truncate=3.5`. */
const GAUSSIAN_TRUNCATE = 3.5;

interface WindowSpec {
  /** Side length of the window. */
  size: number;
  /** Per-tap weights of the 1-D window, or null for a uniform window (plain sums). */
  weights: Float64Array | null;
}

function windowSpec(options: SsimOptions): WindowSpec {
  if ((options.window ?? 'uniform') === 'gaussian') {
    const sigma = options.sigma ?? 1.5;
    if (!(sigma > 0)) throw new MetricsError(`ssim: sigma must be positive, got ${sigma}`);
    const radius = Math.trunc(GAUSSIAN_TRUNCATE * sigma + 0.5);
    const weights = new Float64Array(2 * radius + 1);
    let total = 0;
    for (let k = -radius; k <= radius; k++) {
      const w = Math.exp((-0.5 / (sigma * sigma)) * k * k);
      weights[k + radius] = w;
      total += w;
    }
    for (let k = 0; k < weights.length; k++) weights[k] /= total;
    return { size: weights.length, weights };
  }
  const size = options.windowSize ?? 7;
  if (!Number.isInteger(size) || size < 3 || size % 2 === 0) {
    throw new MetricsError(`ssim: windowSize must be an odd integer >= 3, got ${size}`);
  }
  return { size, weights: null };
}

/** SSIM of two images: the mean of the cropped SSIM map over all channels. */
export function ssim(a: PixelImage, b: PixelImage, options: SsimOptions = {}): number {
  const naturalRange = checkComparable(a, b);
  const range = options.dataRange ?? naturalRange;
  const spec = windowSpec(options);
  if (a.width < spec.size || a.height < spec.size) {
    throw new MetricsError(`ssim: the image (${a.width}x${a.height}) is smaller than the ${spec.size}x${spec.size} window`);
  }
  const k1 = options.k1 ?? 0.01;
  const k2 = options.k2 ?? 0.03;
  const constants: SsimConstants = {
    c1: (k1 * range) ** 2,
    c2: (k2 * range) ** 2,
    covNorm: (options.useSampleCovariance ?? true) ? (spec.size * spec.size) / (spec.size * spec.size - 1) : 1,
  };
  let total = 0;
  for (let c = 0; c < a.channels; c++) {
    total += ssimChannelSum(a.data, b.data, a.width, a.height, a.channels, c, spec, constants);
  }
  const valid = (a.width - spec.size + 1) * (a.height - spec.size + 1);
  return total / (valid * a.channels);
}

interface SsimConstants {
  c1: number;
  c2: number;
  covNorm: number;
}

/** Number of window statistics kept per pixel: sums of x, y, x*x, y*y, x*y. */
const STATS = 5;

/** Sum of the cropped SSIM map of one channel. */
function ssimChannelSum(
  a: PixelData,
  b: PixelData,
  width: number,
  height: number,
  channels: number,
  channel: number,
  spec: WindowSpec,
  constants: SsimConstants,
): number {
  const size = spec.size;
  const outWidth = width - size + 1;
  const rowStride = STATS * outWidth;
  // Row sums of the last `size` rows, and their running column totals for the uniform window.
  const ring = new Float64Array(size * rowStride);
  const columns = new Float64Array(rowStride);
  const rowA = new Float64Array(width);
  const rowB = new Float64Array(width);
  let total = 0;
  for (let row = 0; row < height; row++) {
    const offset = row * width * channels + channel;
    for (let x = 0; x < width; x++) {
      rowA[x] = a[offset + x * channels];
      rowB[x] = b[offset + x * channels];
    }
    const slot = (row % size) * rowStride;
    if (spec.weights === null) {
      // The slot still holds the row that leaves the window: take it out of the totals.
      if (row >= size) subtractInPlace(columns, ring, slot, rowStride);
      uniformRowSums(rowA, rowB, size, outWidth, ring, slot);
      addInPlace(columns, ring, slot, rowStride);
      if (row >= size - 1) total += ssimRowSum(columns, outWidth, 1 / (size * size), constants);
    } else {
      weightedRowSums(rowA, rowB, spec.weights, outWidth, ring, slot);
      if (row >= size - 1) {
        weightedColumnSums(ring, spec.weights, row, rowStride, columns);
        total += ssimRowSum(columns, outWidth, 1, constants);
      }
    }
  }
  return total;
}

function subtractInPlace(target: Float64Array, source: Float64Array, offset: number, length: number): void {
  for (let i = 0; i < length; i++) target[i] -= source[offset + i];
}

function addInPlace(target: Float64Array, source: Float64Array, offset: number, length: number): void {
  for (let i = 0; i < length; i++) target[i] += source[offset + i];
}

/** Sliding window sums along one row, written as five runs of `outWidth` values at `slot`. */
function uniformRowSums(x: Float64Array, y: Float64Array, size: number, outWidth: number, ring: Float64Array, slot: number): void {
  let sx = 0;
  let sy = 0;
  let sxx = 0;
  let syy = 0;
  let sxy = 0;
  for (let k = 0; k < size; k++) {
    const xv = x[k];
    const yv = y[k];
    sx += xv;
    sy += yv;
    sxx += xv * xv;
    syy += yv * yv;
    sxy += xv * yv;
  }
  const px = slot;
  const py = slot + outWidth;
  const pxx = slot + 2 * outWidth;
  const pyy = slot + 3 * outWidth;
  const pxy = slot + 4 * outWidth;
  ring[px] = sx;
  ring[py] = sy;
  ring[pxx] = sxx;
  ring[pyy] = syy;
  ring[pxy] = sxy;
  for (let j = 1; j < outWidth; j++) {
    const xin = x[j + size - 1];
    const yin = y[j + size - 1];
    const xout = x[j - 1];
    const yout = y[j - 1];
    sx += xin - xout;
    sy += yin - yout;
    sxx += xin * xin - xout * xout;
    syy += yin * yin - yout * yout;
    sxy += xin * yin - xout * yout;
    ring[px + j] = sx;
    ring[py + j] = sy;
    ring[pxx + j] = sxx;
    ring[pyy + j] = syy;
    ring[pxy + j] = sxy;
  }
}

/** Gaussian-weighted sums along one row (direct convolution: the taps differ). */
function weightedRowSums(x: Float64Array, y: Float64Array, weights: Float64Array, outWidth: number, ring: Float64Array, slot: number): void {
  const size = weights.length;
  for (let j = 0; j < outWidth; j++) {
    let sx = 0;
    let sy = 0;
    let sxx = 0;
    let syy = 0;
    let sxy = 0;
    for (let k = 0; k < size; k++) {
      const w = weights[k];
      const xv = x[j + k];
      const yv = y[j + k];
      const wx = w * xv;
      const wy = w * yv;
      sx += wx;
      sy += wy;
      sxx += wx * xv;
      syy += wy * yv;
      sxy += wx * yv;
    }
    ring[slot + j] = sx;
    ring[slot + outWidth + j] = sy;
    ring[slot + 2 * outWidth + j] = sxx;
    ring[slot + 3 * outWidth + j] = syy;
    ring[slot + 4 * outWidth + j] = sxy;
  }
}

/** Gaussian-weighted sums down the columns of the ring, oldest row first. */
function weightedColumnSums(ring: Float64Array, weights: Float64Array, newestRow: number, rowStride: number, out: Float64Array): void {
  const size = weights.length;
  out.fill(0);
  for (let k = 0; k < size; k++) {
    const slot = ((newestRow - size + 1 + k) % size) * rowStride;
    const w = weights[k];
    for (let i = 0; i < rowStride; i++) out[i] += w * ring[slot + i];
  }
}

/**
 * Sum of the SSIM values of one output row from its window statistics, with scikit-image's
 * formula: means u, variances v = covNorm * (E[x^2] - u^2), then
 * (2 ux uy + C1)(2 vxy + C2) / ((ux^2 + uy^2 + C1)(vx + vy + C2)).
 */
function ssimRowSum(stats: Float64Array, outWidth: number, scale: number, k: SsimConstants): number {
  const { c1, c2, covNorm } = k;
  let total = 0;
  for (let j = 0; j < outWidth; j++) {
    const ux = stats[j] * scale;
    const uy = stats[outWidth + j] * scale;
    const uxx = stats[2 * outWidth + j] * scale;
    const uyy = stats[3 * outWidth + j] * scale;
    const uxy = stats[4 * outWidth + j] * scale;
    const vx = covNorm * (uxx - ux * ux);
    const vy = covNorm * (uyy - uy * uy);
    const vxy = covNorm * (uxy - ux * uy);
    const numerator = (2 * ux * uy + c1) * (2 * vxy + c2);
    const denominator = (ux * ux + uy * uy + c1) * (vx + vy + c2);
    total += numerator / denominator;
  }
  return total;
}
