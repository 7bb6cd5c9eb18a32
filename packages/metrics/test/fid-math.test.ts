import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { featureStatistics, frechetDistance, matmul, pivotedCholesky, symmetricEigenvalues, traceSqrtProduct } from '../src/index.js';
import { DATA_DIR } from './helpers/paths.js';
import { checksum, Lcg, relativeError, syntheticFeatures, type FeatureSpec } from './helpers/synthetic.js';

interface FrechetCase {
  name: string;
  first: FeatureSpec;
  second: FeatureSpec;
  checksum_first: number;
  checksum_second: number;
  frechet_mp50: number;
  pytorch_fid_scipy: number;
}

const cases = JSON.parse(readFileSync(join(DATA_DIR, 'reference-values.json'), 'utf8')).frechet as FrechetCase[];

/** A symmetric matrix Q diag(values) Qᵀ with Q a product of random Givens rotations. */
function matrixWithEigenvalues(values: number[], seed: number): Float64Array {
  const n = values.length;
  const q = new Float64Array(n * n);
  for (let i = 0; i < n; i++) q[i * n + i] = 1;
  const g = new Lcg(seed);
  for (let r = 0; r < 4 * n * n; r++) {
    const i = (g.next() >>> 8) % n;
    const j = (g.next() >>> 8) % n;
    if (i === j) continue;
    const angle = g.uniform() * Math.PI;
    const c = Math.cos(angle);
    const s = Math.sin(angle);
    for (let k = 0; k < n; k++) {
      const a = q[k * n + i];
      const b = q[k * n + j];
      q[k * n + i] = c * a - s * b;
      q[k * n + j] = s * a + c * b;
    }
  }
  const qd = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) qd[i * n + k] = q[i * n + k] * values[k];
  const qt = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) qt[k * n + i] = q[i * n + k];
  return matmul(qd, qt, n, n, n);
}

describe('symmetric eigenvalues', () => {
  it('recovers known spectra, including zeros, repeats and negatives', () => {
    const spectra = [[5, 4, 3, 2, 1, 0.5, 0.25, 0.125], [2, 2, 2, 0, 0, 0, 1e-9, 7], [-3, 1, 0, 4, -0.5, 9, 9, 2, 0.1, 6, 11, -7], [42], [1, 3]];
    spectra.forEach((values, index) => {
      const matrix = matrixWithEigenvalues(values, index + 1);
      const found = Array.from(symmetricEigenvalues(matrix, values.length));
      const sorted = [...values].sort((x, y) => x - y);
      const scale = Math.max(...values.map(Math.abs));
      found.forEach((value, i) => expect(Math.abs(value - sorted[i])).toBeLessThan(1e-12 * scale));
    });
  });
});

describe('pivoted Cholesky', () => {
  it('factors a rank-deficient PSD matrix exactly, reporting its rank', () => {
    const values = [3, 2, 1, 0, 0, 0];
    const n = values.length;
    const matrix = matrixWithEigenvalues(values, 9);
    const { factor, rank, permutation } = pivotedCholesky(matrix, n);
    expect(rank).toBe(3);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let sum = 0;
        for (let k = 0; k < rank; k++) sum += factor[i * rank + k] * factor[j * rank + k];
        expect(Math.abs(sum - matrix[permutation[i] * n + permutation[j]])).toBeLessThan(1e-13);
      }
    }
  });
});

describe('Tr sqrtm(A B)', () => {
  it('matches the closed form for commuting matrices, singular ones included', () => {
    const a = [4, 9, 0, 1, 0.25, 0];
    const b = [1, 4, 5, 0, 16, 0];
    const n = a.length;
    // Same eigenvectors: Tr sqrtm(A B) = Σ sqrt(a_i b_i).
    const matrixA = matrixWithEigenvalues(a, 3);
    const matrixB = matrixWithEigenvalues(b, 3);
    const expected = a.reduce((sum, value, i) => sum + Math.sqrt(value * b[i]), 0);
    // Here the ranges of A and B share only 3 of their 4 directions, so one eigenvalue of the
    // Gram matrix is exactly 0; it comes out as ±eps·‖A‖‖B‖ and its square root as up to
    // sqrt(eps·‖A‖‖B‖) ≈ 1e-7: the conditioning of sqrt at 0, which no method through the
    // spectrum of the product avoids.
    expect(Math.abs(traceSqrtProduct(matrixA, matrixB, n) - expected)).toBeLessThan(3 * Math.sqrt(n * Number.EPSILON * 9 * 16));
  });
});

describe('Frechet distance against a 50-digit mpmath reference', () => {
  it.each(cases.map((c) => [c.name, c] as const))('%s', (_name, reference) => {
    const first = syntheticFeatures(reference.first);
    const second = syntheticFeatures(reference.second);
    // The generator must reproduce the Python features bit for bit.
    expect(checksum(first)).toBe(reference.checksum_first);
    expect(checksum(second)).toBe(reference.checksum_second);
    const distance = frechetDistance(
      featureStatistics(first, reference.first.n, reference.first.d),
      featureStatistics(second, reference.second.n, reference.second.d),
    );
    if (reference.name === 'identical') {
      expect(distance).toBeLessThan(1e-12);
      return;
    }
    // Factoring both covariances drops their null spaces exactly, so even the singular
    // cases agree with the 50-digit value to round-off.
    expect(relativeError(distance, reference.frechet_mp50)).toBeLessThan(1e-12);
  });

  it("is closer to the exact value than pytorch-fid's scipy.linalg.sqrtm recipe on singular covariances", () => {
    const singular = cases.find((c) => c.name === 'fewer_samples_than_dims')!;
    const distance = frechetDistance(
      featureStatistics(syntheticFeatures(singular.first), singular.first.n, singular.first.d),
      featureStatistics(syntheticFeatures(singular.second), singular.second.n, singular.second.d),
    );
    const ours = Math.abs(distance - singular.frechet_mp50);
    const scipy = Math.abs(singular.pytorch_fid_scipy - singular.frechet_mp50);
    expect(ours).toBeLessThan(scipy);
  });

  it('needs two vectors per set and equal dimensions', () => {
    expect(() => featureStatistics(new Float64Array(4), 1, 4)).toThrow(/at least 2 feature vectors/);
    const a = featureStatistics(new Float64Array([0, 1, 2, 3]), 2, 2);
    const b = featureStatistics(new Float64Array([0, 1, 2, 3, 4, 5]), 2, 3);
    expect(() => frechetDistance(a, b)).toThrow(/dimensions differ/);
  });
});
