// The `dbprune` cache policy on FLUX (one chain of 2 double + 4 single blocks) against cache-dit's
// Dynamic Block Prune: per config, the blocks cache-dit pruned at each step, the diffs it measured
// block by block, and its final latents (tools/cache-references-dbprune/dbprune.py made them,
// float32, with thresholds every diff stays 2% away from); diffs agree within 1e-5.
import { describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary } from '@ditcache/core';
import { memoryStats } from '@ditcache/cuda-runtime';

import { relativeL2 } from './helpers.js';
import { fluxTinyTraces } from './policy-traces.js';

interface DBPruneTrace {
  config: Record<string, unknown>;
  /** branch -> step -> the blocks pruned there. */
  pruned_blocks: { non_cfg: Record<string, number[]> };
  decisions: { branch: string; step: number; block: number; pruned: boolean; diff: number | null }[];
}

/** step -> the diffs cache-dit measured there, in block order. */
function diffsPerStep(trace: DBPruneTrace, branch: string): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const d of trace.decisions) {
    if (d.branch !== branch || d.diff === null) continue;
    const step = String(d.step);
    out[step] = [...(out[step] ?? []), d.diff];
  }
  return out;
}

describe('the dbprune policy on FLUX (flux-tiny)', () => {
  const { meta, references: dbprune, traces, pipe, latentsOf } = fluxTinyTraces<{ traces: Record<string, DBPruneTrace> }>('dbprune');

  it.each(Object.keys(dbprune.traces))("%s: cache-dit's pruned blocks per step, its diffs and latents", (name) => {
    const trace = dbprune.traces[name];
    const before = memoryStats();
    enableCache(pipe, { policy: 'dbprune', ...trace.config });
    const latents = latentsOf();
    const stats = summary(pipe, { print: false });
    const [context] = stats.contexts;
    const [branch] = context.branches;
    expect(branch.prunedBlocks).toEqual(trace.pruned_blocks.non_cfg);
    const pruned = Object.values(trace.pruned_blocks.non_cfg).flat().length;
    expect(pruned).toBeGreaterThan(0);
    expect([...context.cachedSteps]).toEqual(
      Object.entries(trace.pruned_blocks.non_cfg)
        .filter(([, blocks]) => blocks.length > 0)
        .map(([step]) => Number(step)),
    );
    const got = branch.report?.blockDiffs as Record<string, number[]>;
    const want = diffsPerStep(trace, 'non_cfg');
    expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
    for (const [step, diffs] of Object.entries(want)) {
      expect(got[step].length).toBe(diffs.length);
      diffs.forEach((d, i) => expect(Math.abs(got[step][i] - d)).toBeLessThan(1e-5));
    }
    expect(stats.totalBlocks).toBe(meta.num_inference_steps * 6);
    expect(stats.computedBlocks).toBe(stats.totalBlocks - pruned);
    expect(stats.markdown).toContain('Pruned blocks per step');
    expect(relativeL2(latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });
});
