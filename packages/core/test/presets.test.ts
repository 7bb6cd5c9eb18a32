import { describe, expect, it } from 'vitest';

import { CACHE_PRESETS, cachePreset, parseCacheConfig, resolveConfig } from '../src/index.js';

describe('cache presets', () => {
  it('are valid configs, ordered from careful to aggressive', () => {
    const thresholds = ['quality', 'balanced', 'fast'].map((n) => resolveConfig(parseCacheConfig(cachePreset(n)!).base).residualDiffThreshold);
    expect(thresholds).toEqual([...thresholds].sort((a, b) => a - b));
    for (const name of Object.keys(CACHE_PRESETS)) expect(() => parseCacheConfig(cachePreset(name)!)).not.toThrow();
    expect(resolveConfig(parseCacheConfig(cachePreset('fast')!).base).enableTaylorseer).toBe(true);
    expect(cachePreset('nonsense')).toBeUndefined();
    expect(cachePreset('toString')).toBeUndefined();
  });

  it('hand out copies', () => {
    const threshold = (CACHE_PRESETS.balanced as Record<string, unknown>).residual_diff_threshold;
    const p = cachePreset('balanced') as Record<string, unknown>;
    p.residual_diff_threshold = 9;
    expect((CACHE_PRESETS.balanced as Record<string, unknown>).residual_diff_threshold).toBe(threshold);
    expect(threshold).not.toBe(9);
  });
});
