// What `ditcache tune` searches for the 'dbprune' policy. Its residual-diff threshold is the
// monotone knob, as DBCache's: a higher one prunes more blocks, faster and less faithful. Around
// it, the structures that change which blocks may be pruned and how their threshold moves: the
// fixed threshold with Fn 1 / Bn 0, the same with the last block kept, and the dynamic threshold
// (raised toward the step's first diffs, capped at twice the knob).
// cache-dit's loader takes the same keys with `cache_type: DBPrune`, which ditcache reads as
// this policy, so best.yaml is written that way and serves both.
import { THRESHOLD_KNOB, tuningWarmup } from './dbcache-tuning.js';
import type { PolicyTuning, TuningRun, TuningVariant } from './tuning.js';

function variants(run: TuningRun): TuningVariant[] {
  const base = { policy: 'dbprune', Fn_compute_blocks: 1, Bn_compute_blocks: 0, max_warmup_steps: tuningWarmup(run) };
  return [
    { name: 'F1B0', config: base, knob: THRESHOLD_KNOB },
    { name: 'F1B1', config: { ...base, Bn_compute_blocks: 1 }, knob: THRESHOLD_KNOB },
    { name: 'F1B0-dynamic', config: { ...base, enable_dynamic_prune_threshold: true }, knob: THRESHOLD_KNOB },
  ];
}

/** The config with its policy named as cache-dit's loader names it. */
function cacheDitForm(config: Readonly<Record<string, unknown>>): Readonly<Record<string, unknown>> {
  const { policy: _policy, ...rest } = config;
  return { cache_type: 'DBPrune', ...rest };
}

export const DBPRUNE_TUNING: PolicyTuning = { variants, cacheDitForm };
