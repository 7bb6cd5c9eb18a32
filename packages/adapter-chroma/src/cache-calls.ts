// How the cache engine is told ChromaPipeline's transformer calls: as cache-dit counts them.
// diffusers' ChromaPipeline names no cache context, so cache-dit places each call by its position
// in the run: with separate CFG (enable_separate_cfg, which defaults to the Chroma adapter's True)
// call k is step floor(k / 2), the CFG branch when k is odd (even with cfg_compute_first); without
// it, every call is a step of its own. With CFG on and separate CFG that is exactly the truth
// (cond, then uncond, per step); in the other cases (guidance 1 pairs consecutive steps; no
// separate CFG makes 2 steps of each CFG step) it is what cache-dit's stats say, which the engine
// must reproduce. The pipeline's own listeners are told the truth.
import { cacheHandleOf, type CfgBranch, type TransformerCallInfo } from '@ditcache/core';

/** The call infos the cache engine gets for the calls of one generate run, in order. */
export class CacheDitCallCounter {
  private calls = 0;

  constructor(
    /** The transformer the engine may be enabled on. */
    private readonly transformer: object,
    /** Transformer calls of the whole run (steps x 1 or 2). */
    private readonly totalCalls: number,
  ) {}

  /** The next call as cache-dit sees it. */
  next(): TransformerCallInfo {
    const k = this.calls++;
    if (this.separateCfg()) {
      const branch: CfgBranch = k % 2 === 0 ? 'cond' : 'uncond';
      return { step: Math.floor(k / 2), numSteps: Math.ceil(this.totalCalls / 2), branch };
    }
    return { step: k, numSteps: this.totalCalls, branch: 'cond' };
  }

  /** Whether the engine enabled on the transformer keeps a separate CFG state (true without an engine: then nothing reads it). */
  private separateCfg(): boolean {
    const contexts = cacheHandleOf(this.transformer)?.contexts ?? [];
    const separate = contexts.map((c) => c.separateCfg);
    if (separate.some((s) => s !== separate[0])) {
      throw new TypeError('ChromaPipeline: enable_separate_cfg must be the same for both cache contexts (cache-dit counts the calls of one pipeline one way)');
    }
    return separate[0] ?? true;
  }
}
