import { afterEach, describe, expect, it, vi } from 'vitest';

import { BlockAdapter, disableCache, enableCache, ForwardPattern, percentile, strify, summary } from '../src/index.js';
import { toyPipeline } from './toy-models.js';

afterEach(() => vi.restoreAllMocks());

describe('summary', () => {
  it('computes percentiles as numpy does (linear between order statistics)', () => {
    // Reference values from numpy.percentile.
    const ps = [0, 25, 50, 75, 95, 100];
    expect(ps.map((p) => percentile([0.1, 0.2, 0.3, 0.4], p))).toEqual([0.1, 0.17500000000000002, 0.25, 0.325, 0.385, 0.4]);
    expect(ps.map((p) => percentile([0.07, 0.13, 0.18, 0.29, 0.31, 0.44, 0.52], p))).toEqual([0.07, 0.155, 0.29, 0.375, 0.49599999999999994, 0.52]);
    expect(percentile([0.7], 95)).toBe(0.7);
  });

  it('prints a markdown table per context and branch, and returns the numbers', () => {
    const pipe = toyPipeline(ForwardPattern.Pattern_0);
    enableCache(new BlockAdapter({ pipe, transformer: pipe.transformer, blocks: 'transformerBlocks', forwardPattern: 0, ops: pipe.ops }), {
      Fn_compute_blocks: 1,
      max_warmup_steps: 2,
      residual_diff_threshold: 0.25,
    });
    pipe.generate({ steps: 10, guidance: 3, announce: true });
    const log = vi.spyOn(console, 'log').mockImplementation(() => undefined);
    const result = summary(pipe, { details: true });
    expect(log).toHaveBeenCalledWith(result.markdown);

    const c = result.contexts[0];
    const cond = c.branches[0];
    const diffs = Object.values(cond.residualDiffs).sort((a, b) => a - b);
    expect(diffs).toHaveLength(8);
    expect(cond.diffPercentiles).toEqual({
      p00: diffs[0],
      p25: percentile(diffs, 25),
      p50: percentile(diffs, 50),
      p75: percentile(diffs, 75),
      p95: percentile(diffs, 95),
      min: diffs[0],
      max: diffs[7],
    });
    expect(result.cachedSteps).toBe(c.cachedSteps.length + c.cfgCachedSteps.length);
    const cached = result.cachedSteps;
    expect(result.computedBlocks).toBe(20 * 6 - cached * 5);
    expect(result.totalBlocks).toBe(20 * 6);
    expect(result.flopsSkippedFraction).toBeUndefined();

    const lines = result.markdown.split('\n');
    expect(lines[0]).toBe('| Cache context | Branch | Steps | Cached | Cached steps | Blocks computed | Diff P00 | P25 | P50 | P75 | P95 | Min | Max |');
    expect(lines[2]).toBe(
      `| transformer.transformerBlocks | cond (main) | 10 | ${c.cachedSteps.length} | ${c.cachedSteps.join(', ')} | ${result.computedBlocks}/120 | ` +
        `${[diffs[0], percentile(diffs, 25), percentile(diffs, 50), percentile(diffs, 75), percentile(diffs, 95), diffs[0], diffs[7]].map((d) => d.toFixed(4)).join(' | ')} |`,
    );
    expect(lines[3]).toMatch(/^\| transformer\.transformerBlocks \| uncond \(cfg\) \| 10 \|/);
    expect(result.markdown).toContain('### transformer.transformerBlocks');
    expect(result.markdown).toMatch(/\| 0 \| 0 \| cond \(main\) \| computed \| warmup \| - \|/);
    expect(c.decisions).toHaveLength(20);

    expect(strify(pipe)).toBe(`DBCache_F1B0_W2I1M0MC0_R0.25_T0O0_S${cached}`);
    disableCache(pipe);
    expect(summary(pipe, { print: false })).toMatchObject({ contexts: [], markdown: 'No cache is enabled.\n' });
    expect(() => strify(pipe)).toThrow(/caching is not enabled on this object/);
  });

  it('reports the fraction of transformer FLOPs skipped when the adapter counts them', () => {
    const pipe = toyPipeline(ForwardPattern.Pattern_3);
    enableCache(
      new BlockAdapter({
        pipe,
        transformer: pipe.transformer,
        blocks: 'transformerBlocks',
        forwardPattern: ForwardPattern.Pattern_3,
        ops: pipe.ops,
        flops: { block: (_chain, index) => 10 * (index + 1), outsideBlocks: () => 50 },
      }),
      { Fn_compute_blocks: 1, Bn_compute_blocks: 1, max_warmup_steps: 2, residual_diff_threshold: 1 },
    );
    pipe.generate({ steps: 6 });
    const result = summary(pipe, { print: false });
    // 6 calls of 210 block FLOPs + 50 outside; steps 2-5 skip blocks 1-4 (140 FLOPs each).
    expect(result.contexts[0].flops).toEqual({ computed: 6 * 210 - 4 * 140, skipped: 4 * 140, outside: 6 * 50 });
    expect(result.flopsSkippedFraction).toBeCloseTo(560 / 1560, 12);
    expect(result.markdown).toContain('Transformer FLOPs skipped: 35.9%');
    disableCache(pipe);
  });
});
