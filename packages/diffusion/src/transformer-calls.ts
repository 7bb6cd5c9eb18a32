// Every pipeline says, before each transformer call of generate(), which step and CFG branch the
// call computes: to the listeners of its onTransformerCall (the worker host's abort check, tests,
// tools) and to the cache engine enabled on the transformer it runs, which decides from that
// whether to compute or reuse. One class does both, so no family can tell one and forget the other.
import { cacheHandleOf, type CfgBranch } from '@ditcache/core';
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

/** A pipeline's onTransformerCall listeners, and the announcement of each call to them and to the cache engine. */
export class TransformerCallAnnouncer<Call extends PipelineTransformerCall> {
  private readonly listeners = new Set<(call: Call) => void>();

  /** Adds a listener; returns the function that removes it (what a pipeline's onTransformerCall returns). */
  subscribe(listener: (call: Call) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Before `transformer` runs `call`: tells the listeners, then the cache engine enabled on it, if any. */
  announce(transformer: object, call: Call): void {
    for (const listener of this.listeners) listener(call);
    cacheHandleOf(transformer)?.beginCall({ step: call.step, branch: call.branch });
  }
}
