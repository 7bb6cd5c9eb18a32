// NaN or Inf in a weight, an input or the latents otherwise runs to the end and writes a black image with exit status 0: one float64 reduction of the latents per denoising step (and of the inputs once) stops the run where it went wrong.
import { meanAbs, type Tensor } from '@ditcache/cuda-runtime';

/** A denoising run met NaN or Inf: in an input before the first step, or in the latents after a step. */
export class NonFiniteError extends RangeError {
  /** What held the values: an input's name as in the `--inputs` file ('latents_in', 'prompt_embeds', ...) or 'latents'. */
  readonly tensor: string;
  /** The denoising step (0-based): the one about to run ('before') or the one that made the latents ('after'). */
  readonly step: number;
  readonly numSteps: number;
  readonly when: 'before' | 'after';

  constructor(tensor: string, at: { step: number; numSteps: number; when: 'before' | 'after' }) {
    const what = at.when === 'before' ? `${tensor}, an input,` : `the ${tensor}`;
    const why =
      at.when === 'before'
        ? 'the pipeline was given non-finite values'
        : "the transformer's output at that step was non-finite (the latents going in were finite): look for NaN or Inf in the model's weights";
    super(`non-finite values (NaN or Inf) in ${what} ${at.when} step ${at.step + 1} of ${at.numSteps}; ${why}`);
    this.name = 'NonFiniteError';
    this.tensor = tensor;
    this.step = at.step;
    this.numSteps = at.numSteps;
    this.when = at.when;
  }
}

/** `DITCACHE_CHECK_FINITE=0` turns the checks off (read at every check, so a test or a worker can set it). */
function enabled(): boolean {
  return process.env.DITCACHE_CHECK_FINITE !== '0';
}

/**
 * Whether every element of `t` is finite, in one reduction: meanAbs sums |x| in float64, which no
 * float32 or 16-bit values can overflow, so the mean is non-finite exactly when an element is.
 */
export function isFiniteTensor(t: Tensor): boolean {
  return t.size === 0 || Number.isFinite(meanAbs(t));
}

/**
 * Checks a pipeline's inputs once, before its first step: a NonFiniteError names the first of
 * `inputs` (name -> tensor; absent ones skipped) that holds NaN or Inf.
 */
export function checkFiniteInputs(inputs: Readonly<Record<string, Tensor | null | undefined>>, numSteps: number): void {
  if (!enabled()) return;
  for (const [name, t] of Object.entries(inputs)) {
    if (t && !isFiniteTensor(t)) throw new NonFiniteError(name, { step: 0, numSteps, when: 'before' });
  }
}

/**
 * Checks the latents a denoising step made (inDenoisingStep calls it on what the step returns).
 * On NaN or Inf it disposes them, since the caller never gets them, and throws a NonFiniteError.
 */
export function checkFiniteLatents(latents: Tensor, step: number, numSteps: number): void {
  if (!enabled() || isFiniteTensor(latents)) return;
  latents.dispose();
  throw new NonFiniteError('latents', { step, numSteps, when: 'after' });
}
