// The `pab` cache policy on LTX-Video (video, CFG batched in one call) against diffusers' Pyramid
// Attention Broadcast (float32, ltx-tiny; made by tools/cache-references-pab/pab.py): the same
// calls reused per attention site (attn1 and attn2, both spatial as diffusers classifies them),
// diffusers' latents, a skip range of 1 exactly uncached, no tensor left behind and the modules
// restored by disableCache.
import { afterAll, describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary } from '@ditcache/core';
import { loadSafetensors, memoryStats, type Tensor } from '@ditcache/cuda-runtime';

import { LtxPipeline, type LtxTransformerBlock } from '../src/index.js';
import { goldens, relativeL2, request } from './helpers.js';
import references from './goldens/ltx-tiny/cache_traces_pab.json' with { type: 'json' };

interface PabTrace {
  config: Record<string, unknown>;
  calls: Record<string, Record<string, number>>;
  reused_calls: Record<string, Record<string, number[]>>;
}
const traces = references.traces as Record<string, PabTrace>;

describe('the pab policy on LTX-Video (ltx-tiny)', () => {
  const ref = loadSafetensors(`${goldens}/ltx-tiny/pipeline.safetensors`);
  const traced = loadSafetensors(`${goldens}/ltx-tiny/cache_traces_pab.safetensors`);
  const pipe = LtxPipeline.fromPretrained(`${goldens}/ltx-tiny`);
  afterAll(() => {
    pipe.dispose();
    for (const t of [...Object.values(ref), ...Object.values(traced)]) t.dispose();
  });
  const latentsOf = (): Tensor => pipe.generate({ ...request(ref, 'ltx-tiny'), decode: false }).latents;

  it.each(Object.keys(traces))("%s: diffusers' reused attention calls per site, and latents", (name) => {
    const trace = traces[name];
    const before = memoryStats();
    enableCache(pipe, { policy: 'pab', ...trace.config });
    const latents = latentsOf();
    const [context] = summary(pipe, { print: false }).contexts;
    const sites = context.attention!.sites;
    // diffusers' one call per step holds both CFG halves: ditcache's 'batched' branch.
    expect(sites.map((s) => `${s.site} ${s.branch}`).sort()).toEqual(
      Object.keys(trace.calls)
        .map((site) => `${site} batched`)
        .sort(),
    );
    for (const s of sites) {
      expect(s.calls, s.site).toBe(trace.calls[s.site].cond_uncond);
      expect(s.skippedCalls, s.site).toEqual(trace.reused_calls[s.site].cond_uncond);
    }
    const reused = Object.values(trace.reused_calls).reduce((n, per) => n + per.cond_uncond.length, 0);
    expect(context.attention!.kinds.spatial!.skipped).toBe(reused);
    if (reused === 0) {
      // Never reusing is the uncached run, to the bit.
      expect(disableCache(pipe)).toBe(true);
      const plain = latentsOf();
      expect(Array.from(latents.toFloat32Array())).toEqual(Array.from(plain.toFloat32Array()));
      plain.dispose();
      enableCache(pipe, { policy: 'pab', ...trace.config });
    } else {
      expect(relativeL2(latents, traced['uncached.latents_out'])).toBeGreaterThan(1e-3);
    }
    expect(relativeL2(latents, traced[`${name}.latents_out`])).toBeLessThan(1e-4);
    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    const blocks = pipe.transformer.transformerBlocks as LtxTransformerBlock[];
    expect(blocks.every((b) => !Object.hasOwn(b.attn1, 'forward') && !Object.hasOwn(b.attn2, 'forward'))).toBe(true);
    expect(memoryStats()).toEqual(before);
  });
});
