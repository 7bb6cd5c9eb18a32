// Every pipeline runs each transformer call of generate() through one method that says which step
// and CFG branch the call computes: first to the listeners of its onTransformerCall (the worker
// host's abort check, tests, tools), then to the cache engine enabled on the transformer, for the
// duration of the call (runTransformerCall, diffusers' cache_context), which decides from that
// whether to compute or reuse. One class does both, so no family can tell one and forget the other.
import { runTransformerCall, type CfgBranch } from '@ditcache/core';
import type { Tensor } from '@ditcache/cuda-runtime';

/** What onTransformerCall listeners are told before each transformer call of generate(). */
export interface PipelineTransformerCall<Branch extends CfgBranch = CfgBranch> {
  /** Denoising step, 0-based; the calls of one CFG step share it. */
  step: number;
  numSteps: number;
  /** The scheduler's timestep of this step (0..1000). */
  timestep: number;
  /** 'cond' and 'uncond' for separate CFG calls (the prompt first), 'batched' for one call on [uncond, cond]. */
  branch: Branch;
}

/** What a pipeline's per-step callback gets after each scheduler step. */
export interface PipelineStepEnd {
  step: number;
  numSteps: number;
  timestep: number;
  /** The latents after this step, as the pipeline holds them; valid during the callback only (clone to keep). */
  latents: Tensor;
}

/** A pipeline's onTransformerCall listeners, and each transformer call run with its description told to them and to the cache engine. */
export class TransformerCallAnnouncer<Call extends PipelineTransformerCall> {
  private readonly listeners = new Set<(call: Call) => void>();

  /** Adds a listener; returns the function that removes it (what a pipeline's onTransformerCall returns). */
  subscribe(listener: (call: Call) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Runs `forward`, the call `call` describes on `transformer`: tells the listeners first (one
   * may throw to stop the run, as the worker's abort check does), then runs `forward` with the
   * call known to the cache engine enabled on `transformer`, if any. Returns what `forward` returns.
   */
  run<R>(transformer: object, call: Call, forward: () => R): R {
    for (const listener of this.listeners) listener(call);
    const { step, numSteps, branch, timestep } = call;
    return runTransformerCall(transformer, { step, numSteps, branch, timestep }, forward);
  }
}
