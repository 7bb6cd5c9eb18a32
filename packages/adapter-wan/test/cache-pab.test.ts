// The `pab` cache policy on Wan (video, separate cond and uncond calls per step) against
// diffusers' Pyramid Attention Broadcast (float32, wan-tiny; made by
// tools/cache-references-pab/pab.py with one hook state per cache context, since diffusers'
// own state per module makes the uncond call reuse the cond call's output). ditcache keeps one
// state per attention site and CFG branch: the same calls reused per site and branch (attn1 as
// spatial, attn2 as cross), diffusers' latents, and a skip range of 1 exactly uncached. On Wan
// 2.2 each expert's sites count only the calls of that expert.
import { describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary } from '@ditcache/core';
import { memoryStats } from '@ditcache/cuda-runtime';

import type { WanTransformerBlock } from '../src/index.js';
import { relativeL2 } from './helpers.js';
import { wanTinyTraces } from './policy-traces.js';

interface PabTrace {
  config: Record<string, unknown>;
  calls: Record<string, Record<string, number>>;
  reused_calls: Record<string, Record<string, number[]>>;
}

describe('the pab policy on Wan (wan-tiny)', () => {
  const { references, traces, pipe, latentsOf } = wanTinyTraces<{ traces: Record<string, PabTrace> }>('pab');

  it.each(Object.keys(references.traces))("%s: diffusers' reused attention calls per site and CFG branch, and latents", (name) => {
    const trace = references.traces[name];
    const before = memoryStats();
    enableCache(pipe, { policy: 'pab', ...trace.config });
    const latents = latentsOf();
    const [context] = summary(pipe, { print: false }).contexts;
    const attention = context.attention!;
    // Every site is wrapped; diffusers hooks only the kinds that are on.
    const hooked = attention.sites.filter((s) => trace.calls[s.site] !== undefined);
    expect(new Set(hooked.map((s) => s.site))).toEqual(new Set(Object.keys(trace.calls)));
    for (const s of hooked) {
      expect(s.calls, `${s.site} ${s.branch}`).toBe(trace.calls[s.site][s.branch]);
      expect(s.skippedCalls, `${s.site} ${s.branch}`).toEqual(trace.reused_calls[s.site][s.branch]);
    }
    expect(hooked.map((s) => s.branch).sort()).toEqual(
      Object.values(trace.calls)
        .flatMap((per) => Object.keys(per))
        .sort(),
    );
    const reused = Object.values(trace.reused_calls).reduce((n, per) => n + per.cond.length + per.uncond.length, 0);
    expect(Object.values(attention.kinds).reduce((n, k) => n + k.skipped, 0)).toBe(reused);
    const uncached = traces['uncached.latents_out'];
    if (reused === 0) {
      // Never reusing is the uncached run, to the bit.
      expect(disableCache(pipe)).toBe(true);
      const plain = latentsOf();
      expect(Array.from(latents.toFloat32Array())).toEqual(Array.from(plain.toFloat32Array()));
      plain.dispose();
      enableCache(pipe, { policy: 'pab', ...trace.config });
    } else {
      expect(relativeL2(latents, uncached)).toBeGreaterThan(1e-3);
    }
    expect(relativeL2(latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    const blocks = pipe.transformer.blocks as WanTransformerBlock[];
    expect(blocks.every((b) => !Object.hasOwn(b.attn1, 'forward') && !Object.hasOwn(b.attn2, 'forward'))).toBe(true);
    expect(memoryStats()).toEqual(before);
  });
});

describe('the pab policy on Wan 2.2 (wan-tiny/wan22, two experts)', () => {
  const { references, traces, pipe, latentsOf } = wanTinyTraces<{ traces: Record<string, PabTrace> }>('pab', 'wan-tiny/wan22');

  it.each(Object.keys(references.traces))("%s: diffusers' reused attention calls per expert, site and CFG branch, and latents", (name) => {
    const trace = references.traces[name];
    const before = memoryStats();
    enableCache(pipe, { policy: 'pab', ...trace.config });
    const latents = latentsOf();
    const contexts = summary(pipe, { print: false }).contexts;
    expect(contexts.map((c) => c.name)).toEqual(['transformer.blocks', 'transformer_2.blocks']);
    const sites = contexts.flatMap((c) => c.attention!.sites);
    expect(new Set(sites.map((s) => `${s.transformer}.${s.site}`))).toEqual(new Set(Object.keys(trace.calls)));
    for (const s of sites) {
      const key = `${s.transformer}.${s.site}`;
      expect(s.calls, `${key} ${s.branch}`).toBe(trace.calls[key][s.branch]);
      expect(s.skippedCalls, `${key} ${s.branch}`).toEqual(trace.reused_calls[key][s.branch]);
    }
    expect(sites).toHaveLength(2 * Object.keys(trace.calls).length);
    expect(relativeL2(latents, traces['uncached.latents_out'])).toBeGreaterThan(1e-3);
    expect(relativeL2(latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });
});
