import { loadImage } from './decode.js';
import { MetricsError } from './errors.js';
import { featureStatistics, frechetDistance, type FeatureStatistics } from './fid.js';
import type { PixelImage } from './image.js';
import { OnnxNetwork, type NetworkOptions } from './onnx-network.js';
import { imageBatch } from './preprocess.js';

/**
 * FID = Frechet distance between InceptionV3 pool3 features (2048-d) of two image sets.
 *
 * The network is an ONNX export with input `images` (N, 3, H, W), RGB in [0, 1], any size,
 * and output `features` (N, D). tools/export_inception_fid.py exports pytorch-fid's
 * FID-Inception (the TensorFlow FID weights, pt_inception-2015-12-05) including its own input
 * handling: bilinear resize to 299x299 and scaling to [-1, 1]. That makes the numbers
 * pytorch-fid's for the same images (up to float32 round-off of the runtime).
 */
export class InceptionFeatureExtractor {
  private constructor(private readonly network: OnnxNetwork) {}

  static async load(path: string, options: NetworkOptions = {}): Promise<InceptionFeatureExtractor> {
    const network = await OnnxNetwork.load(path, 'FID InceptionV3', options);
    network.expectNames(['images'], ['features']);
    return new InceptionFeatureExtractor(network);
  }

  get runtime(): 'node' | 'web' {
    return this.network.runtime;
  }

  /** Features of equally sized images, one row per image. */
  async features(images: readonly PixelImage[]): Promise<{ data: Float32Array; count: number; dimension: number }> {
    const { features } = await this.network.run({ images: imageBatch(images) });
    if (features.dims.length !== 2 || features.dims[0] !== images.length) {
      throw new MetricsError(`${this.network.path}: "features" has shape [${features.dims.join(', ')}], expected [${images.length}, D]`);
    }
    return { data: features.data, count: images.length, dimension: features.dims[1] };
  }

  async dispose(): Promise<void> {
    await this.network.dispose();
  }
}

export interface FidOptions {
  /** Images per network call; consecutive images of equal size are batched (default 8). */
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
}

/** Mean and covariance of the Inception features of image files. */
export async function fileFeatureStatistics(
  paths: readonly string[],
  extractor: InceptionFeatureExtractor,
  options: FidOptions = {},
): Promise<FeatureStatistics> {
  if (paths.length < 2) {
    throw new MetricsError(`FID needs at least 2 images per set, got ${paths.length}${paths[0] ? ` (${paths[0]})` : ''}`);
  }
  const batchSize = Math.max(1, options.batchSize ?? 8);
  const rows: Float32Array[] = [];
  let dimension = 0;
  let done = 0;
  let batch: PixelImage[] = [];
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const result = await extractor.features(batch);
    dimension = result.dimension;
    for (let i = 0; i < result.count; i++) rows.push(result.data.slice(i * dimension, (i + 1) * dimension));
    done += batch.length;
    options.onProgress?.(done, paths.length);
    batch = [];
  };
  for (const path of paths) {
    const image = await loadImage(path);
    if (batch.length > 0 && (batch.length >= batchSize || batch[0].width !== image.width || batch[0].height !== image.height)) {
      await flush();
    }
    batch.push(image);
  }
  await flush();
  const all = new Float32Array(rows.length * dimension);
  rows.forEach((row, i) => all.set(row, i * dimension));
  return featureStatistics(all, rows.length, dimension);
}

/** FID between two sets of image files. */
export async function fidOfFiles(
  first: readonly string[],
  second: readonly string[],
  extractor: InceptionFeatureExtractor,
  options: FidOptions = {},
): Promise<number> {
  const total = first.length + second.length;
  const firstStats = await fileFeatureStatistics(first, extractor, {
    ...options,
    onProgress: (done) => options.onProgress?.(done, total),
  });
  const secondStats = await fileFeatureStatistics(second, extractor, {
    ...options,
    onProgress: (done) => options.onProgress?.(first.length + done, total),
  });
  return frechetDistance(firstStats, secondStats);
}
