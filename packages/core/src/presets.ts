// Named starting points for users who do not want to pick every setting. All use Fn = 1 and
// Bn = 0 (cache-dit's usual choice for FLUX-class models), so they fit any model with two or
// more blocks, and differ in how much change they tolerate before computing again.
import type { CacheConfigInput } from './config.js';

export const CACHE_PRESETS: Readonly<Record<string, Readonly<CacheConfigInput>>> = {
  /** cache-dit's own defaults (Fn 8, warmup 8, threshold 0.08): for models with more than 8 blocks. */
  'cache-dit': {},
  /** Small drift: caches only where the residual barely moves, never twice in a row. */
  quality: { Fn_compute_blocks: 1, Bn_compute_blocks: 0, max_warmup_steps: 4, residual_diff_threshold: 0.08, max_continuous_cached_steps: 1 },
  /** The usual trade: about a third of the steps cached on trained models. */
  balanced: { Fn_compute_blocks: 1, Bn_compute_blocks: 0, max_warmup_steps: 3, residual_diff_threshold: 0.16, max_continuous_cached_steps: 2 },
  /** Aggressive, with TaylorSeer forecasting the reused residual to keep quality. */
  fast: { Fn_compute_blocks: 1, Bn_compute_blocks: 0, max_warmup_steps: 2, residual_diff_threshold: 0.3, max_continuous_cached_steps: 3, taylorseer_order: 1 },
};

/** The preset's config, or undefined for an unknown name. */
export function cachePreset(name: string): CacheConfigInput | undefined {
  return Object.hasOwn(CACHE_PRESETS, name) ? { ...CACHE_PRESETS[name] } : undefined;
}
