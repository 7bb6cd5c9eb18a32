// Named starting points for users who do not want to pick every setting. All use Fn = 1 and
// Bn = 0 (cache-dit's usual choice for FLUX-class models), so they fit any model with two or
// more blocks, and differ in how much change they tolerate before computing again and in how
// many steps they reuse in a row.
import type { CacheConfigInput } from './config.js';

export const CACHE_PRESETS: Readonly<Record<string, Readonly<CacheConfigInput>>> = {
  /** cache-dit's own defaults (Fn 8, warmup 8, threshold 0.08): for models with more than 8 blocks. */
  'cache-dit': {},
  // The three below were measured on models/flux-shapes (28 steps, Fn 1 = its first double-stream
  // block): its first block's residual moves 5-10% per step through most of the run and 15-30%
  // in the last steps. See that folder's README for the measurements.
  /** Small drift: about 40% of the steps cached, each reused at most twice in a row and forecast by TaylorSeer. */
  quality: {
    Fn_compute_blocks: 1,
    Bn_compute_blocks: 0,
    max_warmup_steps: 3,
    residual_diff_threshold: 0.1,
    max_continuous_cached_steps: 2,
    taylorseer_order: 1,
  },
  /** The usual trade: about 60% of the steps cached, runs of up to three. */
  balanced: {
    Fn_compute_blocks: 1,
    Bn_compute_blocks: 0,
    max_warmup_steps: 2,
    residual_diff_threshold: 0.2,
    max_continuous_cached_steps: 3,
    taylorseer_order: 1,
  },
  /** Aggressive: about 70% of the steps cached, runs of up to five, second-order TaylorSeer. */
  fast: { Fn_compute_blocks: 1, Bn_compute_blocks: 0, max_warmup_steps: 2, residual_diff_threshold: 0.3, max_continuous_cached_steps: 5, taylorseer_order: 2 },
};

/** The preset's config, or undefined for an unknown name. */
export function cachePreset(name: string): CacheConfigInput | undefined {
  return Object.hasOwn(CACHE_PRESETS, name) ? { ...CACHE_PRESETS[name] } : undefined;
}
