// float16 has float32's precision budget but not its range: activations beyond 65504 become
// Inf, the next norm turns them into NaN, and the VAE writes a black image. diffusers clips
// FLUX's block outputs to the float16 range; past that, a model computing in float16 checks
// each block's output once (one reduction) and stops with an error that says where it
// overflowed and to compute in bfloat16, which has float32's range.
import { Tensor, clamp, meanAbs } from '@ditcache/cuda-runtime';

import { checkFiniteLatents } from './non-finite.js';

/** The largest finite float16 value. */
export const FLOAT16_MAX = 65504;

/** A float16 computation whose activations left float16's range (Inf or NaN). */
export class Float16OverflowError extends RangeError {
  /** Where the non-finite values came out, in diffusers' module names (e.g. 'single_transformer_blocks.3'). */
  readonly module: string;
  /** The denoising step (0-based) and the run's step count, when a pipeline knows them. */
  readonly step: number | null;
  readonly numSteps: number | null;

  constructor(module: string, at: { step: number; numSteps: number } | null = null) {
    const where = at ? `at step ${at.step + 1} of ${at.numSteps}, ` : '';
    super(
      `float16 overflow ${where}in ${module}: its output has values beyond float16's range (+-${FLOAT16_MAX}) or NaN, ` +
        "which would give a black image; compute in bfloat16 instead (dtype: 'bfloat16', or --dtype bfloat16), which has float32's range",
    );
    this.name = 'Float16OverflowError';
    this.module = module;
    this.step = at?.step ?? null;
    this.numSteps = at?.numSteps ?? null;
  }

  /** The same error with the denoising step it happened in (a pipeline adds it; the model does not know it). */
  atStep(step: number, numSteps: number): Float16OverflowError {
    return new Float16OverflowError(this.module, { step, numSteps });
  }
}

/**
 * Throws a Float16OverflowError naming `module` when a float16 tensor of `outputs` holds an Inf
 * or a NaN. Tensors of other dtypes are not looked at, so float32 and bfloat16 runs pay nothing.
 */
export function checkFloat16Range(module: string, ...outputs: Tensor[]): void {
  for (const t of outputs) {
    // meanAbs reduces in float64: finite for any finite float16 tensor, Inf or NaN otherwise.
    if (t.dtype === 'float16' && !Number.isFinite(meanAbs(t))) throw new Float16OverflowError(module);
  }
}

/** diffusers' `x.clip(-65504, 65504)` of float16 block outputs: a new tensor for float16, `x` itself otherwise. */
export function clipToFloat16Range(x: Tensor): Tensor {
  return x.dtype === 'float16' ? clamp(x, -FLOAT16_MAX, FLOAT16_MAX) : x;
}

/**
 * Runs one denoising step's work; a Float16OverflowError from the model comes out with the step
 * added, so the message says when as well as where. When the work returns a tensor (the new
 * latents), it is checked for NaN / Inf with one reduction (checkFiniteLatents): a NonFiniteError
 * naming the step stops the run instead of a black image.
 */
export function inDenoisingStep<T>(step: number, numSteps: number, work: () => T): T {
  let result: T;
  try {
    result = work();
  } catch (e) {
    if (e instanceof Float16OverflowError && e.step === null) throw e.atStep(step, numSteps);
    throw e;
  }
  if (result instanceof Tensor) checkFiniteLatents(result, step, numSteps);
  return result;
}
