// Turns what a MagCache calibration run recorded (`policy: magcache, calibrate: true`; the ratios
// are in the summary, per cache context and branch) into a cache config that uses them, so a
// model's ratios go from one run to the next without copying numbers by hand.
import { MAGCACHE_POLICY } from './magcache-policy.js';
import type { BranchStats, CacheSummary } from './stats.js';

export interface MagCacheCalibratedBranch {
  /** How the pipeline announced the branch ('cond', 'uncond', 'batched'), else its role. */
  readonly branch: string;
  /** One ratio per step of the run, the first 1. */
  readonly magRatios: readonly number[];
}

export interface MagCacheCalibratedContext {
  readonly name: string;
  readonly branches: readonly MagCacheCalibratedBranch[];
}

/** The ratios each context and branch of a calibration run recorded; throws if the run did not calibrate. */
export function magCacheCalibration(summary: CacheSummary): MagCacheCalibratedContext[] {
  const contexts = summary.contexts.map((c) => ({
    name: c.name,
    branches: c.branches.flatMap((b) => {
      const magRatios = calibratedRatios(b);
      return magRatios ? [{ branch: b.announcedAs ?? b.role, magRatios }] : [];
    }),
  }));
  const empty = contexts.find((c) => c.branches.length === 0);
  if (contexts.length === 0 || empty) {
    const why = empty ? `cache context ${empty.name} recorded none` : 'no cache context ran';
    throw new Error(`no MagCache calibration in this summary (${why}): run with policy 'magcache' and calibrate: true`);
  }
  return contexts;
}

/**
 * The step-by-step mean of the ratios several calibration runs recorded (one per prompt, say), so
 * that a config fits the prompts together rather than one of them; the runs must have the same
 * contexts, branches and steps.
 */
export function meanMagCacheCalibration(runs: readonly (readonly MagCacheCalibratedContext[])[]): MagCacheCalibratedContext[] {
  if (runs.length === 0) throw new RangeError('meanMagCacheCalibration: no calibration runs to average');
  const [first] = runs;
  const shape = (run: readonly MagCacheCalibratedContext[]) =>
    run.map((c) => `${c.name}: ${c.branches.map((b) => `${b.branch} x${b.magRatios.length}`).join(', ')}`).join('; ');
  const unlike = runs.find((run) => shape(run) !== shape(first));
  if (unlike) throw new RangeError(`meanMagCacheCalibration: the runs recorded different contexts or steps (${shape(first)} vs ${shape(unlike)})`);
  return first.map((context, c) => ({
    name: context.name,
    branches: context.branches.map((branch, b) => ({
      branch: branch.branch,
      magRatios: branch.magRatios.map((_, step) => runs.reduce((sum, run) => sum + run[c].branches[b].magRatios[step], 0) / runs.length),
    })),
  }));
}

/**
 * A cache config using calibrated ratios: the conditional branch's of each context (a batched
 * call's, else the only branch's), as diffusers advises for sequential CFG; one context gives
 * `mag_ratios`, several give one params_modifiers entry each.
 */
export function magCacheConfigFromCalibration(contexts: readonly MagCacheCalibratedContext[]): Record<string, unknown> {
  const ratios = contexts.map((c) => {
    const chosen = c.branches.find((b) => b.branch === 'cond' || b.branch === 'batched') ?? c.branches.find((b) => b.branch === 'main') ?? c.branches[0];
    if (!chosen) throw new Error(`cache context ${c.name} has no calibrated branch`);
    return [...chosen.magRatios];
  });
  if (ratios.length === 1) return { policy: MAGCACHE_POLICY, mag_ratios: ratios[0] };
  return { policy: MAGCACHE_POLICY, params_modifiers: ratios.map((r) => ({ mag_ratios: r })) };
}

function calibratedRatios(b: BranchStats): number[] | undefined {
  const r = b.report?.magRatios;
  return Array.isArray(r) && r.length > 0 ? (r as number[]) : undefined;
}
