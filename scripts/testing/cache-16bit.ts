// What every family's bfloat16 cache test checks against cache-dit's bf16 traces
// (tools/cache-references-16bit/): the same decisions wherever cache-dit's diff is clear of the
// threshold, and diffs that track cache-dit's within the family's tolerance. The families differ
// in their runs and tolerances (each measured and explained in its own test), not in these rules.
import { expect } from 'vitest';

import type { ContextStats } from '@ditcache/core';

/** The band: a decision is asserted where cache-dit's diff is farther than this (relative) from the threshold. */
export const NEAR_THRESHOLD = 0.01;

/** One context's (or CFG branch's) trace as cache-dit's tool writes it. */
export interface ContextTrace16 {
  source?: string;
  executed_steps?: number;
  cached_steps: number[];
  residual_diffs: Record<string, number>;
  residual_diffs_float64: Record<string, number>;
  cfg_cached_steps?: number[];
  cfg_residual_diffs?: Record<string, number>;
  cfg_residual_diffs_float64?: Record<string, number>;
}

/** One cache config's bf16 trace. */
export interface Trace16<Context extends ContextTrace16 = ContextTrace16> {
  config: Record<string, unknown> & { residual_diff_threshold: number };
  taylorseer_order: number | null;
  params_modifiers?: Record<string, unknown>[] | null;
  float32_trace: string;
  margin: number;
  latents_out_sensitivity?: number;
  residual_diffs_float64_sensitivity?: number;
  stats: Context[];
}

/** A branch's decisions and diffs: cache-dit's (`exact`: the float64 diff of its bf16 residuals) or ours. */
export interface Branch {
  cached: readonly number[];
  diffs: Readonly<Record<string, number>>;
  exact?: Readonly<Record<string, number>>;
}

/** cache-dit's branches of a context: the non-CFG one, then, with separate CFG, the CFG one. */
export function theirBranches(c: ContextTrace16, separateCfg: boolean): Branch[] {
  const first = { cached: c.cached_steps, diffs: c.residual_diffs, exact: c.residual_diffs_float64 };
  if (!separateCfg) return [first];
  return [first, { cached: c.cfg_cached_steps ?? [], diffs: c.cfg_residual_diffs ?? {}, exact: c.cfg_residual_diffs_float64 ?? {} }];
}

/** Our branches of a context, in the same order. */
export function ourBranches(c: ContextStats, separateCfg: boolean): Branch[] {
  const first = { cached: c.cachedSteps, diffs: c.residualDiffs };
  return separateCfg ? [first, { cached: c.cfgCachedSteps, diffs: c.cfgResidualDiffs }] : [first];
}

/** The config enableCache takes for a trace: its DBCache keys, TaylorSeer's order and ParamsModifiers when it has them. */
export function cacheConfigOf(trace: Trace16): Record<string, unknown> {
  return {
    ...trace.config,
    ...(trace.taylorseer_order ? { taylorseer_order: trace.taylorseer_order } : {}),
    ...(trace.params_modifiers ? { params_modifiers: trace.params_modifiers } : {}),
  };
}

/** The threshold context `i` compares with: its ParamsModifier's, or the base one. */
export function thresholdOf(trace: Trace16, i: number): number {
  const own = trace.params_modifiers?.[i]?.residual_diff_threshold;
  return typeof own === 'number' ? own : trace.config.residual_diff_threshold;
}

/**
 * Walks one branch's steps in order: wherever cache-dit compared a diff farther than
 * NEAR_THRESHOLD from the threshold, or decided without one (warmup, caps), we must decide alike.
 * At a step closer than that a different decision is allowed, and the runs part there (their
 * references differ from then on), so nothing after it is compared. Returns the first such step.
 */
export function expectSameDecisions(ours: Branch, theirs: Branch, threshold: number, steps: number, label: string): number | undefined {
  const oursCached = new Set(ours.cached);
  const theirsCached = new Set(theirs.cached);
  for (let step = 0; step < steps; step++) {
    const key = String(step);
    const exact = (theirs.exact ?? theirs.diffs)[key];
    const near = exact !== undefined && Math.abs(exact - threshold) / threshold <= NEAR_THRESHOLD;
    if (near && oursCached.has(step) !== theirsCached.has(step)) return step;
    expect(oursCached.has(step), `${label} step ${step}: cached (cache-dit's diff ${exact}, threshold ${threshold})`).toBe(theirsCached.has(step));
    expect(key in ours.diffs, `${label} step ${step}: compared with the threshold`).toBe(exact !== undefined);
  }
  return undefined;
}

/**
 * The same decisions over every step (the references keep every diff clear of the threshold, so
 * the runs never part), the same cached steps, and our diffs within `tolerance` of cache-dit's:
 * `exact` against the float64 diff of its bf16 residuals, `bf16` against its own bf16 diff.
 */
export function expectBranchMatches(
  ours: Branch,
  theirs: Branch,
  threshold: number,
  steps: number,
  label: string,
  tolerance: { exact: number; bf16: number },
): void {
  const parted = expectSameDecisions(ours, theirs, threshold, steps, label);
  expect(parted, `${label}: the runs part at step ${parted}`).toBeUndefined();
  expect([...ours.cached], label).toEqual(theirs.cached);
  for (const [step, exact] of Object.entries(theirs.exact ?? {})) {
    const diff = ours.diffs[step];
    expect(Math.abs(diff - exact) / exact, `${label} step ${step}: ours ${diff}, cache-dit's residuals ${exact}`).toBeLessThan(tolerance.exact);
    const rounded = theirs.diffs[step];
    expect(Math.abs(diff - rounded) / rounded, `${label} step ${step}: ours ${diff}, cache-dit's bf16 diff ${rounded}`).toBeLessThan(tolerance.bf16);
  }
}
