// Dynamic Mode Decomposition (exact DMD, Tu et al. 2014; Prony's method generalised) of a short
// series of snapshots y_0..y_{n-1}, in float64: the linear map A with y_{t+1} ~ A y_t, restricted
// to the leading singular subspace of [y_0..y_{n-2}], eigendecomposed so the series can be
// advanced by any horizon k (fractional too) as Re(Phi (lambda^k * b)). This is the fit cache-dit's
// DMD calibrator makes; it is computed here on the n x n triangle of a QR factorisation of the
// snapshots, which leaves every quantity it forms unchanged (the QR's Q has orthonormal columns)
// and keeps all work on the long vectors to one factorisation and one product per forecast.

/** Singular values at or below this fraction of the largest are dropped when the rank is automatic. */
const AUTOMATIC_RANK_CUTOFF = 1e-4;
const EPS = Number.EPSILON;

/** A fitted series: `forecast(k)` is the snapshot k snapshot-spacings after the newest. */
export interface DmdFit {
  forecast(k: number): Float64Array;
}

/**
 * Fits the series `snapshots` (oldest first, each of the same length, at least 2). `rank` 0
 * keeps the singular values above 1e-4 of the largest; `ridge` is added to the singular values
 * before they are inverted. Undefined when the fit is degenerate (non-finite input, or an
 * eigenproblem that does not converge), where cache-dit's torch fit raises.
 */
export function fitDmd(snapshots: readonly Float64Array[], rank: number, ridge: number): DmdFit | undefined {
  for (const s of snapshots) for (const v of s) if (!Number.isFinite(v)) return undefined;
  const n = snapshots.length;
  const m = n - 1;
  const qr = householderQr(snapshots);
  const r = qr.r;
  // X = [y_0..y_{m-1}] = Q [R11; 0] with R11 its m x m leading triangle; Y' = [y_1..y_m] = Q R[:, 1:].
  const svd = jacobiSvd(Array.from({ length: m }, (_, i) => r[i].slice(0, m)));
  const s = svd.values;
  let kept = rank > 0 ? rank : Math.max(1, s.filter((v) => v > s[0] * AUTOMATIC_RANK_CUTOFF).length);
  kept = Math.max(1, Math.min(kept, m));
  const inverse = s.slice(0, kept).map((v) => 1 / (v + ridge));
  // B = Y' V_r S_r^-1 (n x kept, in the QR's coordinates) and A~ = U_r^T B (kept x kept).
  const b: number[][] = Array.from({ length: n }, (_, row) =>
    inverse.map((inv, j) => {
      let sum = 0;
      for (let c = 0; c < m; c++) sum += r[row][c + 1] * svd.v[c][j];
      return sum * inv;
    }),
  );
  const reduced: number[][] = Array.from({ length: kept }, (_, i) =>
    Array.from({ length: kept }, (_, j) => {
      let sum = 0;
      for (let row = 0; row < m; row++) sum += svd.u[row][i] * b[row][j];
      return sum;
    }),
  );
  const eigen = eigenDecomposition(reduced);
  if (!eigen) return undefined;
  // Phi = B W; its amplitudes b solve min |Phi b - y_{n-1}| (y_{n-1} = Q R[:, n-1]).
  const phi = complexProduct(b, eigen.vectors);
  const amplitudes = complexLeastSquares(
    phi,
    r.map((row) => row[n - 1]),
  );
  if (!amplitudes) return undefined;
  return {
    forecast(k: number): Float64Array {
      const advanced = eigen.values.map((lambda, j) => complexMul(complexPow(lambda, k), amplitudes[j]));
      const coordinates = phi.map((row) => row.reduce((sum, p, j) => sum + p[0] * advanced[j][0] - p[1] * advanced[j][1], 0));
      return qr.applyQ(coordinates);
    },
  };
}

// ---- real QR of the snapshots (Householder) ----

interface SnapshotQr {
  /** R, n x n upper triangular. */
  r: number[][];
  /** Q g for an n-vector g, as a vector of the snapshots' length. */
  applyQ(g: readonly number[]): Float64Array;
}

function householderQr(columns: readonly Float64Array[]): SnapshotQr {
  const n = columns.length;
  const d = columns[0].length;
  const a = columns.map((c) => Float64Array.from(c));
  const reflectors: { v: Float64Array; beta: number }[] = [];
  const r: number[][] = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let j = 0; j < n; j++) {
    const x = a[j].subarray(j);
    let norm = 0;
    for (const v of x) norm += v * v;
    norm = Math.sqrt(norm);
    if (norm === 0 || j >= d) {
      reflectors.push({ v: new Float64Array(0), beta: 0 });
    } else {
      const alpha = x[0] >= 0 ? -norm : norm;
      const v = Float64Array.from(x);
      v[0] -= alpha;
      let vv = 0;
      for (const e of v) vv += e * e;
      const beta = vv === 0 ? 0 : 2 / vv;
      for (let c = j; c < n; c++) reflect(v, beta, a[c].subarray(j));
      reflectors.push({ v, beta });
    }
    for (let i = 0; i <= j && i < d; i++) r[i][j] = a[j][i];
  }
  return {
    r,
    applyQ(g) {
      const out = new Float64Array(d);
      for (let i = 0; i < n && i < d; i++) out[i] = g[i];
      for (let j = n - 1; j >= 0; j--) if (reflectors[j].beta !== 0) reflect(reflectors[j].v, reflectors[j].beta, out.subarray(j));
      return out;
    },
  };
}

/** x <- (I - beta v v^T) x. */
function reflect(v: Float64Array, beta: number, x: Float64Array): void {
  let dot = 0;
  for (let i = 0; i < v.length; i++) dot += v[i] * x[i];
  const f = beta * dot;
  for (let i = 0; i < v.length; i++) x[i] -= f * v[i];
}

// ---- SVD of the small triangle (one-sided Jacobi: accurate singular values, orthogonal V) ----

interface SmallSvd {
  /** u[row][j]: left singular vectors (zero where the singular value is 0). */
  u: number[][];
  /** Singular values, largest first. */
  values: number[];
  /** v[row][j]: right singular vectors. */
  v: number[][];
}

function jacobiSvd(matrix: readonly number[][]): SmallSvd {
  const m = matrix.length;
  const cols = Array.from({ length: m }, (_, j) => matrix.map((row) => row[j]));
  const vcols = Array.from({ length: m }, (_, j) => Array.from({ length: m }, (_, i) => (i === j ? 1 : 0)));
  for (let sweep = 0; sweep < 100; sweep++) {
    let rotated = false;
    for (let p = 0; p < m - 1; p++) {
      for (let q = p + 1; q < m; q++) {
        const alpha = dot(cols[p], cols[p]);
        const beta = dot(cols[q], cols[q]);
        const gamma = dot(cols[p], cols[q]);
        if (gamma === 0 || Math.abs(gamma) <= EPS * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        rotate(cols[p], cols[q], c, s);
        rotate(vcols[p], vcols[q], c, s);
      }
    }
    if (!rotated) break;
  }
  const order = cols.map((col, j) => ({ j, sigma: Math.sqrt(dot(col, col)) })).sort((x, y) => y.sigma - x.sigma);
  return {
    values: order.map((o) => o.sigma),
    u: Array.from({ length: m }, (_, row) => order.map(({ j, sigma }) => (sigma > 0 ? cols[j][row] / sigma : 0))),
    v: Array.from({ length: m }, (_, row) => order.map(({ j }) => vcols[j][row])),
  };
}

function dot(a: readonly number[], b: readonly number[]): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i] * b[i];
  return sum;
}

/** (x, y) <- (c x - s y, s x + c y). */
function rotate(x: number[], y: number[], c: number, s: number): void {
  for (let i = 0; i < x.length; i++) {
    const xi = x[i];
    const yi = y[i];
    x[i] = c * xi - s * yi;
    y[i] = s * xi + c * yi;
  }
}

// ---- complex helpers ----

type Complex = readonly [number, number];

const complexMul = (a: Complex, b: Complex): Complex => [a[0] * b[0] - a[1] * b[1], a[0] * b[1] + a[1] * b[0]];
const complexAbs = (a: Complex): number => Math.hypot(a[0], a[1]);
const conj = (a: Complex): Complex => [a[0], -a[1]];
function complexDiv(a: Complex, b: Complex): Complex {
  const scale = b[0] * b[0] + b[1] * b[1];
  return [(a[0] * b[0] + a[1] * b[1]) / scale, (a[1] * b[0] - a[0] * b[1]) / scale];
}

/** lambda^k on the principal branch, as torch's complex pow. */
function complexPow(lambda: Complex, k: number): Complex {
  const magnitude = complexAbs(lambda);
  if (magnitude === 0) return [0, 0];
  const angle = Math.atan2(lambda[1], lambda[0]) * k;
  const scale = magnitude ** k;
  return [scale * Math.cos(angle), scale * Math.sin(angle)];
}

/** A real n x p matrix times a complex p x q one. */
function complexProduct(a: readonly number[][], b: readonly Complex[][]): Complex[][] {
  return a.map((row) =>
    b[0].map((_, j) => {
      let re = 0;
      let im = 0;
      for (let i = 0; i < row.length; i++) {
        re += row[i] * b[i][j][0];
        im += row[i] * b[i][j][1];
      }
      return [re, im] as const;
    }),
  );
}

/**
 * min |A x - y| for a complex n x p A of full column rank (n >= p) and a real y, by Gram-Schmidt
 * with reorthogonalisation; undefined when a column is numerically dependent on the others.
 */
function complexLeastSquares(a: readonly Complex[][], y: readonly number[]): Complex[] | undefined {
  const n = a.length;
  const p = a[0].length;
  const q: Complex[][] = [];
  const r: Complex[][] = Array.from({ length: p }, () => Array.from({ length: p }, (): Complex => [0, 0]));
  const norms = Array.from({ length: p }, (_, j) => Math.sqrt(a.reduce((sum, row) => sum + complexAbs(row[j]) ** 2, 0)));
  for (let j = 0; j < p; j++) {
    let v: Complex[] = a.map((row) => row[j]);
    for (let pass = 0; pass < 2; pass++) {
      for (let i = 0; i < j; i++) {
        const h = innerProduct(q[i], v);
        r[i][j] = [r[i][j][0] + h[0], r[i][j][1] + h[1]];
        v = v.map((e, k) => {
          const t = complexMul(h, q[i][k]);
          return [e[0] - t[0], e[1] - t[1]];
        });
      }
    }
    const norm = Math.sqrt(v.reduce((sum, e) => sum + complexAbs(e) ** 2, 0));
    if (!(norm > EPS * n * norms[j])) return undefined;
    r[j][j] = [norm, 0];
    q.push(v.map((e) => [e[0] / norm, e[1] / norm]));
  }
  const rhs = q.map((col) =>
    innerProduct(
      col,
      y.map((e): Complex => [e, 0]),
    ),
  );
  const x: Complex[] = new Array(p);
  for (let i = p - 1; i >= 0; i--) {
    let acc = rhs[i];
    for (let j = i + 1; j < p; j++) {
      const t = complexMul(r[i][j], x[j]);
      acc = [acc[0] - t[0], acc[1] - t[1]];
    }
    x[i] = complexDiv(acc, r[i][i]);
  }
  return x;
}

/** a^H b. */
function innerProduct(a: readonly Complex[], b: readonly Complex[]): Complex {
  let re = 0;
  let im = 0;
  for (let i = 0; i < a.length; i++) {
    const t = complexMul(conj(a[i]), b[i]);
    re += t[0];
    im += t[1];
  }
  return [re, im];
}

// ---- eigendecomposition of a small real matrix (Hessenberg form, complex shifted QR) ----

interface Eigen {
  values: Complex[];
  /** vectors[row][j]: the eigenvector of values[j]. */
  vectors: Complex[][];
}

/** Eigenvalues and eigenvectors of a real square matrix; undefined when the QR iteration does not converge. */
export function eigenDecomposition(matrix: readonly number[][]): Eigen | undefined {
  const n = matrix.length;
  const { h: real, z: realZ } = hessenberg(matrix);
  const h: [number, number][][] = real.map((row) => row.map((v): [number, number] => [v, 0]));
  const z: [number, number][][] = realZ.map((row) => row.map((v): [number, number] => [v, 0]));
  if (!complexSchur(h, z)) return undefined;
  const scale = Math.max(EPS, ...h.map((row) => row.reduce((sum, e) => sum + complexAbs(e), 0)));
  const small = EPS * scale;
  const values: Complex[] = h.map((row, i) => row[i]);
  const columns = values.map((lambda, i) => {
    // Solve (T - lambda I) x = 0 with x_i = 1 and x below i zero, by back substitution.
    const x: Complex[] = Array.from({ length: n }, (_, k): Complex => (k === i ? [1, 0] : [0, 0]));
    for (let j = i - 1; j >= 0; j--) {
      let acc: Complex = [0, 0];
      for (let k = j + 1; k <= i; k++) {
        const t = complexMul(h[j][k], x[k]);
        acc = [acc[0] + t[0], acc[1] + t[1]];
      }
      let pivot: Complex = [h[j][j][0] - lambda[0], h[j][j][1] - lambda[1]];
      if (complexAbs(pivot) < small) pivot = [small, 0];
      const xj = complexDiv(acc, pivot);
      x[j] = [-xj[0], -xj[1]];
    }
    const w = z.map((row) =>
      row.reduce<Complex>(
        (sum, e, k) => {
          const t = complexMul(e, x[k]);
          return [sum[0] + t[0], sum[1] + t[1]];
        },
        [0, 0],
      ),
    );
    const norm = Math.sqrt(w.reduce((sum, e) => sum + complexAbs(e) ** 2, 0));
    return w.map((e): Complex => [e[0] / norm, e[1] / norm]);
  });
  return { values, vectors: Array.from({ length: n }, (_, row) => columns.map((col) => col[row])) };
}

/** A = Z H Z^T with H upper Hessenberg and Z orthogonal (Householder). */
function hessenberg(matrix: readonly number[][]): { h: number[][]; z: number[][] } {
  const n = matrix.length;
  const h = matrix.map((row) => [...row]);
  const z = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)));
  for (let k = 0; k < n - 2; k++) {
    const x = h.slice(k + 1).map((row) => row[k]);
    const norm = Math.sqrt(dot(x, x));
    if (norm === 0) continue;
    const alpha = x[0] >= 0 ? -norm : norm;
    const v = [...x];
    v[0] -= alpha;
    const beta = 2 / dot(v, v);
    // H <- P H P, Z <- Z P with P = I - beta v v^T acting on rows / columns k+1..n-1.
    for (let c = 0; c < n; c++) {
      const f = beta * v.reduce((sum, vi, i) => sum + vi * h[k + 1 + i][c], 0);
      v.forEach((vi, i) => {
        h[k + 1 + i][c] -= f * vi;
      });
    }
    for (const row of [...h, ...z]) {
      const f = beta * v.reduce((sum, vi, i) => sum + vi * row[k + 1 + i], 0);
      v.forEach((vi, i) => {
        row[k + 1 + i] -= f * vi;
      });
    }
  }
  return { h, z };
}

/**
 * Reduces the upper Hessenberg `h` to upper triangular (Schur) form in place by shifted QR steps
 * (Wilkinson shifts, Givens rotations), accumulating the rotations into `z`. false when it does
 * not converge.
 */
function complexSchur(h: [number, number][][], z: [number, number][][]): boolean {
  const n = h.length;
  let hi = n - 1;
  let iterations = 0;
  while (hi > 0) {
    let lo = hi;
    while (lo > 0) {
      const scale = complexAbs(h[lo - 1][lo - 1]) + complexAbs(h[lo][lo]) || 1;
      if (complexAbs(h[lo][lo - 1]) <= EPS * scale) {
        h[lo][lo - 1] = [0, 0];
        break;
      }
      lo -= 1;
    }
    if (lo === hi) {
      hi -= 1;
      iterations = 0;
      continue;
    }
    iterations += 1;
    if (iterations > 100) return false;
    const shift = iterations % 11 === 0 ? exceptionalShift(h, hi) : wilkinsonShift(h, hi);
    for (let i = lo; i <= hi; i++) h[i][i] = [h[i][i][0] - shift[0], h[i][i][1] - shift[1]];
    const rotations: { c: number; s: Complex }[] = [];
    for (let k = lo; k < hi; k++) {
      const rotation = givens(h[k][k], h[k + 1][k]);
      rotations.push(rotation);
      for (let j = k; j < n; j++) [h[k][j], h[k + 1][j]] = applyLeft(rotation, h[k][j], h[k + 1][j]);
    }
    rotations.forEach((rotation, offset) => {
      const k = lo + offset;
      for (let i = 0; i <= Math.min(k + 2, hi); i++) [h[i][k], h[i][k + 1]] = applyRight(rotation, h[i][k], h[i][k + 1]);
      for (const row of z) [row[k], row[k + 1]] = applyRight(rotation, row[k], row[k + 1]);
    });
    for (let i = lo; i <= hi; i++) h[i][i] = [h[i][i][0] + shift[0], h[i][i][1] + shift[1]];
  }
  return true;
}

/** The eigenvalue of the trailing 2 x 2 block nearer its last diagonal entry. */
function wilkinsonShift(h: readonly Complex[][], hi: number): Complex {
  const a = h[hi - 1][hi - 1];
  const b = h[hi - 1][hi];
  const c = h[hi][hi - 1];
  const d = h[hi][hi];
  const half: Complex = [(a[0] - d[0]) / 2, (a[1] - d[1]) / 2];
  const bc = complexMul(b, c);
  const root = complexSqrt([half[0] * half[0] - half[1] * half[1] + bc[0], 2 * half[0] * half[1] + bc[1]]);
  // d + half -/+ root: take the root's sign that keeps the shift nearer d.
  const plus: Complex = [half[0] + root[0], half[1] + root[1]];
  const minus: Complex = [half[0] - root[0], half[1] - root[1]];
  const nearer = complexAbs(plus) >= complexAbs(minus) ? plus : minus;
  if (complexAbs(nearer) === 0) return d;
  const offset = complexDiv(bc, nearer);
  return [d[0] - offset[0], d[1] - offset[1]];
}

/** A shift off the usual one, to break the rare cycles of the plain iteration. */
function exceptionalShift(h: readonly Complex[][], hi: number): Complex {
  const d = h[hi][hi];
  const kick = complexAbs(h[hi][hi - 1]) + (hi > 1 ? complexAbs(h[hi - 1][hi - 2]) : 0);
  return [d[0] + 0.75 * kick, d[1]];
}

function complexSqrt(a: Complex): Complex {
  const magnitude = complexAbs(a);
  if (magnitude === 0) return [0, 0];
  const re = Math.sqrt((magnitude + a[0]) / 2);
  const im = Math.sqrt(Math.max(0, (magnitude - a[0]) / 2));
  return [re, a[1] < 0 ? -im : im];
}

/** The rotation G = [[c, s], [-conj(s), c]] with G [x; y] = [rho; 0]. */
function givens(x: Complex, y: Complex): { c: number; s: Complex } {
  const ax = complexAbs(x);
  const rho = Math.hypot(ax, complexAbs(y));
  if (rho === 0) return { c: 1, s: [0, 0] };
  if (ax === 0) return { c: 0, s: [1, 0] };
  const phase: Complex = [x[0] / ax, x[1] / ax];
  const s = complexMul(phase, conj(y));
  return { c: ax / rho, s: [s[0] / rho, s[1] / rho] };
}

/** [x; y] <- G [x; y]. */
function applyLeft({ c, s }: { c: number; s: Complex }, x: Complex, y: Complex): [[number, number], [number, number]] {
  const sy = complexMul(s, y);
  const sx = complexMul(conj(s), x);
  return [
    [c * x[0] + sy[0], c * x[1] + sy[1]],
    [c * y[0] - sx[0], c * y[1] - sx[1]],
  ];
}

/** [x, y] <- [x, y] G^H. */
function applyRight({ c, s }: { c: number; s: Complex }, x: Complex, y: Complex): [[number, number], [number, number]] {
  const ys = complexMul(y, conj(s));
  const xs = complexMul(x, s);
  return [
    [c * x[0] + ys[0], c * x[1] + ys[1]],
    [c * y[0] - xs[0], c * y[1] - xs[1]],
  ];
}
