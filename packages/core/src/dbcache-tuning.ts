// What `ditcache tune` searches for the built-in 'dbcache' policy. The residual-diff threshold
// is its monotone knob: a higher one lets more steps reuse the Mn residual, faster and less
// faithful. Around it, the structures that change how a cached step is filled in: no forecast,
// TaylorSeer of order 1 or 2, and forecasts with runs of cached steps capped at 3 or 5 (a
// forecast drifts the further it reaches, so a cap lets a higher threshold keep the target; on
// the reference model the fastest grid configs above 50 dB were TaylorSeer 2 capped at 5), and
// cache-dit's other forecasters, FoCa and DMD, under that cap.
// Fn 1 / Bn 0 is cache-dit's choice for FLUX-class models; the warmup is 2 steps in 28, as in
// bench's grid, whose Pareto front on the reference model it makes up.
import type { PolicyTuning, TuningKnob, TuningRun, TuningVariant } from './tuning.js';

/** cache-dit's defaults are 0.08; past 1 nearly every step after warmup is cached. */
export const THRESHOLD_KNOB: TuningKnob = { key: 'residual_diff_threshold', range: [0.02, 1], scale: 'log' };

/** Steps computed before any may be cached: 2 in 28, at least one. */
export function tuningWarmup(run: TuningRun): number {
  return Math.max(1, Math.round(run.steps / 14));
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
  return [
    { name: 'F1B0-T0', config: { ...base, ...taylorSeer(0) }, knob: THRESHOLD_KNOB },
    { name: 'F1B0-T1', config: { ...base, ...taylorSeer(1) }, knob: THRESHOLD_KNOB },
    { name: 'F1B0-T2', config: { ...base, ...taylorSeer(2) }, knob: THRESHOLD_KNOB },
    { name: 'F1B0-T1-MC3', config: { ...base, ...taylorSeer(1), max_continuous_cached_steps: 3 }, knob: THRESHOLD_KNOB },
    { name: 'F1B0-T2-MC5', config: { ...base, ...taylorSeer(2), max_continuous_cached_steps: 5 }, knob: THRESHOLD_KNOB },
    { name: 'F1B0-FoCa-MC5', config: { ...base, ...foca, max_continuous_cached_steps: 5 }, knob: THRESHOLD_KNOB },
    { name: 'F1B0-DMD-MC5', config: { ...base, ...dmd, max_continuous_cached_steps: 5 }, knob: THRESHOLD_KNOB },
  ];
}

export const DBCACHE_TUNING: PolicyTuning = {
  variants,
  // Its configs are written in cache-dit's keys already.
  cacheDitForm: (config) => config,
};
