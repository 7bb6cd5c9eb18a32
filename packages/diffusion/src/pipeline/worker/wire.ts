// Values crossing between the main thread and a pipeline's worker: tensors travel as typed
// arrays (their buffers transferred, not copied) and become tensors again on the other side;
// errors travel as name, message and their own data fields, and become the same class again
// where it is one the caller can catch by class (a NaN's step and tensor must not be lost).
import { Tensor, tensor, type DType } from '@ditcache/cuda-runtime';

import { Float16OverflowError } from '../float16.js';
import { NonFiniteError } from '../non-finite.js';

interface WireTensor {
  readonly wireTensor: true;
  readonly dtype: DType;
  readonly shape: number[];
  readonly data: Float32Array | Int32Array | Uint16Array;
}

function isWireTensor(v: unknown): v is WireTensor {
  return typeof v === 'object' && v !== null && (v as WireTensor).wireTensor === true;
}

function toWire(t: Tensor, transfer: ArrayBuffer[]): WireTensor {
  let data: WireTensor['data'];
  if (t.dtype === 'float32') data = t.toFloat32Array();
  else if (t.dtype === 'int32') data = t.toInt32Array();
  else data = new Uint16Array(Uint8Array.from(t.toBytes()).buffer);
  transfer.push(data.buffer as ArrayBuffer);
  return { wireTensor: true, dtype: t.dtype, shape: [...t.shape], data };
}

/** A structured-clone-safe copy of `value` with tensors as typed arrays; functions are dropped. */
export function encode(value: unknown, transfer: ArrayBuffer[] = []): unknown {
  if (value instanceof Tensor) return toWire(value, transfer);
  if (Array.isArray(value)) return value.map((v) => encode(v, transfer));
  if (typeof value === 'function') return undefined;
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, encode(v, transfer)]));
  }
  return value;
}

/** Undoes encode: typed-array tensors become runtime tensors (owned by the caller). */
export function decode(value: unknown): unknown {
  if (isWireTensor(value)) return tensor(value.data, value.shape, { dtype: value.dtype });
  if (Array.isArray(value)) return value.map(decode);
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, decode(v)]));
  }
  return value;
}

/** Disposes every tensor inside a decoded value. */
export function disposeTensors(value: unknown): void {
  if (value instanceof Tensor) value.dispose();
  else if (Array.isArray(value)) value.forEach(disposeTensors);
  else if (value !== null && typeof value === 'object') Object.values(value).forEach(disposeTensors);
}

/** The messages between RemotePipeline and its worker. */
export type ToWorker =
  | { type: 'generate'; id: number; request: unknown; abort: SharedArrayBuffer }
  | { type: 'enableCache'; config: unknown }
  | { type: 'disableCache' }
  | { type: 'memoryStats'; id: number }
  | { type: 'close' };

/** The cache's state after a step of a cached run: cached steps so far, and the first context's residual diff by step (for live plots). */
export interface StepCache {
  cachedSteps: number;
  residualDiffs: Record<string, number>;
}

export type FromWorker =
  | { type: 'ready' }
  | { type: 'progress'; id: number; step: number; numSteps: number; timestep: number; cache?: StepCache }
  | { type: 'done'; id: number; result: unknown; cacheSummary: unknown }
  | ({ type: 'failed'; id: number | null } & WireError)
  | { type: 'memoryStats'; id: number; stats: unknown };

/** An error as it crosses: its class name, message and own primitive fields (step, tensor, module, ...). */
export interface WireError {
  readonly name: string;
  readonly message: string;
  readonly fields: Record<string, string | number | boolean | null>;
}

/** The error classes a caller catches by class; others come back as an Error with the name. */
const ERROR_CLASSES: Record<string, { prototype: Error }> = { NonFiniteError, Float16OverflowError, TypeError, RangeError };

export function errorToWire(e: unknown): WireError {
  const err = e instanceof Error ? e : new Error(String(e));
  const fields: WireError['fields'] = {};
  for (const [key, value] of Object.entries(err)) {
    if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) fields[key] = value as string | number | boolean | null;
  }
  return { name: err.name, message: err.message, fields };
}

export function errorFromWire(w: WireError): Error {
  const err = Object.assign(new Error(w.message), w.fields, { name: w.name });
  const cls = ERROR_CLASSES[w.name];
  if (cls) Object.setPrototypeOf(err, cls.prototype);
  return err;
}
