// Float64 reference implementations in plain TypeScript, written for clarity rather than
// speed, against which the native kernels are tested.

export class Nd {
  readonly shape: number[];
  readonly data: Float64Array;
  constructor(shape: number[], data?: Float64Array | number[]) {
    this.shape = shape;
    const n = shape.reduce((a, b) => a * b, 1);
    this.data = data ? Float64Array.from(data) : new Float64Array(n);
    if (this.data.length !== n) throw new Error(`Nd: ${this.data.length} values for shape ${shape}`);
  }
  get size(): number {
    return this.data.length;
  }
  strides(): number[] {
    const s = Array<number>(this.shape.length).fill(1);
    for (let i = this.shape.length - 2; i >= 0; --i) s[i] = s[i + 1] * this.shape[i + 1];
    return s;
  }
  at(...idx: number[]): number {
    const st = this.strides();
    return this.data[idx.reduce((o, v, i) => o + v * st[i], 0)];
  }
  map(f: (v: number, i: number) => number): Nd {
    return new Nd(this.shape, this.data.map(f));
  }
  f32(): Float32Array {
    return Float32Array.from(this.data);
  }
}

/** Deterministic pseudo-random numbers (mulberry32) with normal samples (Box-Muller). */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  uniform(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  normal(): number {
    const u = Math.max(this.uniform(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.uniform());
  }
  /** Normal values rounded to float32, so that both sides see exactly the same inputs. */
  nd(shape: number[], scale = 1): Nd {
    const n = shape.reduce((a, b) => a * b, 1);
    const d = new Float64Array(n);
    for (let i = 0; i < n; ++i) d[i] = Math.fround(this.normal() * scale);
    return new Nd(shape, d);
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.uniform() * (hi - lo));
  }
}

export function unravel(i: number, shape: number[]): number[] {
  const idx = Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; --d) {
    idx[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return idx;
}

export function broadcastShape(a: number[], b: number[]): number[] {
  const n = Math.max(a.length, b.length);
  return Array.from({ length: n }, (_, i) => {
    const da = a[i - (n - a.length)] ?? 1;
    const db = b[i - (n - b.length)] ?? 1;
    return da === 1 ? db : da;
  });
}

/** Element of `x` that broadcasts to index `idx` of a larger shape. */
function broadcastAt(x: Nd, idx: number[]): number {
  const off = idx.length - x.shape.length;
  const st = x.strides();
  let o = 0;
  for (let d = 0; d < x.shape.length; ++d) o += (x.shape[d] === 1 ? 0 : idx[d + off]) * st[d];
  return x.data[o];
}

export function binary(a: Nd, b: Nd, f: (x: number, y: number) => number): Nd {
  const shape = broadcastShape(a.shape, b.shape);
  const out = new Nd(shape);
  for (let i = 0; i < out.size; ++i) {
    const idx = unravel(i, shape);
    out.data[i] = f(broadcastAt(a, idx), broadcastAt(b, idx));
  }
  return out;
}

export function permute(x: Nd, dims: number[]): Nd {
  const shape = dims.map((d) => x.shape[d]);
  const out = new Nd(shape);
  for (let i = 0; i < out.size; ++i) {
    const idx = unravel(i, shape);
    const src = Array<number>(dims.length);
    dims.forEach((d, k) => (src[d] = idx[k]));
    out.data[i] = x.at(...src);
  }
  return out;
}

export function reduce(x: Nd, dims: number[], f: (vals: number[]) => number, keepdim = false): Nd {
  const red = new Set(dims.map((d) => (d < 0 ? d + x.shape.length : d)));
  const outShape = x.shape.map((s, d) => (red.has(d) ? 1 : s));
  const groups = new Map<number, number[]>();
  const ost = new Nd(outShape).strides();
  for (let i = 0; i < x.size; ++i) {
    const idx = unravel(i, x.shape);
    const o = idx.reduce((acc, v, d) => acc + (red.has(d) ? 0 : v) * ost[d], 0);
    (groups.get(o) ?? groups.set(o, []).get(o)!).push(x.data[i]);
  }
  const out = new Nd(outShape);
  for (let o = 0; o < out.size; ++o) out.data[o] = f(groups.get(o) ?? []);
  return keepdim
    ? out
    : new Nd(
        outShape.filter((_, d) => !red.has(d)),
        out.data,
      );
}

export const sumOf = (v: number[]): number => v.reduce((a, b) => a + b, 0);

export function softmax(x: Nd): Nd {
  const c = x.shape[x.shape.length - 1];
  const out = new Nd(x.shape);
  for (let r = 0; r < x.size / c; ++r) {
    const row = x.data.subarray(r * c, r * c + c);
    const m = Math.max(...row);
    const e = Array.from(row, (v) => Math.exp(v - m));
    const s = sumOf(e);
    e.forEach((v, j) => (out.data[r * c + j] = v / s));
  }
  return out;
}

export function layerNorm(x: Nd, w: Nd | null, b: Nd | null, eps: number): Nd {
  const c = x.shape[x.shape.length - 1];
  const out = new Nd(x.shape);
  for (let r = 0; r < x.size / c; ++r) {
    const row = Array.from(x.data.subarray(r * c, r * c + c));
    const mean = sumOf(row) / c;
    const varc = sumOf(row.map((v) => (v - mean) ** 2)) / c;
    row.forEach((v, j) => {
      out.data[r * c + j] = ((v - mean) / Math.sqrt(varc + eps)) * (w ? w.data[j] : 1) + (b ? b.data[j] : 0);
    });
  }
  return out;
}

export function rmsNorm(x: Nd, w: Nd | null, eps: number): Nd {
  const c = x.shape[x.shape.length - 1];
  const out = new Nd(x.shape);
  for (let r = 0; r < x.size / c; ++r) {
    const row = Array.from(x.data.subarray(r * c, r * c + c));
    const rms = Math.sqrt(sumOf(row.map((v) => v * v)) / c + eps);
    row.forEach((v, j) => (out.data[r * c + j] = (v / rms) * (w ? w.data[j] : 1)));
  }
  return out;
}

export function groupNorm(x: Nd, groups: number, w: Nd | null, b: Nd | null, eps: number): Nd {
  const [n, c] = x.shape;
  const s = x.size / (n * c);
  const cpg = c / groups;
  const out = new Nd(x.shape);
  for (let i = 0; i < n; ++i) {
    for (let g = 0; g < groups; ++g) {
      const base = (i * c + g * cpg) * s;
      const vals = Array.from(x.data.subarray(base, base + cpg * s));
      const mean = sumOf(vals) / vals.length;
      const varc = sumOf(vals.map((v) => (v - mean) ** 2)) / vals.length;
      vals.forEach((v, j) => {
        const ch = g * cpg + Math.floor(j / s);
        out.data[base + j] = ((v - mean) / Math.sqrt(varc + eps)) * (w ? w.data[ch] : 1) + (b ? b.data[ch] : 0);
      });
    }
  }
  return out;
}

/** Batched matrix product with NumPy broadcasting of batch dims (operands at least 2-D). */
export function matmul(a: Nd, b: Nd): Nd {
  const m = a.shape[a.shape.length - 2],
    k = a.shape[a.shape.length - 1],
    n = b.shape[b.shape.length - 1];
  const aBatch = a.shape.slice(0, -2),
    bBatch = b.shape.slice(0, -2);
  const batch = broadcastShape(aBatch, bBatch);
  const out = new Nd([...batch, m, n]);
  const nb = batch.reduce((x, y) => x * y, 1);
  // Offset of the matrix that batch index `idx` selects in an operand with batch shape `bs`.
  const matrixOffset = (idx: number[], bs: number[], size: number): number => {
    let o = 0,
      stride = size;
    for (let d = bs.length - 1; d >= 0; --d) {
      o += (bs[d] === 1 ? 0 : idx[d + idx.length - bs.length]) * stride;
      stride *= bs[d];
    }
    return o;
  };
  for (let bi = 0; bi < nb; ++bi) {
    const idx = unravel(bi, batch);
    const ao = matrixOffset(idx, aBatch, m * k),
      bo = matrixOffset(idx, bBatch, k * n);
    for (let i = 0; i < m; ++i) {
      for (let j = 0; j < n; ++j) {
        let s = 0;
        for (let p = 0; p < k; ++p) s += a.data[ao + i * k + p] * b.data[bo + p * n + j];
        out.data[(bi * m + i) * n + j] = s;
      }
    }
  }
  return out;
}

export function linear(x: Nd, w: Nd, b: Nd | null): Nd {
  const k = x.shape[x.shape.length - 1],
    n = w.shape[0];
  const rows = x.size / k;
  const out = new Nd([...x.shape.slice(0, -1), n]);
  for (let r = 0; r < rows; ++r) {
    for (let j = 0; j < n; ++j) {
      let s = b ? b.data[j] : 0;
      for (let p = 0; p < k; ++p) s += x.data[r * k + p] * w.data[j * k + p];
      out.data[r * n + j] = s;
    }
  }
  return out;
}

/** q (B, H, Sq, D), k/v (B, Hkv, Sk, D|Dv), additive mask broadcast to (B, H, Sq, Sk). */
export function attention(q: Nd, k: Nd, v: Nd, mask: Nd | null, scale?: number): Nd {
  const [B, H, Sq, D] = q.shape;
  const [, Hkv, Sk] = k.shape;
  const Dv = v.shape[3];
  const sc = scale ?? 1 / Math.sqrt(D);
  const out = new Nd([B, H, Sq, Dv]);
  for (let b = 0; b < B; ++b)
    for (let h = 0; h < H; ++h) {
      const hk = Math.floor(h / (H / Hkv));
      for (let i = 0; i < Sq; ++i) {
        const s = Array.from({ length: Sk }, (_, j) => {
          let dot = 0;
          for (let d = 0; d < D; ++d) dot += q.at(b, h, i, d) * k.at(b, hk, j, d);
          return dot * sc + (mask ? broadcastAt(mask, [b, h, i, j]) : 0);
        });
        const m = Math.max(...s);
        const e = s.map((x) => Math.exp(x - m));
        const tot = sumOf(e);
        for (let d = 0; d < Dv; ++d) {
          let acc = 0;
          for (let j = 0; j < Sk; ++j) acc += (e[j] / tot) * v.at(b, hk, j, d);
          out.data[((b * H + h) * Sq + i) * Dv + d] = acc;
        }
      }
    }
  return out;
}

export function rope(x: Nd, cos: Nd, sin: Nd, interleaved: boolean): Nd {
  const d = x.shape[x.shape.length - 1];
  const out = new Nd(x.shape);
  for (let i = 0; i < x.size; ++i) {
    const idx = unravel(i, x.shape);
    const j = idx[idx.length - 1];
    let partner: number, sign: number;
    if (interleaved) {
      partner = j % 2 === 0 ? j + 1 : j - 1;
      sign = j % 2 === 0 ? -1 : 1;
    } else {
      partner = j < d / 2 ? j + d / 2 : j - d / 2;
      sign = j < d / 2 ? -1 : 1;
    }
    const pidx = [...idx.slice(0, -1), partner];
    out.data[i] = x.data[i] * broadcastAt(cos, idx) + sign * x.at(...pidx) * broadcastAt(sin, idx);
  }
  return out;
}

export function conv2d(x: Nd, w: Nd, b: Nd | null, stride: number[], pad: number[], dil: number[], groups: number): Nd {
  const [N, , H, W] = x.shape;
  const [O, Cg, KH, KW] = w.shape;
  const OH = Math.floor((H + 2 * pad[0] - dil[0] * (KH - 1) - 1) / stride[0]) + 1;
  const OW = Math.floor((W + 2 * pad[1] - dil[1] * (KW - 1) - 1) / stride[1]) + 1;
  const Og = O / groups;
  const out = new Nd([N, O, OH, OW]);
  for (let n = 0; n < N; ++n)
    for (let o = 0; o < O; ++o) {
      const g = Math.floor(o / Og);
      for (let oy = 0; oy < OH; ++oy)
        for (let ox = 0; ox < OW; ++ox) {
          let s = b ? b.data[o] : 0;
          for (let c = 0; c < Cg; ++c)
            for (let ky = 0; ky < KH; ++ky)
              for (let kx = 0; kx < KW; ++kx) {
                const iy = oy * stride[0] - pad[0] + ky * dil[0];
                const ix = ox * stride[1] - pad[1] + kx * dil[1];
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                s += x.at(n, g * Cg + c, iy, ix) * w.at(o, c, ky, kx);
              }
          out.data[((n * O + o) * OH + oy) * OW + ox] = s;
        }
    }
  return out;
}

export function conv3d(x: Nd, w: Nd, b: Nd | null, stride: number[], pad: number[], dil: number[], groups: number): Nd {
  const [N, , D, H, W] = x.shape;
  const [O, Cg, KD, KH, KW] = w.shape;
  const size = (i: number, k: number, a: number) => Math.floor((i + 2 * pad[a] - dil[a] * (k - 1) - 1) / stride[a]) + 1;
  const [OD, OH, OW] = [size(D, KD, 0), size(H, KH, 1), size(W, KW, 2)];
  const Og = O / groups;
  const out = new Nd([N, O, OD, OH, OW]);
  for (let i = 0; i < out.size; ++i) {
    const [n, o, oz, oy, ox] = unravel(i, out.shape);
    const g = Math.floor(o / Og);
    let s = b ? b.data[o] : 0;
    for (let c = 0; c < Cg; ++c)
      for (let kz = 0; kz < KD; ++kz)
        for (let ky = 0; ky < KH; ++ky)
          for (let kx = 0; kx < KW; ++kx) {
            const iz = oz * stride[0] - pad[0] + kz * dil[0];
            const iy = oy * stride[1] - pad[1] + ky * dil[1];
            const ix = ox * stride[2] - pad[2] + kx * dil[2];
            if (iz < 0 || iz >= D || iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
            s += x.at(n, g * Cg + c, iz, iy, ix) * w.at(o, c, kz, ky, kx);
          }
    out.data[i] = s;
  }
  return out;
}

/** Largest |actual - expected| / (atol + rtol * |expected|); the test passes when it is <= 1. */
export function closeness(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol: number): { worst: number; at: number } {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} vs ${expected.length}`);
  let worst = 0,
    at = -1;
  for (let i = 0; i < actual.length; ++i) {
    const e = expected[i],
      a = actual[i];
    let r = a === e || (Number.isNaN(a) && Number.isNaN(e)) ? 0 : Math.abs(a - e) / (atol + rtol * Math.abs(e));
    if (Number.isNaN(r)) r = Infinity;
    if (r > worst) {
      worst = r;
      at = i;
    }
  }
  return { worst, at };
}
