// What `ditcache tune` searches for the built-in 'dbcache' policy, in two kinds of variants.
//
// Dynamic: the residual-diff threshold is the monotone knob: a higher one lets more steps reuse
// the Mn residual, faster and less faithful. Around it, the structures that change how a cached
// step is filled in: no forecast, TaylorSeer of order 1 or 2, and forecasts with runs of cached
// steps capped at 3 or 5 (a forecast drifts the further it reaches, so a cap lets a higher
// threshold keep the target; on the reference model the fastest grid configs above 50 dB were
// TaylorSeer 2 capped at 5), and cache-dit's other forecasters, FoCa and DMD, under that cap.
// Fn 1 / Bn 0 is cache-dit's choice for FLUX-class models; the warmup is 2 steps in 28, as in
// bench's grid, whose Pareto front on the reference model it makes up.
//
// Periodic: threshold 1 caches every step the cap allows, so max_continuous_cached_steps alone
// decides which steps are computed: after the warmup, runs of `cap` cached steps, each ended by a
// computed one, spread evenly over the run; the cap is the knob. On the reference model this was
// the fastest structure at a given fidelity (a bench grid: 26 of 28 steps cached at 37.8 dB,
// where the dynamic threshold kept 38 dB with 22-23 cached), because where the computed steps
// sit decides how far a forecast must reach. The warmup is 1 step at every run length: the cap
// places all the other computed steps, and spreads more of them over a longer run, so the warmup
// only has to give the first step, which nothing can be forecast from; a second step right
// after it costs a whole step and lets the forecast see little more (at 28 steps, warmup 2
// lost 2 dB against warmup 1 at the same work). The cached steps are forecast, by TaylorSeer of
// order 1 or 2 or by FoCa: reusing the last residual as it is over such long runs lost 3-9 dB
// against TaylorSeer 1 at the same work there (caps 9 and 13).
import type { PolicyTuning, TuningKnob, TuningRun, TuningSteps, TuningVariant } from './tuning.js';

/** cache-dit's defaults are 0.08; past 1 nearly every step after warmup is cached. */
export const THRESHOLD_KNOB: TuningKnob = { key: 'residual_diff_threshold', range: [0.02, 1], scale: 'log' };

/** Steps computed before any may be cached: 2 in 28, at least one. */
export function tuningWarmup(run: TuningRun): number {
  return Math.max(1, Math.round(run.steps / 14));
}

/** The one warmup step of the periodic variants. */
const PERIODIC_WARMUP = 1;

/**
 * How many of a run's steps a periodic config computes: the warmup, then one per run of `cap`
 * cached steps. Core's decision counts runs as cache-dit does, whose counter makes every run
 * after the first at least 2 steps long.
 */
function periodicComputedSteps(steps: number, warmup: number, cap: number): number {
  let computed = warmup;
  for (let step = warmup + cap; step < steps; step += Math.max(cap, 2) + 1) ++computed;
  return computed;
}

/**
 * The periodic variants' knob: for each count of computed steps a cap can give, the smallest cap
 * that gives it (the most even spread of that many), from the most computed to only the warmup.
 * Caps that compute as many steps as a smaller one cost the same and place the computed steps
 * less evenly, so the bisection would spend evaluations on them for no speed.
 */
function periodicCapKnob(run: TuningRun): TuningSteps | undefined {
  const caps: number[] = [];
  let fewest = Number.POSITIVE_INFINITY;
  for (let cap = 1; cap <= run.steps - PERIODIC_WARMUP; ++cap) {
    const computed = periodicComputedSteps(run.steps, PERIODIC_WARMUP, cap);
    if (computed < fewest) caps.push(cap);
    fewest = Math.min(fewest, computed);
  }
  return caps.length === 0 ? undefined : { key: 'max_continuous_cached_steps', values: caps };
}

function variants(run: TuningRun): TuningVariant[] {
  const base = { Fn_compute_blocks: 1, Bn_compute_blocks: 0, max_warmup_steps: tuningWarmup(run) };
  // cache-dit's loader turns TaylorSeer on only by its enable key, so the key is always written.
  const taylorSeer = (order: number) => (order === 0 ? { enable_taylorseer: false } : { enable_taylorseer: true, taylorseer_order: order });
  // FoCa and DMD by cache-dit's flat switches: its loader turns a calibrator on by these (not by
  // calibrator_type), and core reads them as the same calibrator; the encoder stream's forecast
  // is left at the defaults, which the two loaders share.
  const foca = { enable_foca: true };
  const dmd = { enable_dmd: true };
  const periodic = { Fn_compute_blocks: 1, Bn_compute_blocks: 0, max_warmup_steps: PERIODIC_WARMUP, residual_diff_threshold: 1 };
  const capKnob = periodicCapKnob(run);
  // A run of the warmup step alone has no step to cache.
  const periodicVariants: TuningVariant[] = capKnob
    ? [
        { name: 'F1B0-periodic-T1', config: { ...periodic, ...taylorSeer(1) }, knob: capKnob },
        { name: 'F1B0-periodic-T2', config: { ...periodic, ...taylorSeer(2) }, knob: capKnob },
        { name: 'F1B0-periodic-FoCa', config: { ...periodic, ...foca }, knob: capKnob },
      ]
    : [];
  return [
    { name: 'F1B0-T0', config: { ...base, ...taylorSeer(0) }, knob: THRESHOLD_KNOB },
    { name: 'F1B0-T1', config: { ...base, ...taylorSeer(1) }, knob: THRESHOLD_KNOB },
    { name: 'F1B0-T2', config: { ...base, ...taylorSeer(2) }, knob: THRESHOLD_KNOB },
    { name: 'F1B0-T1-MC3', config: { ...base, ...taylorSeer(1), max_continuous_cached_steps: 3 }, knob: THRESHOLD_KNOB },
    { name: 'F1B0-T2-MC5', config: { ...base, ...taylorSeer(2), max_continuous_cached_steps: 5 }, knob: THRESHOLD_KNOB },
    { name: 'F1B0-FoCa-MC5', config: { ...base, ...foca, max_continuous_cached_steps: 5 }, knob: THRESHOLD_KNOB },
    { name: 'F1B0-DMD-MC5', config: { ...base, ...dmd, max_continuous_cached_steps: 5 }, knob: THRESHOLD_KNOB },
    ...periodicVariants,
  ];
}

export const DBCACHE_TUNING: PolicyTuning = {
  variants,
  // Its configs are written in cache-dit's keys already.
  cacheDitForm: (config) => config,
};
