// The `pab` cache policy on FLUX against diffusers' Pyramid Attention Broadcast (float32,
// flux-tiny; made by tools/cache-references-pab/pab.py): the same calls reused per attention
// site (every double- and single-stream block's attention, all spatial as diffusers sees them;
// the joint attention returns two tensors), diffusers' latents, a skip range of 1 exactly
// uncached, no tensor left behind and the modules restored by disableCache.
import { describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary } from '@ditcache/core';
import { memoryStats } from '@ditcache/cuda-runtime';

import type { FluxSingleTransformerBlock, FluxTransformerBlock } from '../src/index.js';
import { relativeL2 } from './helpers.js';
import { fluxTinyTraces } from './policy-traces.js';

interface PabTrace {
  config: Record<string, unknown>;
  calls: Record<string, Record<string, number>>;
  reused_calls: Record<string, Record<string, number[]>>;
}

describe('the pab policy on FLUX (flux-tiny)', () => {
  const { references, traces, pipe, latentsOf } = fluxTinyTraces<{ traces: Record<string, PabTrace> }>('pab');

  it.each(Object.keys(references.traces))("%s: diffusers' reused attention calls per site, and latents", (name) => {
    const trace = references.traces[name];
    const before = memoryStats();
    enableCache(pipe, { policy: 'pab', ...trace.config });
    const latents = latentsOf();
    const [context] = summary(pipe, { print: false }).contexts;
    const sites = context.attention!.sites;
    expect(sites.map((s) => `${s.site} ${s.branch}`).sort()).toEqual(
      Object.keys(trace.calls)
        .map((site) => `${site} cond`)
        .sort(),
    );
    for (const s of sites) {
      expect(s.kind).toBe('spatial');
      expect(s.calls, s.site).toBe(trace.calls[s.site].cond);
      expect(s.skippedCalls, s.site).toEqual(trace.reused_calls[s.site].cond);
    }
    const reused = Object.values(trace.reused_calls).reduce((n, per) => n + per.cond.length, 0);
    expect(context.attention!.kinds.spatial!.skipped).toBe(reused);
    if (reused === 0) {
      // Never reusing is the uncached run, to the bit.
      expect(disableCache(pipe)).toBe(true);
      const plain = latentsOf();
      expect(Array.from(latents.toFloat32Array())).toEqual(Array.from(plain.toFloat32Array()));
      plain.dispose();
      enableCache(pipe, { policy: 'pab', ...trace.config });
    } else {
      expect(relativeL2(latents, traces['uncached.latents_out'])).toBeGreaterThan(1e-3);
    }
    expect(relativeL2(latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    const t = pipe.transformer;
    const blocks = [...t.transformerBlocks, ...t.singleTransformerBlocks] as (FluxTransformerBlock | FluxSingleTransformerBlock)[];
    expect(blocks.every((b) => !Object.hasOwn(b.attn, 'forward'))).toBe(true);
    expect(memoryStats()).toEqual(before);
  });
});
