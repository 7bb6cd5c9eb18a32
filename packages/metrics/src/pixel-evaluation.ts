import { loadImage } from './decode.js';
import { checkComparable, type PixelImage } from './image.js';
import { mse as meanSquaredError, mae as meanAbsoluteError, psnrFromMse } from './pixel-metrics.js';
import { ssim, type SsimOptions } from './ssim.js';

/** The metrics computed from the pixels of a pair alone (no network). */
export const PIXEL_METRICS = ['psnr', 'ssim', 'mse', 'mae'] as const;
export type PixelMetricName = (typeof PIXEL_METRICS)[number];

export interface PixelMetricOptions {
  /** Overrides the data range of PSNR and SSIM (otherwise taken from the sample type). */
  dataRange?: number;
  ssim?: SsimOptions;
}

export type PixelMetricValues = Partial<Record<PixelMetricName, number>>;

/** Computes the requested pixel metrics of one pair; `labels` name the images in errors. */
export function computePixelMetrics(
  a: PixelImage,
  b: PixelImage,
  metrics: readonly PixelMetricName[],
  options: PixelMetricOptions = {},
  labels: [string, string] = ['image 1', 'image 2'],
): PixelMetricValues {
  // Checked here with the file names, before any metric checks again without them.
  const naturalRange = checkComparable(a, b, labels[0], labels[1]);
  const range = options.dataRange ?? naturalRange;
  const values: PixelMetricValues = {};
  if (metrics.includes('mse') || metrics.includes('psnr')) {
    const error = meanSquaredError(a, b);
    if (metrics.includes('mse')) values.mse = error;
    if (metrics.includes('psnr')) values.psnr = psnrFromMse(error, range);
  }
  if (metrics.includes('mae')) values.mae = meanAbsoluteError(a, b);
  if (metrics.includes('ssim')) values.ssim = ssim(a, b, { ...options.ssim, dataRange: options.ssim?.dataRange ?? range });
  return values;
}

/** A pair of files to decode and compare: the unit of work of the worker pool. */
export interface PixelTask {
  path1: string;
  path2: string;
  metrics: readonly PixelMetricName[];
  options: PixelMetricOptions;
}

export async function runPixelTask(task: PixelTask): Promise<PixelMetricValues> {
  const [a, b] = await Promise.all([loadImage(task.path1), loadImage(task.path2)]);
  return computePixelMetrics(a, b, task.metrics, task.options, [task.path1, task.path2]);
}
