// What every family's NaN / Inf tests do: poison one element of an input, and run a generate call
// that must stop with a NonFiniteError (returned for the test to check its tensor, step and message).
import { type Tensor, tensor } from '@ditcache/cuda-runtime';
import { NonFiniteError } from '@ditcache/diffusion';
import { expect } from 'vitest';

/** `t` with `value` at element `index` (a new float32 tensor). */
export function withValue(t: Tensor, index: number, value: number): Tensor {
  const data = t.toFloat32Array();
  data[index] = value;
  return tensor(data, t.shape);
}

/** The NonFiniteError `pipe.generate(opts)` throws; fails the test if it returns or throws anything else. */
export function nonFiniteFailure<Options>(pipe: { generate(opts: Options): { latents: Tensor } }, opts: Options): NonFiniteError {
  let caught: unknown;
  try {
    pipe.generate(opts).latents.dispose();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(NonFiniteError);
  return caught as NonFiniteError;
}
