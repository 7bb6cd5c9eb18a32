// The `dbprune` cache policy on Wan (video, 4 blocks, separate CFG branches) against cache-dit's
// Dynamic Block Prune: per config, the blocks cache-dit pruned at each step in each branch (cond
// is its non-CFG branch), the diffs it measured block by block, and its final latents
// (tools/cache-references-dbprune/dbprune.py made them, float32, with thresholds every diff stays
// 2% away from); diffs agree within 1e-5. The dynamic-threshold configs check that the CFG
// branch's threshold follows the cond branch's diffs, as cache-dit's does.
import { describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary, type BranchStats } from '@ditcache/core';
import { memoryStats } from '@ditcache/cuda-runtime';

import { relativeL2 } from './helpers.js';
import { wanTinyTraces } from './policy-traces.js';

type CacheDitBranch = 'non_cfg' | 'cfg';
interface DBPruneTrace {
  config: Record<string, unknown>;
  /** branch -> step -> the blocks pruned there. */
  pruned_blocks: Record<CacheDitBranch, Record<string, number[]>>;
  decisions: { branch: CacheDitBranch; step: number; block: number; pruned: boolean; diff: number | null }[];
}

/** step -> the diffs cache-dit measured there in `branch`, in block order. */
function diffsPerStep(trace: DBPruneTrace, branch: CacheDitBranch): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const d of trace.decisions) {
    if (d.branch !== branch || d.diff === null) continue;
    const step = String(d.step);
    out[step] = [...(out[step] ?? []), d.diff];
  }
  return out;
}

function expectBranch(got: BranchStats | undefined, trace: DBPruneTrace, branch: CacheDitBranch): void {
  expect(got?.prunedBlocks, `${branch} pruned blocks`).toEqual(trace.pruned_blocks[branch]);
  const diffs = got?.report?.blockDiffs as Record<string, number[]>;
  const want = diffsPerStep(trace, branch);
  expect(Object.keys(diffs).sort()).toEqual(Object.keys(want).sort());
  for (const [step, stepDiffs] of Object.entries(want)) {
    expect(diffs[step].length).toBe(stepDiffs.length);
    stepDiffs.forEach((d, i) => expect(Math.abs(diffs[step][i] - d), `${branch} step ${step} diff ${i}`).toBeLessThan(1e-5));
  }
}

describe('the dbprune policy on Wan (wan-tiny)', () => {
  const { meta, references: dbprune, traces, pipe, latentsOf } = wanTinyTraces<{ traces: Record<string, DBPruneTrace> }>('dbprune');

  it.each(Object.keys(dbprune.traces))("%s: cache-dit's pruned blocks per step and CFG branch, its diffs and latents", (name) => {
    const trace = dbprune.traces[name];
    const before = memoryStats();
    enableCache(pipe, { policy: 'dbprune', ...trace.config });
    const latents = latentsOf();
    const stats = summary(pipe, { print: false });
    const [context] = stats.contexts;
    expect(context.name).toBe('transformer.blocks');
    expectBranch(
      context.branches.find((b) => b.role === 'main'),
      trace,
      'non_cfg',
    );
    expectBranch(
      context.branches.find((b) => b.role === 'cfg'),
      trace,
      'cfg',
    );
    const pruned = Object.values(trace.pruned_blocks.non_cfg).flat().length + Object.values(trace.pruned_blocks.cfg).flat().length;
    expect(pruned).toBeGreaterThan(0);
    expect(stats.totalBlocks).toBe(meta.num_inference_steps * 2 * 4);
    expect(stats.computedBlocks).toBe(stats.totalBlocks - pruned);
    expect(relativeL2(latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });
});
