// The functional op API. Each function forwards to the native op layer, which validates shapes,
// dtypes and devices and throws a TypeError naming the op and the shapes involved.
import { native, type DType } from './native.js';
import { Tensor, wrap, type Device } from './tensor.js';

export interface CreateOptions {
  dtype?: DType;
  device?: Device;
}

type Data = Float32Array | Float64Array | Int32Array | Uint16Array | number[];

/**
 * A tensor from values in row-major order. A Uint16Array holds raw float16 / bfloat16 bits
 * (its dtype must say which); numbers and other arrays convert to the dtype (default float32,
 * int32 for an Int32Array).
 */
export function tensor(data: Data, shape?: readonly number[], opts: CreateOptions = {}): Tensor {
  const dtype = opts.dtype ?? (data instanceof Int32Array ? 'int32' : 'float32');
  const values = Array.isArray(data) ? Float64Array.from(data) : data;
  return wrap(native.fromArray(values, [...(shape ?? [values.length])], dtype, opts.device ?? 'cpu'));
}

export function full(shape: readonly number[], value: number, opts: CreateOptions = {}): Tensor {
  return wrap(native.full([...shape], value, opts.dtype ?? 'float32', opts.device ?? 'cpu'));
}
export function zeros(shape: readonly number[], opts: CreateOptions = {}): Tensor {
  return full(shape, 0, opts);
}
export function ones(shape: readonly number[], opts: CreateOptions = {}): Tensor {
  return full(shape, 1, opts);
}
/** [start, end) with step, like Python's range (one argument: [0, end)). */
export function arange(start: number, end?: number, step = 1, opts: CreateOptions = {}): Tensor {
  if (end === undefined) [start, end] = [0, start];
  return wrap(native.arange(start, end, step, opts.dtype ?? 'float32', opts.device ?? 'cpu'));
}

// ---- arithmetic (tensor or number on either side; tensors broadcast NumPy-style) ----

function binary(op: string, a: Tensor | number, b: Tensor | number): Tensor {
  if (a instanceof Tensor) return wrap(native.binary(op, a.handle, b instanceof Tensor ? b.handle : b, false));
  if (b instanceof Tensor) return wrap(native.binary(op, b.handle, a, true));
  throw new TypeError(`${op}: at least one operand must be a Tensor`);
}
export const add = (a: Tensor | number, b: Tensor | number): Tensor => binary('add', a, b);
export const sub = (a: Tensor | number, b: Tensor | number): Tensor => binary('sub', a, b);
export const mul = (a: Tensor | number, b: Tensor | number): Tensor => binary('mul', a, b);
export const div = (a: Tensor | number, b: Tensor | number): Tensor => binary('div', a, b);
export const maximum = (a: Tensor | number, b: Tensor | number): Tensor => binary('maximum', a, b);
export const minimum = (a: Tensor | number, b: Tensor | number): Tensor => binary('minimum', a, b);
export const pow = (a: Tensor | number, b: Tensor | number): Tensor => binary('pow', a, b);

const unary =
  (op: string) =>
  (x: Tensor): Tensor =>
    wrap(native.unary(op, x.handle));
export const neg = unary('neg');
export const abs = unary('abs');
export const exp = unary('exp');
export const log = unary('log');
export const sqrt = unary('sqrt');
export const rsqrt = unary('rsqrt');
export const sin = unary('sin');
export const cos = unary('cos');
export const tanh = unary('tanh');
export const sigmoid = unary('sigmoid');
export const silu = unary('silu');
export const relu = unary('relu');
export const square = unary('square');
export const reciprocal = unary('reciprocal');
/** GELU; `approximate: 'tanh'` is the tanh form, 'none' (default) the exact erf form. */
export function gelu(x: Tensor, opts: { approximate?: 'none' | 'tanh' } = {}): Tensor {
  return wrap(native.unary(opts.approximate === 'tanh' ? 'gelu_tanh' : 'gelu_erf', x.handle));
}
export function clamp(x: Tensor, min = -Infinity, max = Infinity): Tensor {
  return wrap(native.unary('clamp', x.handle, min, max));
}

// ---- reductions ----

type Dims = number | number[] | undefined;
const reduce =
  (op: string) =>
  (x: Tensor, dims?: Dims, keepdim = false): Tensor =>
    wrap(native.reduce(op, x.handle, dims === undefined ? null : typeof dims === 'number' ? [dims] : dims, keepdim));
/** Sum over `dims` (all dimensions when omitted). */
export const sum = reduce('sum');
export const mean = reduce('mean');
export const max = reduce('max');
export const min = reduce('min');
/** mean(|x|) over all elements, accumulated in float64. */
export const meanAbs = (x: Tensor): number => native.meanAbs(x.handle);
/**
 * mean|a - b| / mean|a| over all elements, in one pass with float64 accumulation: how far `b`
 * moved from the reference `a`. Infinity when a is all zeros and b is not; NaN when both are.
 */
export const relL1 = (a: Tensor, b: Tensor): number => native.relL1(a.handle, b.handle);

// ---- shapes ----

export function concat(tensors: readonly Tensor[], dim = 0): Tensor {
  return wrap(
    native.concat(
      tensors.map((t) => t.handle),
      dim,
    ),
  );
}
export function stack(tensors: readonly Tensor[], dim = 0): Tensor {
  if (tensors.length === 0) throw new TypeError('stack: needs at least one tensor');
  const d = dim < 0 ? dim + tensors[0].rank + 1 : dim;
  const parts = tensors.map((t) => native.unsqueeze(t.handle, d));
  try {
    return wrap(native.concat(parts, d));
  } finally {
    for (const p of parts) p.dispose();
  }
}

// ---- neural-network ops ----

export function softmax(x: Tensor, dim = -1): Tensor {
  return wrap(native.softmax(x.handle, dim));
}
/** Layer norm over the last dimension; weight and bias optional (no affine without them). */
export function layerNorm(x: Tensor, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  return wrap(native.layerNorm(x.handle, weight?.handle ?? null, bias?.handle ?? null, eps));
}
export function rmsNorm(x: Tensor, weight?: Tensor | null, eps = 1e-6): Tensor {
  return wrap(native.rmsNorm(x.handle, weight?.handle ?? null, eps));
}
/** Group norm of (N, C, ...) input over `groups` channel groups. */
export function groupNorm(x: Tensor, groups: number, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  return wrap(native.groupNorm(x.handle, groups, weight?.handle ?? null, bias?.handle ?? null, eps));
}
/** x W^T + b with W of shape (out, in), over any leading dimensions of x. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return wrap(native.linear(x.handle, weight.handle, bias?.handle ?? null));
}
/** Matrix product with NumPy semantics (batch dimensions broadcast; 1-D operands allowed). */
export function matmul(a: Tensor, b: Tensor): Tensor {
  return wrap(native.matmul(a.handle, b.handle));
}

export interface AttentionOptions {
  /** Additive mask broadcastable to (batch, heads, queries, keys); -Infinity blocks a key. */
  mask?: Tensor | null;
  /** Defaults to 1 / sqrt(head dim). */
  scale?: number;
  /** Return (batch, queries, heads, dim) instead of (batch, heads, queries, dim). */
  headsLast?: boolean;
}
/**
 * Scaled dot-product attention over (batch, heads, seq, dim) query / key / value. Views with a
 * unit stride on the last dimension (e.g. a (batch, seq, heads, dim) tensor transposed) are read
 * in place. Key / value may have fewer heads than the query (grouped-query attention).
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  return wrap(native.attention(q.handle, k.handle, v.handle, opts.mask?.handle ?? null, opts.scale ?? null, opts.headsLast ?? false));
}
/**
 * Rotary embedding: out = x * cos + rotate(x) * sin, with cos / sin broadcast to x. Interleaved
 * (default) rotates pairs (x[2i], x[2i+1]) as FLUX and Wan do; otherwise halves (rotate_half).
 */
export function rope(x: Tensor, cos: Tensor, sin: Tensor, opts: { interleaved?: boolean } = {}): Tensor {
  return wrap(native.rope(x.handle, cos.handle, sin.handle, opts.interleaved ?? true));
}
/** Rows of `weight` (vocab, dim) picked by int32 `indices`; out-of-range indices throw. */
export function embedding(weight: Tensor, indices: Tensor): Tensor {
  return wrap(native.embedding(weight.handle, indices.handle));
}

export interface Conv2dOptions {
  stride?: number | [number, number];
  padding?: number | [number, number];
  dilation?: number | [number, number];
  groups?: number;
}
const pair = (v: number | [number, number] | undefined, dflt: number): number[] => (v === undefined ? [dflt, dflt] : typeof v === 'number' ? [v, v] : [...v]);
/** 2-D convolution of (N, C, H, W) input with (out, C / groups, kh, kw) weight, zero padding. */
export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  return wrap(
    native.conv2d(x.handle, weight.handle, bias?.handle ?? null, pair(opts.stride, 1), pair(opts.padding, 0), pair(opts.dilation, 1), opts.groups ?? 1),
  );
}
export interface Conv3dOptions {
  stride?: number | [number, number, number];
  padding?: number | [number, number, number];
  dilation?: number | [number, number, number];
  groups?: number;
}
const triple = (v: number | [number, number, number] | undefined, dflt: number): number[] =>
  v === undefined ? [dflt, dflt, dflt] : typeof v === 'number' ? [v, v, v] : [...v];
/** 3-D convolution of (N, C, D, H, W) input with (out, C / groups, kd, kh, kw) weight, zero padding. */
export function conv3d(x: Tensor, weight: Tensor, bias?: Tensor | null, opts: Conv3dOptions = {}): Tensor {
  return wrap(
    native.conv3d(x.handle, weight.handle, bias?.handle ?? null, triple(opts.stride, 1), triple(opts.padding, 0), triple(opts.dilation, 1), opts.groups ?? 1),
  );
}

/**
 * The k largest (or, with `largest: false`, smallest) entries along `dim` in rank order, and
 * their int32 indices. Equal values rank by index; NaN ranks above every number.
 */
export function topk(x: Tensor, k: number, opts: { dim?: number; largest?: boolean } = {}): { values: Tensor; indices: Tensor } {
  const [values, indices] = native.topk(x.handle, k, opts.dim ?? -1, opts.largest ?? true);
  return { values: wrap(values), indices: wrap(indices) };
}

/** Nearest-neighbour resize of (N, C, H, W) by an integer `scale` or to `size` [h, w] (PyTorch's rule). */
export function upsampleNearest2d(x: Tensor, opts: { scale?: number; size?: [number, number] }): Tensor {
  if (x.rank !== 4) throw new TypeError(`upsampleNearest2d: input must be 4-D (N, C, H, W), got (${x.shape.join(', ')})`);
  const [h, w] = [x.shape[2], x.shape[3]];
  const size = opts.size ?? (opts.scale !== undefined ? [h * opts.scale, w * opts.scale] : undefined);
  if (!size) throw new TypeError('upsampleNearest2d: give scale or size');
  return wrap(native.upsampleNearest2d(x.handle, size[0], size[1]));
}

// ---- comparisons ----

/**
 * ||actual - expected||_2 / ||expected||_2, accumulated in float64: the parity measure ditcache
 * reports against reference implementations. Throws when the shapes differ.
 */
export function relativeL2(actual: Tensor, expected: Tensor): number {
  if (actual.shape.length !== expected.shape.length || actual.shape.some((d, i) => d !== expected.shape[i])) {
    throw new TypeError(`relativeL2: shapes differ: (${actual.shape.join(', ')}) vs (${expected.shape.join(', ')})`);
  }
  return relativeL2Values(actual.toFloat32Array(), expected.toFloat32Array());
}

/** relativeL2 of two arrays of values (for results copied off their tensors). */
export function relativeL2Values(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new TypeError(`relativeL2: ${actual.length} vs ${expected.length} values`);
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < actual.length; ++i) {
    diff += (actual[i] - expected[i]) ** 2;
    norm += expected[i] ** 2;
  }
  return Math.sqrt(diff / norm);
}
