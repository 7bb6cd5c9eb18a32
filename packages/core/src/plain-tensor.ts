// A dependency-free tensor over typed arrays, with a ledger of live tensors, so the engine can
// be tested (values and memory discipline) without the native runtime.
import { injectable } from 'tsyringe';

import type { TensorOps } from './tensor-ops.js';

export type PlainData = Float64Array | Float32Array;

export class PlainTensor {
  private released = false;

  constructor(
    readonly data: PlainData,
    readonly shape: readonly number[],
    private readonly ledger?: PlainTensorOps,
  ) {
    const size = shape.reduce((a, b) => a * b, 1);
    if (size !== data.length) {
      throw new TypeError(`PlainTensor: shape (${shape.join(', ')}) holds ${size} elements, data has ${data.length}`);
    }
  }

  get disposed(): boolean {
    return this.released;
  }

  dispose(): void {
    if (this.released) return;
    this.released = true;
    this.ledger?.forget(this);
  }

  /** The values, for assertions; throws on a released tensor so use-after-release shows up. */
  values(): PlainData {
    this.assertLive('read');
    return this.data;
  }

  assertLive(op: string): void {
    if (this.released) throw new Error(`PlainTensor: ${op} on a released tensor (${this.shape.join('x')})`);
  }
}

/**
 * TensorOps over PlainTensor. Results keep the element type of the first operand (float32
 * inputs give float32 results, rounded like a float32 runtime). Each instance counts the
 * tensors it created that are still alive, which is how tests catch leaks.
 */
@injectable()
export class PlainTensorOps implements TensorOps<PlainTensor> {
  private readonly live = new Set<PlainTensor>();

  /** Tensors made by this instance (through `tensor`, `zeros` or an op) not yet released. */
  get liveCount(): number {
    return this.live.size;
  }

  tensor(values: ArrayLike<number>, shape: readonly number[] = [values.length], dtype: 'float64' | 'float32' = 'float64'): PlainTensor {
    const data = dtype === 'float32' ? Float32Array.from(values) : Float64Array.from(values);
    return this.track(new PlainTensor(data, [...shape], this));
  }

  zeros(shape: readonly number[], dtype: 'float64' | 'float32' = 'float64'): PlainTensor {
    const size = shape.reduce((a, b) => a * b, 1);
    return this.track(new PlainTensor(dtype === 'float32' ? new Float32Array(size) : new Float64Array(size), [...shape], this));
  }

  /** Elementwise map into a new tensor of a's shape and element type. */
  map(a: PlainTensor, f: (x: number, i: number) => number): PlainTensor {
    a.assertLive('map');
    const out = a.data instanceof Float32Array ? new Float32Array(a.data.length) : new Float64Array(a.data.length);
    for (let i = 0; i < out.length; i++) out[i] = f(a.data[i], i);
    return this.track(new PlainTensor(out, a.shape, this));
  }

  sub(a: PlainTensor, b: PlainTensor): PlainTensor {
    this.checkPair('sub', a, b);
    return this.map(a, (x, i) => x - b.data[i]);
  }

  add(a: PlainTensor, b: PlainTensor): PlainTensor {
    this.checkPair('add', a, b);
    return this.map(a, (x, i) => x + b.data[i]);
  }

  scale(a: PlainTensor, s: number): PlainTensor {
    return this.map(a, (x) => x * s);
  }

  addScaled(a: PlainTensor, b: PlainTensor, s: number): PlainTensor {
    this.checkPair('addScaled', a, b);
    return this.map(a, (x, i) => x + s * b.data[i]);
  }

  relL1(a: PlainTensor, b: PlainTensor): number {
    this.checkPair('relL1', a, b);
    let diff = 0;
    let ref = 0;
    for (let i = 0; i < a.data.length; i++) {
      diff += Math.abs(a.data[i] - b.data[i]);
      ref += Math.abs(a.data[i]);
    }
    return diff / a.data.length / (ref / a.data.length);
  }

  shape(a: PlainTensor): readonly number[] {
    return a.shape;
  }

  clone(a: PlainTensor): PlainTensor {
    return this.map(a, (x) => x);
  }

  retain(a: PlainTensor): PlainTensor {
    a.assertLive('retain');
    return a;
  }

  release(a: PlainTensor): void {
    a.assertLive('release');
    a.dispose();
  }

  toFloat64(a: PlainTensor): Float64Array {
    a.assertLive('toFloat64');
    return Float64Array.from(a.data);
  }

  fromFloat64(values: Float64Array, like: PlainTensor): PlainTensor | undefined {
    like.assertLive('fromFloat64');
    const data = like.data instanceof Float32Array ? Float32Array.from(values) : Float64Array.from(values);
    if (!data.every(Number.isFinite)) return undefined;
    return this.track(new PlainTensor(data, like.shape, this));
  }

  rowNorms(a: PlainTensor): Float64Array {
    a.assertLive('rowNorms');
    const width = a.shape.at(-1) ?? 1;
    const norms = new Float64Array(a.data.length / width);
    for (let row = 0; row < norms.length; row++) {
      let squares = 0;
      for (let i = row * width; i < (row + 1) * width; i++) squares += a.data[i] * a.data[i];
      norms[row] = Math.sqrt(squares);
    }
    return norms;
  }

  /** @internal Called by PlainTensor.dispose. */
  forget(t: PlainTensor): void {
    this.live.delete(t);
  }

  private track(t: PlainTensor): PlainTensor {
    this.live.add(t);
    return t;
  }

  private checkPair(op: string, a: PlainTensor, b: PlainTensor): void {
    a.assertLive(op);
    b.assertLive(op);
    if (a.data.length !== b.data.length || a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
      throw new TypeError(`PlainTensorOps.${op}: shapes (${a.shape.join(', ')}) and (${b.shape.join(', ')}) differ`);
    }
  }
}
