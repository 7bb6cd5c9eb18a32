// The `pab` cache policy on FLUX against diffusers' Pyramid Attention Broadcast (float32,
// flux-tiny; made by tools/cache-references-pab/pab.py): the same calls reused per attention
// site (every double- and single-stream block's attention, all spatial as diffusers sees them;
// the joint attention returns two tensors) and, with true CFG, per CFG branch; diffusers' latents,
// a skip range of 1 exactly uncached, no tensor left behind and the modules restored by disableCache.
import { afterAll, describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary } from '@ditcache/core';
import { memoryStats, neg, type Tensor } from '@ditcache/cuda-runtime';

import type { FluxSingleTransformerBlock, FluxTransformerBlock } from '../src/index.js';
import { relativeL2 } from './helpers.js';
import { fluxTinyTraces } from './policy-traces.js';

interface PabTrace {
  config: Record<string, unknown>;
  calls: Record<string, Record<string, number>>;
  reused_calls: Record<string, Record<string, number[]>>;
}

describe('the pab policy on FLUX (flux-tiny)', () => {
  const { references, ref, traces, pipe, latentsOf: goldenRun } = fluxTinyTraces<{ traces: Record<string, PabTrace> }>('pab');
  const negative = neg(ref.prompt_embeds);
  const negativePooled = neg(ref.pooled_prompt_embeds);
  afterAll(() => {
    negative.dispose();
    negativePooled.dispose();
  });
  /** The golden run; with true CFG, the negative prompt is the prompt's embeddings negated, as the tool's. */
  const latentsOf = (trueCfgScale: number | undefined): Tensor =>
    goldenRun(trueCfgScale === undefined ? {} : { trueCfgScale, negativePromptEmbeds: negative, negativePooledPromptEmbeds: negativePooled });

  it.each(Object.keys(references.traces))("%s: diffusers' reused attention calls per site and CFG branch, and latents", (name) => {
    const { true_cfg_scale: trueCfgScale, ...config } = references.traces[name].config as { true_cfg_scale?: number };
    const trace = references.traces[name];
    const before = memoryStats();
    const plain = latentsOf(trueCfgScale);
    enableCache(pipe, { policy: 'pab', ...config });
    const latents = latentsOf(trueCfgScale);
    const [context] = summary(pipe, { print: false }).contexts;
    const sites = context.attention!.sites;
    const branches = trueCfgScale === undefined ? ['cond'] : ['cond', 'uncond'];
    expect(sites.map((s) => `${s.site} ${s.branch}`).sort()).toEqual(
      Object.keys(trace.calls)
        .flatMap((site) => branches.map((b) => `${site} ${b}`))
        .sort(),
    );
    for (const s of sites) {
      expect(s.kind).toBe('spatial');
      expect(s.calls, `${s.site} ${s.branch}`).toBe(trace.calls[s.site][s.branch]);
      expect(s.skippedCalls, `${s.site} ${s.branch}`).toEqual(trace.reused_calls[s.site][s.branch]);
    }
    const reused = Object.values(trace.reused_calls).reduce((n, per) => n + Object.values(per).flat().length, 0);
    expect(context.attention!.kinds.spatial!.skipped).toBe(reused);
    if (reused === 0) {
      // Never reusing is the uncached run, to the bit.
      expect(Array.from(latents.toFloat32Array())).toEqual(Array.from(plain.toFloat32Array()));
    } else {
      expect(relativeL2(latents, plain)).toBeGreaterThan(1e-3);
    }
    expect(relativeL2(latents, traces[`${name}.latents_out`])).toBeLessThan(1e-4);
    for (const t of [latents, plain]) t.dispose();
    expect(disableCache(pipe)).toBe(true);
    const t = pipe.transformer;
    const blocks = [...t.transformerBlocks, ...t.singleTransformerBlocks] as (FluxTransformerBlock | FluxSingleTransformerBlock)[];
    expect(blocks.every((b) => !Object.hasOwn(b.attn, 'forward'))).toBe(true);
    expect(memoryStats()).toEqual(before);
  });
});
