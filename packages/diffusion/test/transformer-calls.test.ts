import { afterEach, describe, expect, it, vi } from 'vitest';

import { disableCache, enableCache, ForwardPattern, summary } from '@ditcache/core';
import { add, mul, tanh, tensor, tidy, type Tensor } from '@ditcache/cuda-runtime';

import { TransformerCallAnnouncer, type PipelineTransformerCall } from '../src/index.js';

class StatedBlock {
  static readonly forwardPattern = ForwardPattern.Pattern_3;

  forward(h: Tensor, t: number): Tensor {
    return tidy(() => add(h, mul(tanh(h), t)));
  }
}

/** A transformer that auto mode caches: a `blocks` list whose blocks state their pattern. */
class HomemadeTransformer {
  blocks = [new StatedBlock(), new StatedBlock(), new StatedBlock()];

  forward(x: Tensor, t: number): Tensor {
    return tidy(() => this.blocks.reduce((h, block) => block.forward(h, t), x));
  }
}

describe('TransformerCallAnnouncer', () => {
  afterEach(() => vi.restoreAllMocks());

  it('tells each subscribed listener every call, in order, until it unsubscribes', () => {
    const calls = new TransformerCallAnnouncer<PipelineTransformerCall>();
    const [first, second]: PipelineTransformerCall[][] = [[], []];
    const offFirst = calls.subscribe((c) => first.push(c));
    calls.subscribe((c) => second.push(c));
    const uncached = {};
    expect(calls.run(uncached, { step: 0, numSteps: 2, timestep: 1000, branch: 'cond' }, () => 'out')).toBe('out');
    offFirst();
    calls.run(uncached, { step: 1, numSteps: 2, timestep: 500, branch: 'cond' }, () => undefined);
    expect(first.map((c) => c.step)).toEqual([0]);
    expect(second).toEqual([
      { step: 0, numSteps: 2, timestep: 1000, branch: 'cond' },
      { step: 1, numSteps: 2, timestep: 500, branch: 'cond' },
    ]);
  });

  it('runs each call known to the cache engine: two CFG calls a step count as one step with two branches', () => {
    vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const transformer = new HomemadeTransformer();
    const calls = new TransformerCallAnnouncer<PipelineTransformerCall>();
    enableCache(transformer, { Fn_compute_blocks: 1, max_warmup_steps: 2, residual_diff_threshold: 1 });
    using x = tensor([0.3, -0.2, 0.5, 0.1], [1, 4]);
    const numSteps = 5;
    for (let step = 0; step < numSteps; ++step) {
      for (const branch of ['cond', 'uncond'] as const) {
        calls.run(transformer, { step, numSteps, timestep: 1000 - 200 * step, branch }, () => transformer.forward(x, 0.9 - 0.1 * step)).dispose();
      }
    }
    const [stats] = summary(transformer, { print: false }).contexts;
    expect(stats.cachedSteps).toEqual([2, 3, 4]);
    expect(stats.cfgCachedSteps).toEqual([2, 3, 4]);
    expect(disableCache(transformer)).toBe(true);
  });
});
