import { MetricsError } from './errors.js';
import { traceSqrtProduct } from './linalg.js';

/**
 * Frechet distance between two Gaussians fitted to feature sets, the math of FID:
 *
 *   d² = ‖μ1 − μ2‖² + Tr(Σ1) + Tr(Σ2) − 2 Tr(sqrtm(Σ1 Σ2))
 *
 * with μ the feature means and Σ the unbiased sample covariances (`np.cov(f, rowvar=False)`),
 * as pytorch-fid, clean-fid and torchmetrics define it. FID itself is this distance between
 * InceptionV3 pool features (2048-d) of two image sets; see `fid-network.ts` for those.
 */

export interface FeatureStatistics {
  readonly dimension: number;
  /** Number of feature vectors the statistics were estimated from. */
  readonly count: number;
  readonly mean: Float64Array;
  /** dimension x dimension, row-major, divided by count − 1. */
  readonly covariance: Float64Array;
}

/**
 * Mean and unbiased covariance of `count` feature vectors of length `dimension`, stored
 * row after row in `features`. Accumulates in float64 whatever the input precision.
 */
export function featureStatistics(features: ArrayLike<number>, count: number, dimension: number): FeatureStatistics {
  if (!Number.isInteger(count) || !Number.isInteger(dimension) || dimension <= 0) {
    throw new MetricsError(`featureStatistics: bad shape ${count} x ${dimension}`);
  }
  if (count < 2) {
    throw new MetricsError(`featureStatistics: a covariance needs at least 2 feature vectors, got ${count}`);
  }
  if (features.length !== count * dimension) {
    throw new MetricsError(`featureStatistics: ${features.length} values do not make ${count} vectors of ${dimension}`);
  }
  const mean = new Float64Array(dimension);
  for (let r = 0; r < count; r++) {
    for (let i = 0; i < dimension; i++) mean[i] += features[r * dimension + i];
  }
  for (let i = 0; i < dimension; i++) mean[i] /= count;
  const covariance = new Float64Array(dimension * dimension);
  const centred = new Float64Array(dimension);
  for (let r = 0; r < count; r++) {
    for (let i = 0; i < dimension; i++) centred[i] = features[r * dimension + i] - mean[i];
    // Upper triangle only; mirrored below.
    for (let i = 0; i < dimension; i++) {
      const ci = centred[i];
      if (ci === 0) continue;
      const row = i * dimension;
      for (let j = i; j < dimension; j++) covariance[row + j] += ci * centred[j];
    }
  }
  for (let i = 0; i < dimension; i++) {
    for (let j = i; j < dimension; j++) {
      const value = covariance[i * dimension + j] / (count - 1);
      covariance[i * dimension + j] = value;
      covariance[j * dimension + i] = value;
    }
  }
  return { dimension, count, mean, covariance };
}

/**
 * The Frechet distance between two feature distributions (see the module comment). The
 * square-root term is computed without forming sqrtm(Σ1 Σ2), through a pivoted Cholesky
 * factor of Σ1 and a symmetric eigenproblem (`traceSqrtProduct`), so singular and
 * rank-deficient covariances (fewer images than dimensions) are handled exactly instead of
 * through the eps·I offset pytorch-fid falls back to. Round-off below zero is clamped to 0.
 */
export function frechetDistance(first: FeatureStatistics, second: FeatureStatistics): number {
  if (first.dimension !== second.dimension) {
    throw new MetricsError(`frechetDistance: feature dimensions differ (${first.dimension} vs ${second.dimension})`);
  }
  const n = first.dimension;
  let meanTerm = 0;
  for (let i = 0; i < n; i++) {
    const d = first.mean[i] - second.mean[i];
    meanTerm += d * d;
  }
  let traceTerm = 0;
  for (let i = 0; i < n; i++) traceTerm += first.covariance[i * n + i] + second.covariance[i * n + i];
  const distance = meanTerm + traceTerm - 2 * traceSqrtProduct(first.covariance, second.covariance, n);
  return Math.max(0, distance);
}
