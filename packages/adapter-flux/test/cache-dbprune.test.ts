// The `dbprune` cache policy on FLUX (one chain of 2 double + 4 single blocks) against cache-dit's
// Dynamic Block Prune: per config, the blocks cache-dit pruned at each step, the diffs it measured
// block by block, and its final latents (tools/cache-references-dbprune/dbprune.py made them,
// float32, with thresholds every diff stays 2% away from); diffs agree within 1e-5.
import { readFileSync } from 'node:fs';

import { afterAll, describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary } from '@ditcache/core';
import { loadSafetensors, memoryStats, type Tensor } from '@ditcache/cuda-runtime';

import { FluxPipeline } from '../src/index.js';
import { goldens, localGoldens, relativeL2 } from './helpers.js';

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
  const meta = JSON.parse(readFileSync(`${goldens}/flux-tiny/meta.json`, 'utf-8')) as Record<string, number>;
  const dbprune = JSON.parse(readFileSync(`${localGoldens}/flux-tiny/cache_traces_dbprune.json`, 'utf-8')) as { traces: Record<string, DBPruneTrace> };
  const ref = loadSafetensors(`${goldens}/flux-tiny/pipeline.safetensors`);
  const traces = loadSafetensors(`${localGoldens}/flux-tiny/cache_traces_dbprune.safetensors`);
  const pipe = FluxPipeline.fromPretrained(`${goldens}/flux-tiny`);
  afterAll(() => {
    pipe.dispose();
    for (const t of [...Object.values(ref), ...Object.values(traces)]) t.dispose();
  });
  const latentsOf = (): Tensor =>
    pipe.generate({
      promptEmbeds: ref.prompt_embeds,
      pooledPromptEmbeds: ref.pooled_prompt_embeds,
      latents: ref.latents_in,
      height: meta.height,
      width: meta.width,
      numInferenceSteps: meta.num_inference_steps,
      guidanceScale: meta.guidance_scale,
      decode: false,
    }).latents;

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
