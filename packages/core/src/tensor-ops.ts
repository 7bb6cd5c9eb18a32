/**
 * The few tensor operations the cache engine needs, so it can run on any tensor type: the
 * native runtime's tensors in production, plain typed arrays in tests.
 *
 * Ownership: every tensor an operation returns is new and belongs to whoever called it. The
 * engine releases each tensor it created as soon as it stops holding it; tensors passed in by
 * the model's caller belong to the caller and are never released by the engine.
 */
export interface TensorOps<T> {
  /** a - b. */
  sub(a: T, b: T): T;
  /** a + b. */
  add(a: T, b: T): T;
  /** a * s. */
  scale(a: T, s: number): T;
  /** a + s * b (TaylorSeer's series terms), as one new tensor. */
  addScaled(a: T, b: T, s: number): T;
  /**
   * mean|a - b| / mean|a| over all elements, accumulated in float64: how far `b` moved from
   * the reference `a`. Infinity when `a` is all zeros and `b` is not; NaN when both are.
   */
  relL1(a: T, b: T): number;
  shape(a: T): readonly number[];
  clone(a: T): T;
  /**
   * Marks `a` as held by the engine beyond the current call: a runtime with automatic
   * disposal scopes must exclude it from them, since the engine releases it itself later.
   */
  retain(a: T): T;
  /** Frees `a` now. */
  release(a: T): void;
  /**
   * The values of `a` as float64, row-major, read to the host. Optional: only the DMD calibrator
   * needs it (its fit is a float64 eigendecomposition of a few snapshots).
   */
  toFloat64?(a: T): Float64Array;
  /**
   * A new tensor of `like`'s shape, dtype and device holding `values` rounded to that dtype (through
   * float32, as PyTorch casts float64), or undefined when a rounded value is not finite. Optional,
   * with `toFloat64`.
   */
  fromFloat64?(values: Float64Array, like: T): T | undefined;
  /**
   * The L2 norm of each vector along the last dimension of `a` (one per token), row-major, read
   * to the host. Optional: only MagCache's calibration needs it.
   */
  rowNorms?(a: T): Float64Array;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
