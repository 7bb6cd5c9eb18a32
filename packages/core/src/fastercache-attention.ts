// FasterCache's attention part for one self-attention site in one run: each call of the cond
// branch (or of a guidance-distilled model) is computed or, where the rules allow it, forecast
// from the site's last two outputs as t + (t − t₂)·w, a site returning several tensors forecast
// element by element; either way the output becomes the newest of the two kept. An uncond call
// is always computed and kept out of them, as diffusers keeps only the cond half of its batch.
import type { AttentionOutput } from './attention-sites.js';
import { attentionMayBeForecast, type TimestepRange } from './fastercache-rules.js';
import type { TensorOps } from './tensor-ops.js';
import type { CfgBranch } from './transformer-call.js';

/** The running call, as the site's forecast rule needs it. */
export interface AttentionCall {
  readonly pipelineStep: number;
  readonly branch: CfgBranch;
  /** The transformer's steps before this one in the run. */
  readonly iteration: number;
  readonly timestep: number;
  /** Whether the step's uncond prediction is rebuilt (diffusers: the batch was halved). */
  readonly uncondRebuilt: boolean;
}

export interface AttentionForecastRule {
  readonly blockSkipRange: number;
  readonly timestepSkipRange: TimestepRange;
  readonly weight: number;
  readonly isGuidanceDistilled: boolean;
}

export class AttentionForecaster<T> {
  /** The pipeline steps at which this site's output was forecast. */
  readonly forecastSteps: number[] = [];
  /** The site's last two kept outputs (copies the engine owns); the same list until two calls were kept. */
  private last: readonly T[] | undefined;
  private beforeLast: readonly T[] | undefined;
  /** Whether the site returns several tensors (then a forecast does too). */
  private returnsList = false;

  constructor(
    private readonly ops: TensorOps<T>,
    private readonly rule: AttentionForecastRule,
  ) {}

  run<O extends AttentionOutput<T>>(call: AttentionCall, compute: () => O): O {
    const r = this.rule;
    const keeps = call.branch === 'cond' || (r.isGuidanceDistilled && call.branch === 'batched');
    if (!keeps) return compute();
    const forecast =
      this.last !== undefined &&
      (r.isGuidanceDistilled || call.uncondRebuilt) &&
      attentionMayBeForecast(r.blockSkipRange, r.timestepSkipRange, call.iteration, call.timestep);
    let output: O;
    if (forecast) {
      const last = this.last as readonly T[];
      const beforeLast = this.beforeLast as readonly T[];
      const values = last.map((t, i) => this.extrapolate(beforeLast[i], t));
      output = (this.returnsList ? values : values[0]) as O;
      this.forecastSteps.push(call.pipelineStep);
    } else {
      output = compute();
    }
    this.returnsList = Array.isArray(output);
    this.keep(this.returnsList ? (output as readonly T[]) : [output as T]);
    return output;
  }

  clear(): void {
    if (this.beforeLast !== undefined && this.beforeLast !== this.last) this.releaseAll(this.beforeLast);
    if (this.last !== undefined) this.releaseAll(this.last);
    this.last = undefined;
    this.beforeLast = undefined;
  }

  /** t + (t − t₂)·w, as one new tensor. */
  private extrapolate(beforeLast: T, last: T): T {
    const step = this.ops.sub(last, beforeLast);
    const out = this.ops.addScaled(last, step, this.rule.weight);
    this.ops.release(step);
    return out;
  }

  private keep(outputs: readonly T[]): void {
    const copies = outputs.map((t) => this.ops.retain(this.ops.clone(t)));
    if (this.beforeLast !== undefined && this.beforeLast !== this.last) this.releaseAll(this.beforeLast);
    this.beforeLast = this.last ?? copies;
    this.last = copies;
  }

  private releaseAll(tensors: readonly T[]): void {
    for (const t of tensors) this.ops.release(t);
  }
}
