// What every family's pipeline class offers the code that runs pipelines it does not know: the
// worker host (RemotePipeline's other end) loads a class by name and drives it through this, and
// tools and the cache engine's callers reach any family the same way. Stated once here, each
// pipeline `implements` it, so a family that drifts from it fails to compile instead of failing
// in a worker at run time.
import type { ComputeDtype } from '../io/weights.js';
import type { PipelineStepEnd, PipelineTransformerCall } from './transformer-calls.js';

/** What every generate request may carry: the per-step callback (the worker host's progress and abort check). */
export interface DiffusionRequest<End extends PipelineStepEnd = PipelineStepEnd> {
  /** Called after each scheduler step; may throw to stop the run. */
  callback?: (end: End) => void;
}

/** A family's pipeline: generate, the transformer-call announcements, its compute dtype, dispose. */
export interface DiffusionPipeline<Request, Result, Call extends PipelineTransformerCall = PipelineTransformerCall> extends Disposable {
  /** Runs the sampler synchronously; the caller owns (and disposes) the returned tensors. */
  generate(request: Request): Result;
  /**
   * Registers `listener` to be told each transformer call of generate() before it runs (a
   * TransformerCallAnnouncer's subscribe); it may throw to stop the run. Returns the function
   * that unregisters it.
   */
  onTransformerCall(listener: (call: Call) => void): () => void;
  /** What the pipeline computes in (diffusers' torch_dtype). */
  readonly dtype: ComputeDtype;
  /** Frees the pipeline's weights. */
  dispose(): void;
}

/** A pipeline class as the worker host loads it: `fromPretrained(folder, loadOptions)`. */
export interface DiffusionPipelineClass<Pipeline extends DiffusionPipeline<never, unknown> = DiffusionPipeline<never, unknown>, LoadOptions = unknown> {
  fromPretrained(dir: string, opts?: LoadOptions): Pipeline;
}
