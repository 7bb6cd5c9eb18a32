/**
 * The dense float64 linear algebra FID needs, on row-major `Float64Array`s: symmetric
 * eigenvalues (Householder tridiagonalisation, then implicit QL), a rank-revealing pivoted
 * Cholesky factorisation for positive semi-definite matrices, and matrix products.
 */

/** C (m x p) = A (m x k) times B (k x p), all row-major. The i-k-j order streams rows of B. */
export function matmul(a: Float64Array, b: Float64Array, m: number, k: number, p: number): Float64Array {
  const c = new Float64Array(m * p);
  for (let i = 0; i < m; i++) {
    const rowC = i * p;
    for (let t = 0; t < k; t++) {
      const aValue = a[i * k + t];
      if (aValue === 0) continue;
      const rowB = t * p;
      for (let j = 0; j < p; j++) c[rowC + j] += aValue * b[rowB + j];
    }
  }
  return c;
}

/** Aᵀ (k x m) times B (k x p) = (m x p), with A given as k x m. */
export function matmulTransposedLeft(a: Float64Array, b: Float64Array, k: number, m: number, p: number): Float64Array {
  const c = new Float64Array(m * p);
  for (let t = 0; t < k; t++) {
    const rowA = t * m;
    const rowB = t * p;
    for (let i = 0; i < m; i++) {
      const aValue = a[rowA + i];
      if (aValue === 0) continue;
      const rowC = i * p;
      for (let j = 0; j < p; j++) c[rowC + j] += aValue * b[rowB + j];
    }
  }
  return c;
}

/**
 * Eigenvalues of a symmetric n x n matrix, ascending. The input is not modified.
 *
 * Householder reflections bring the matrix to tridiagonal form (each step applies
 * H A H = A - 2(v qᵀ + q vᵀ) to the trailing block, with p = A v, q = p - (vᵀp) v), then
 * the implicit QL method with Wilkinson-style shifts finds the eigenvalues of the
 * tridiagonal matrix. Both steps are backward stable: the eigenvalues carry absolute errors
 * of order n·eps·‖A‖.
 */
export function symmetricEigenvalues(input: Float64Array, n: number): Float64Array {
  const a = Float64Array.from(input);
  const diagonal = new Float64Array(n);
  const offDiagonal = new Float64Array(n); // offDiagonal[k] couples k and k + 1
  const v = new Float64Array(n);
  const p = new Float64Array(n);
  for (let k = 0; k < n - 2; k++) {
    // Reflect x = A[k+1.., k] onto alpha e1.
    let norm = 0;
    for (let i = k + 1; i < n; i++) norm += a[i * n + k] * a[i * n + k];
    norm = Math.sqrt(norm);
    const x0 = a[(k + 1) * n + k];
    const alpha = x0 > 0 ? -norm : norm;
    diagonal[k] = a[k * n + k];
    offDiagonal[k] = alpha;
    let vNorm = 0;
    for (let i = k + 1; i < n; i++) {
      v[i] = a[i * n + k];
      if (i === k + 1) v[i] -= alpha;
      vNorm += v[i] * v[i];
    }
    if (vNorm === 0) continue; // already tridiagonal in this column
    vNorm = Math.sqrt(vNorm);
    for (let i = k + 1; i < n; i++) v[i] /= vNorm;
    // p = A22 v, K = vᵀ p, q = p - K v (stored in p), then A22 -= 2 (v qᵀ + q vᵀ).
    let vp = 0;
    for (let i = k + 1; i < n; i++) {
      let sum = 0;
      const row = i * n;
      for (let j = k + 1; j < n; j++) sum += a[row + j] * v[j];
      p[i] = sum;
      vp += v[i] * sum;
    }
    for (let i = k + 1; i < n; i++) p[i] -= vp * v[i];
    for (let i = k + 1; i < n; i++) {
      const row = i * n;
      const vi = 2 * v[i];
      const qi = 2 * p[i];
      for (let j = k + 1; j < n; j++) a[row + j] -= vi * p[j] + qi * v[j];
    }
  }
  if (n >= 2) {
    diagonal[n - 2] = a[(n - 2) * n + (n - 2)];
    offDiagonal[n - 2] = a[(n - 1) * n + (n - 2)];
  }
  if (n >= 1) diagonal[n - 1] = a[(n - 1) * n + (n - 1)];
  offDiagonal[n - 1] = 0;
  tridiagonalEigenvalues(diagonal, offDiagonal, n);
  return diagonal.sort();
}

/** Implicit QL on a symmetric tridiagonal matrix; leaves the eigenvalues in `d`. */
function tridiagonalEigenvalues(d: Float64Array, e: Float64Array, n: number): void {
  for (let l = 0; l < n; l++) {
    let iterations = 0;
    let m: number;
    do {
      for (m = l; m < n - 1; m++) {
        const scale = Math.abs(d[m]) + Math.abs(d[m + 1]);
        if (Math.abs(e[m]) <= Number.EPSILON * scale) break;
      }
      if (m !== l) {
        if (iterations++ === 60) throw new Error('symmetricEigenvalues: QL iteration did not converge');
        let g = (d[l + 1] - d[l]) / (2 * e[l]);
        let r = Math.hypot(g, 1);
        g = d[m] - d[l] + e[l] / (g + (g >= 0 ? Math.abs(r) : -Math.abs(r)));
        let s = 1;
        let c = 1;
        let p = 0;
        let i: number;
        let underflow = false;
        for (i = m - 1; i >= l; i--) {
          const f = s * e[i];
          const b = c * e[i];
          r = Math.hypot(f, g);
          e[i + 1] = r;
          if (r === 0) {
            d[i + 1] -= p;
            e[m] = 0;
            underflow = true;
            break;
          }
          s = f / r;
          c = g / r;
          g = d[i + 1] - p;
          r = (d[i] - g) * s + 2 * c * b;
          p = s * r;
          d[i + 1] = g + p;
          g = c * r - b;
        }
        if (underflow) continue;
        d[l] -= p;
        e[l] = g;
        e[m] = 0;
      }
    } while (m !== l);
  }
}

export interface PivotedCholesky {
  /** n x rank, row-major: A[perm][:, perm] = L Lᵀ up to the dropped pivots. */
  factor: Float64Array;
  rank: number;
  /** Row i of the factor belongs to row perm[i] of A. */
  permutation: Int32Array;
}

/**
 * Cholesky factorisation with complete (diagonal) pivoting of a symmetric positive
 * semi-definite matrix, stopped when the largest remaining pivot is at most `tolerance`
 * (default n·eps·max diagonal, Higham's criterion): a singular or rank-deficient covariance
 * gives a thin factor instead of a failure or a square root of a negative number.
 */
export function pivotedCholesky(input: Float64Array, n: number, tolerance?: number): PivotedCholesky {
  const a = Float64Array.from(input);
  const permutation = Int32Array.from({ length: n }, (_, i) => i);
  const columns: Float64Array[] = [];
  let maxDiagonal = 0;
  for (let i = 0; i < n; i++) maxDiagonal = Math.max(maxDiagonal, a[i * n + i]);
  const limit = tolerance ?? n * Number.EPSILON * maxDiagonal;
  // Work on the lower triangle of the Schur complement; columns[k][i] = L[i][k] (permuted rows).
  for (let k = 0; k < n; k++) {
    let pivot = k;
    for (let i = k + 1; i < n; i++) if (a[i * n + i] > a[pivot * n + pivot]) pivot = i;
    if (!(a[pivot * n + pivot] > limit)) break;
    if (pivot !== k) {
      swapSymmetric(a, n, k, pivot);
      const t = permutation[k];
      permutation[k] = permutation[pivot];
      permutation[pivot] = t;
      for (const column of columns) {
        const c = column[k];
        column[k] = column[pivot];
        column[pivot] = c;
      }
    }
    const root = Math.sqrt(a[k * n + k]);
    const column = new Float64Array(n);
    column[k] = root;
    for (let i = k + 1; i < n; i++) column[i] = a[i * n + k] / root;
    for (let i = k + 1; i < n; i++) {
      const li = column[i];
      if (li === 0) continue;
      const row = i * n;
      for (let j = k + 1; j <= i; j++) a[row + j] -= li * column[j];
    }
    columns.push(column);
  }
  const rank = columns.length;
  const factor = new Float64Array(n * rank);
  for (let k = 0; k < rank; k++) {
    const column = columns[k];
    for (let i = 0; i < n; i++) factor[i * rank + k] = column[i];
  }
  return { factor, rank, permutation };
}

/** Swaps rows and columns i < j of the lower triangle of a symmetric matrix. */
function swapSymmetric(a: Float64Array, n: number, i: number, j: number): void {
  const [lo, hi] = i < j ? [i, j] : [j, i];
  const swap = (x: number, y: number): void => {
    const t = a[x];
    a[x] = a[y];
    a[y] = t;
  };
  swap(lo * n + lo, hi * n + hi);
  for (let k = 0; k < lo; k++) swap(lo * n + k, hi * n + k);
  for (let k = lo + 1; k < hi; k++) swap(k * n + lo, hi * n + k);
  for (let k = hi + 1; k < n; k++) swap(k * n + lo, k * n + hi);
}

/**
 * Tr(sqrtm(A B)) for symmetric positive semi-definite A and B, the term of the Frechet
 * distance that needs a matrix square root.
 *
 * A B is not symmetric, and `scipy.linalg.sqrtm(A @ B)` can return complex values or fail
 * when A or B is singular (always, with fewer samples than feature dimensions). Instead both
 * are factored, A = La Laᵀ and B = Lb Lbᵀ, by rank-revealing pivoted Cholesky. The non-zero
 * eigenvalues of A B are those of K Kᵀ (or Kᵀ K) with K = Laᵀ Lb, the squared singular
 * values of K, so the trace is the sum of the square roots of the eigenvalues of the smaller
 * of the two Gram matrices, a symmetric PSD eigenproblem (round-off negatives clamped to 0).
 * Working in the ranges of A and B drops their null spaces exactly, so the square roots of
 * eigenvalues that are exactly zero, where sqrt is ill-conditioned, mostly never appear.
 */
export function traceSqrtProduct(a: Float64Array, b: Float64Array, n: number): number {
  const factorA = unpermutedFactor(pivotedCholesky(a, n), n);
  const factorB = unpermutedFactor(pivotedCholesky(b, n), n);
  if (factorA.rank === 0 || factorB.rank === 0) return 0;
  const k = matmulTransposedLeft(factorA.rows, factorB.rows, n, factorA.rank, factorB.rank);
  const [rows, columns] = [factorA.rank, factorB.rank];
  // The Gram matrix of the shorter side of K: K Kᵀ (rows x rows) or Kᵀ K (columns x columns).
  let gram: Float64Array;
  let size: number;
  if (rows <= columns) {
    const transposed = transpose(k, rows, columns);
    gram = matmulTransposedLeft(transposed, transposed, columns, rows, rows);
    size = rows;
  } else {
    gram = matmulTransposedLeft(k, k, rows, columns, columns);
    size = columns;
  }
  let trace = 0;
  for (const eigenvalue of symmetricEigenvalues(gram, size)) if (eigenvalue > 0) trace += Math.sqrt(eigenvalue);
  return trace;
}

/** The factor L of A = L Lᵀ with its rows back in A's order (n x rank, row-major). */
function unpermutedFactor({ factor, rank, permutation }: PivotedCholesky, n: number): { rows: Float64Array; rank: number } {
  const rows = new Float64Array(n * rank);
  for (let i = 0; i < n; i++) rows.set(factor.subarray(i * rank, (i + 1) * rank), permutation[i] * rank);
  return { rows, rank };
}

function transpose(m: Float64Array, rows: number, columns: number): Float64Array {
  const out = new Float64Array(rows * columns);
  for (let i = 0; i < rows; i++) for (let j = 0; j < columns; j++) out[j * rows + i] = m[i * columns + j];
  return out;
}
