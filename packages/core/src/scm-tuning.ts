// What `ditcache tune` searches for the 'scm' policy. Its presets are an ordered knob (slow,
// medium, fast, ultra may cache ever more steps): under 'static' every 0 of the mask is cached,
// so the preset alone sets speed and fidelity; under 'dynamic' the residual-diff threshold
// gates the mask's 0 steps, so it is bisected under the most permissive preset.
// cache-dit names these presets only through its `steps_mask` helper; its loader takes the mask
// itself, so a tuned config is handed to cache-dit as DBCache with the preset's mask spelled out.
import { THRESHOLD_KNOB } from './dbcache-tuning.js';
import { SCM_MASKS, SCM_PRESETS, type ScmPreset } from './scm-masks.js';
import type { PolicyTuning, TuningRun, TuningVariant } from './tuning.js';

const PRESET_KNOB = { key: 'mask_policy', values: SCM_PRESETS };

function variants(run: TuningRun): TuningVariant[] {
  // Presets exist for some step counts only.
  if (SCM_PRESETS.some((preset) => SCM_MASKS[preset][run.steps] === undefined)) return [];
  const base = { policy: 'scm', Fn_compute_blocks: 1, Bn_compute_blocks: 0 };
  return [
    { name: 'static-T0', config: { ...base, steps_computation_policy: 'static', enable_taylorseer: false }, knob: PRESET_KNOB },
    { name: 'static-T1', config: { ...base, steps_computation_policy: 'static', enable_taylorseer: true, taylorseer_order: 1 }, knob: PRESET_KNOB },
    {
      name: 'dynamic-ultra-T1',
      config: { ...base, steps_computation_policy: 'dynamic', mask_policy: 'ultra', enable_taylorseer: true, taylorseer_order: 1 },
      knob: THRESHOLD_KNOB,
    },
  ];
}

function cacheDitForm(config: Readonly<Record<string, unknown>>, run: TuningRun): Readonly<Record<string, unknown>> | undefined {
  const { policy: _policy, mask_policy: preset = 'medium', ...rest } = config;
  const mask = SCM_MASKS[preset as ScmPreset]?.[run.steps];
  if (mask === undefined) return undefined;
  return { ...rest, steps_computation_mask: [...mask].map(Number) };
}

export const SCM_TUNING: PolicyTuning = { variants, cacheDitForm };
