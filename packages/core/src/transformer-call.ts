// The transformer call that is running, set around the call by whoever makes it (diffusers'
// cache_context): the one channel through which the cache contexts learn each call's step and branch.

/** Which classifier-free-guidance branch a transformer call computes. */
export type CfgBranch = 'cond' | 'uncond' | 'batched';

/** The branches a pipeline may name, in the order error messages list them. */
export const CFG_BRANCHES: readonly CfgBranch[] = ['cond', 'uncond', 'batched'];

/** What a pipeline says about the transformer call it runs. */
export interface TransformerCallInfo {
  /** The pipeline's step index (0-based) of this call; the calls of one CFG step share it. */
  readonly step: number;
  readonly branch: CfgBranch;
  /** Steps of the run, when the pipeline knows them. */
  readonly numSteps?: number;
  /** The scheduler's timestep of the step (0..1000 scale), when the pipeline knows it. */
  readonly timestep?: number;
}

/**
 * A running call as the contexts see it: announced by a pipeline, or a bare transformer call
 * of which only the timestep is known (read by the adapter's `timestepOf`).
 */
export type RunningCall = { readonly kind: 'announced'; readonly call: TransformerCallInfo } | { readonly kind: 'bare'; readonly timestep: number };

/**
 * The running call of one cache handle. `run` sets it for the duration of a callback and puts
 * back the one it replaced, even when the callback throws, so scopes nest; the callback runs
 * synchronously (a promise it returns outlives the scope).
 */
export class TransformerCallScope {
  private running: RunningCall | undefined;

  /** The innermost running call, or undefined outside every scope. */
  get current(): RunningCall | undefined {
    return this.running;
  }

  /** Runs `fn` as the transformer call a pipeline described. */
  run<R>(call: TransformerCallInfo, fn: () => R): R {
    return this.within({ kind: 'announced', call }, fn);
  }

  /** Runs `fn` as a bare transformer call at `timestep`. */
  runBare<R>(timestep: number, fn: () => R): R {
    return this.within({ kind: 'bare', timestep }, fn);
  }

  private within<R>(call: RunningCall, fn: () => R): R {
    const outer = this.running;
    this.running = call;
    try {
      return fn();
    } finally {
      this.running = outer;
    }
  }
}

/** Checks a call's fields; the message names the field and its valid values. */
export function checkCallInfo(call: TransformerCallInfo, where: string): void {
  const fail = (key: string, expected: string, got: unknown): never => {
    throw new TypeError(`${where}: ${key} must be ${expected}, got ${String(got)} (fields: step, branch, numSteps?, timestep?)`);
  };
  if (call === null || typeof call !== 'object') fail('the call', 'an object { step, branch, numSteps?, timestep? }', call);
  if (!Number.isInteger(call.step) || call.step < 0) fail('step', 'an integer >= 0', call.step);
  if (!CFG_BRANCHES.includes(call.branch)) fail('branch', `one of ${CFG_BRANCHES.join(', ')}`, call.branch);
  if (call.numSteps !== undefined && (!Number.isInteger(call.numSteps) || call.numSteps <= call.step)) {
    fail('numSteps', `an integer above step (${call.step})`, call.numSteps);
  }
  if (call.timestep !== undefined && !Number.isFinite(call.timestep)) fail('timestep', 'a finite number', call.timestep);
}
