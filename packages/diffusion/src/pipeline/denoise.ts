// Every family's denoising loop had the same frame written out around its own prediction: run
// the step in inDenoisingStep (the step added to a float16 overflow, the new latents checked for
// NaN / Inf) inside tidy, free the latents the step consumed, tell the per-step callback. denoise
// owns that frame once, so a family writes only what differs: its prediction (CFG branches,
// experts, batched CFG) and the scheduler step.
import { tidy, type Tensor } from '@ditcache/cuda-runtime';

import { inDenoisingStep } from './float16.js';
import type { PipelineStepEnd } from './transformer-calls.js';

export interface DenoiseOptions<End extends PipelineStepEnd = PipelineStepEnd> {
  numSteps: number;
  /** The schedule's timesteps (0..1000): step `i` runs at `timesteps[i]`. */
  timesteps: ArrayLike<number>;
  /** The initial latents. denoise takes them over: each step's input latents are disposed once the step has made the next ones. */
  latents: Tensor;
  /**
   * One denoising step: the prediction at `timestep` from `latents` and the scheduler step, which
   * returns the next latents. It runs in tidy (only the returned tensor outlives it) inside
   * inDenoisingStep, so a Float16OverflowError names the step and NaN / Inf in the returned
   * latents stops the run with a NonFiniteError.
   */
  step: (step: number, latents: Tensor, timestep: number) => Tensor;
  /** Called after each step with the new latents (valid during the call only); may throw to stop the run. */
  callback?: (end: End) => void;
  /** The record the callback gets, for a family whose records say more (Wan's expert); default the PipelineStepEnd itself. */
  stepEnd?: (end: PipelineStepEnd) => End;
}

/**
 * Runs `numSteps` denoising steps from `latents` and returns the final latents. When a step or the
 * callback throws, the latents held at that point are not disposed here: they belong to the
 * caller's tensor scope, as every other tensor of the run does.
 */
export function denoise<End extends PipelineStepEnd = PipelineStepEnd>(opts: DenoiseOptions<End>): Tensor {
  const { numSteps, timesteps, callback, stepEnd } = opts;
  let latents = opts.latents;
  for (let step = 0; step < numSteps; ++step) {
    const timestep = timesteps[step];
    const input = latents;
    const next = inDenoisingStep(step, numSteps, () => tidy(() => opts.step(step, input, timestep)));
    latents.dispose();
    latents = next;
    if (callback) {
      const end: PipelineStepEnd = { step, numSteps, timestep, latents };
      callback(stepEnd ? stepEnd(end) : (end as End));
    }
  }
  return latents;
}
