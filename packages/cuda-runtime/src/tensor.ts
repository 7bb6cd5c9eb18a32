// The Tensor handle users hold: shape, dtype and device at hand, views and conversions as
// methods, explicit dispose() / `using`, and membership in the innermost open TensorScope.
import { native, type DType, type NativeTensor } from './native.js';
import { keep as keepInScopes, setTrackedPredicate, track } from './scope.js';

export type { DType } from './native.js';
/** 'cpu', 'cuda' (device 0) or 'cuda:N'. */
export type Device = 'cpu' | 'cuda' | `cuda:${number}`;

export class Tensor implements Disposable {
  /** The native handle; pass it to `native` functions only. */
  readonly handle: NativeTensor;
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly device: Device;

  /** @internal Use `tensor()`, `zeros()` or an op to make tensors. */
  constructor(handle: NativeTensor) {
    this.handle = handle;
    this.shape = Object.freeze(handle.shape);
    this.dtype = handle.dtype;
    this.device = handle.device as Device;
    track(this);
  }

  /** Number of elements. */
  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  get rank(): number {
    return this.shape.length;
  }
  get strides(): number[] {
    return this.handle.strides;
  }
  get isContiguous(): boolean {
    return this.handle.isContiguous;
  }
  get disposed(): boolean {
    return this.handle.disposed;
  }
  /** True for views of a memory-mapped weight file. */
  get readOnly(): boolean {
    return this.handle.readOnly;
  }

  /** Frees this handle now. Views share memory: it is released when the last one goes. */
  dispose(): void {
    this.handle.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
  /** Excludes this tensor from the open scopes, so it outlives them. */
  keep(): this {
    return keepInScopes(this);
  }

  /** Elements in row-major order as float32 (int32 tensors convert exactly up to 2^24). */
  toFloat32Array(): Float32Array {
    return this.handle.toFloat32Array();
  }
  toInt32Array(): Int32Array {
    return this.handle.toInt32Array();
  }
  /** Row-major elements as raw bytes of this tensor's dtype (little-endian). */
  toBytes(): Buffer {
    return this.handle.toBytes();
  }
  /** A single element's value (for scalars and tests). */
  item(): number {
    if (this.size !== 1) throw new TypeError(`item: tensor of shape (${this.shape.join(', ')}) has ${this.size} elements, not 1`);
    return this.toFloat32Array()[0];
  }

  // ---- views and layout ----
  reshape(...shape: number[] | [number[]]): Tensor {
    return wrap(native.reshape(this.handle, flat(shape)));
  }
  permute(...dims: number[] | [number[]]): Tensor {
    return wrap(native.permute(this.handle, flat(dims)));
  }
  transpose(dim0: number, dim1: number): Tensor {
    return wrap(native.transpose(this.handle, dim0, dim1));
  }
  /** Python-style slice along one dimension: [start, end) with step (views, no copy). */
  slice(dim: number, start: number, end: number = Number.MAX_SAFE_INTEGER, step = 1): Tensor {
    return wrap(native.slice(this.handle, dim, start, end, step));
  }
  narrow(dim: number, start: number, length: number): Tensor {
    return this.slice(dim, start, start + length);
  }
  expand(...shape: number[] | [number[]]): Tensor {
    return wrap(native.expand(this.handle, flat(shape)));
  }
  squeeze(dim: number): Tensor {
    return wrap(native.squeeze(this.handle, dim));
  }
  unsqueeze(dim: number): Tensor {
    return wrap(native.unsqueeze(this.handle, dim));
  }
  /** Splits into pieces of the given sizes (or `sizes` equal pieces when it is a number). */
  split(sizes: number | number[], dim = 0): Tensor[] {
    const d = dim < 0 ? dim + this.rank : dim;
    const len = this.shape[d];
    let parts: number[];
    if (typeof sizes === 'number') {
      if (!Number.isInteger(sizes) || sizes <= 0 || len % sizes !== 0) {
        throw new TypeError(`split: ${sizes} equal parts do not divide dimension ${dim} of size ${len}`);
      }
      parts = Array<number>(sizes).fill(len / sizes);
    } else {
      parts = sizes;
    }
    return native.split(this.handle, parts, dim).map(wrap);
  }
  contiguous(): Tensor {
    return wrap(native.contiguous(this.handle));
  }
  clone(): Tensor {
    return wrap(native.clone(this.handle));
  }
  to(device: Device): Tensor {
    return wrap(native.to(this.handle, device));
  }
  cast(dtype: DType): Tensor {
    return wrap(native.cast(this.handle, dtype));
  }

  toString(): string {
    return `Tensor(${this.dtype}, (${this.shape.join(', ')}), ${this.device}${this.disposed ? ', disposed' : ''})`;
  }
}

setTrackedPredicate((v: object): v is Tensor => v instanceof Tensor);

/** Wraps a native handle into a tracked Tensor. */
export function wrap(h: NativeTensor): Tensor {
  return new Tensor(h);
}

function flat(args: number[] | [number[]]): number[] {
  return Array.isArray(args[0]) ? (args[0] as number[]) : (args as number[]);
}
