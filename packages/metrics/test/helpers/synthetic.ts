/**
 * Deterministic test data shared with tools/make_reference_values.py: the same 32-bit LCG
 * and the same feature recipe, so the committed reference numbers apply to these arrays.
 */
export class Lcg {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (Math.imul(this.state, 1664525) + 1013904223) >>> 0;
    return this.state;
  }
  /** An integer in [-8, 8]. */
  smallInt(): number {
    return ((this.next() >>> 24) % 17) - 8;
  }
  /** A float in [-0.5, 0.5). */
  uniform(): number {
    return this.next() / 2 ** 32 - 0.5;
  }
}

export interface FeatureSpec {
  n: number;
  d: number;
  k: number;
  seed: number;
  shift: number;
}

/**
 * n feature vectors of length d with rank-k structure, Z (n x k) @ M (k x d) + shift * j / 16,
 * row-major. All entries of Z and M are multiples of 1/16, so every feature is exact.
 */
export function syntheticFeatures({ n, d, k, seed, shift }: FeatureSpec): Float64Array {
  const zg = new Lcg(seed);
  const z = Float64Array.from({ length: n * k }, () => zg.smallInt() / 16);
  const mg = new Lcg(seed + 7919);
  const m = Float64Array.from({ length: k * d }, () => mg.smallInt() / 16);
  const features = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      let sum = 0;
      for (let t = 0; t < k; t++) sum += z[i * k + t] * m[t * d + j];
      features[i * d + j] = sum + (shift * j) / 16;
    }
  }
  return features;
}

export function checksum(values: ArrayLike<number>): number {
  let sum = 0;
  let squares = 0;
  for (let i = 0; i < values.length; i++) {
    sum += values[i];
    squares += values[i] * values[i];
  }
  return sum + squares;
}

export function relativeError(actual: number, expected: number): number {
  return Math.abs(actual - expected) / Math.max(Math.abs(expected), Number.MIN_VALUE);
}
