import { describe, expect, it } from 'vitest';

import { CACHE_DELEGATE, CacheConfigError, disableCache, enableCache, strify, summary, type CacheDelegate, type CacheSummary } from '../src/index.js';

/** A pipeline whose model runs elsewhere: it records what the one-line API forwards. */
function remotePipeline() {
  const seen: { enabled: unknown[]; disabled: number } = { enabled: [], disabled: 0 };
  let config: unknown;
  const last: CacheSummary = { contexts: [], cachedSteps: 7, computedBlocks: 30, totalBlocks: 60, flopsSkippedFraction: 0.5, markdown: 'remote stats' };
  const delegate: CacheDelegate = {
    enableCache(c) {
      seen.enabled.push(c);
      config = c ?? {};
    },
    disableCache() {
      seen.disabled++;
      const was = config !== undefined;
      config = undefined;
      return was;
    },
    cacheConfig: () => config as never,
    cacheSummary: () => (config === undefined ? undefined : last),
  };
  return { pipe: { [CACHE_DELEGATE]: delegate }, seen };
}

describe('pipelines that run elsewhere (CacheDelegate)', () => {
  it('get the config checked here and forwarded; stats and tags come from the remote run', () => {
    const { pipe, seen } = remotePipeline();
    enableCache(pipe, { Fn_compute_blocks: 1, residual_diff_threshold: 0.2 });
    expect(seen.enabled).toEqual([{ Fn_compute_blocks: 1, residual_diff_threshold: 0.2 }]);
    const printed: string[] = [];
    expect(summary(pipe, { print: (m) => printed.push(m) }).cachedSteps).toBe(7);
    expect(printed).toEqual(['remote stats']);
    expect(strify(pipe)).toMatch(/^DBCache_F1B0_.*_R0.2_.*_S7$/);
    expect(disableCache(pipe)).toBe(true);
    expect(disableCache(pipe)).toBe(false);
    expect(summary(pipe, { print: false }).cachedSteps).toBe(0);
  });

  it('a bad config fails at once, before anything is sent', () => {
    const { pipe, seen } = remotePipeline();
    expect(() => enableCache(pipe, { Fn_compute_block: 1 } as never)).toThrow(CacheConfigError);
    expect(seen.enabled).toEqual([]);
  });
});
