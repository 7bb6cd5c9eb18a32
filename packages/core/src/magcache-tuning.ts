// What `ditcache tune` searches for the 'magcache' policy. Its threshold is the monotone knob: a
// higher one lets the error the magnitude ratios predict grow further before a step is computed,
// so more steps reuse the residual. Around it, the caps on steps skipped in a row (2, 3 as
// diffusers' default, 4) and a shorter retention (0.1 of the steps always computed at the start
// instead of 0.2): both bound how far a skipped step strays. The ratios are the model's, so a
// calibration run on the tuning prompts comes first and its mean ratios go into every config.
import { magCacheCalibration, magCacheConfigFromCalibration, meanMagCacheCalibration } from './magcache-calibration.js';
import { MAGCACHE_POLICY } from './magcache-policy.js';
import type { PolicyTuning, TuningKnob, TuningPreparation, TuningVariant } from './tuning.js';

/** diffusers' default is 0.06; past 1 the skip cap alone decides. */
const THRESHOLD_KNOB: TuningKnob = { key: 'threshold', range: [0.01, 1], scale: 'log' };

function variants(): TuningVariant[] {
  const variant = (maxSkipSteps: number, retentionRatio: number): TuningVariant => ({
    name: `K${maxSkipSteps}-R${retentionRatio}`,
    config: { policy: MAGCACHE_POLICY, max_skip_steps: maxSkipSteps, retention_ratio: retentionRatio },
    knob: THRESHOLD_KNOB,
  });
  return [variant(2, 0.2), variant(3, 0.2), variant(4, 0.2), variant(3, 0.1)];
}

/** A calibration run per tuning prompt; the configs get the ratios averaged over the prompts. */
function preparation(): TuningPreparation {
  return {
    config: { policy: MAGCACHE_POLICY, calibrate: true },
    prepared(summaries) {
      const { policy: _policy, ...ratios } = magCacheConfigFromCalibration(meanMagCacheCalibration(summaries.map(magCacheCalibration)));
      return ratios;
    },
  };
}

// cacheDitForm is absent: MagCache is diffusers', not cache-dit's.
export const MAGCACHE_TUNING: PolicyTuning = { variants, preparation };
