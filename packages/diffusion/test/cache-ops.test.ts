import { afterEach, describe, expect, it, vi } from 'vitest';

import { disableCache, ditcacheContainer, enableCache, ForwardPattern, summary, TENSOR_OPS } from '@ditcache/core';
import { add, memoryStats, mul, tanh, tensor, tidy, type Tensor } from '@ditcache/cuda-runtime';

import { runtimeTensorOps } from '../src/index.js';

/** A runtime block that states its pattern: h + t * tanh(h). */
class StatedBlock {
  static readonly forwardPattern = ForwardPattern.Pattern_3;

  forward(h: Tensor, t: number): Tensor {
    return tidy(() => add(h, mul(tanh(h), t)));
  }
}

/** A transformer of no registered family, looping over its blocks as diffusers models do. */
class HomemadeTransformer {
  blocks = [new StatedBlock(), new StatedBlock(), new StatedBlock()];

  forward(x: Tensor, t: number): Tensor {
    return tidy(() => {
      let h = x;
      for (const block of this.blocks) h = block.forward(h, t);
      return h;
    });
  }
}

describe('runtimeTensorOps', () => {
  afterEach(() => vi.restoreAllMocks());

  it('is registered as the engine\'s default TensorOps, so a runtime model without an adapter is cached in auto mode', () => {
    expect(ditcacheContainer.resolve(TENSOR_OPS)).toBe(runtimeTensorOps);
    vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const transformer = new HomemadeTransformer();
    using x = tensor([0.3, -0.2, 0.5, 0.1], [1, 4]);
    const run = (): Float32Array[] =>
      [0.9, 0.8, 0.7, 0.6, 0.5].map((t) => {
        using out = transformer.forward(x, t);
        return out.toFloat32Array();
      });
    const reference = run();
    const before = memoryStats();
    enableCache(transformer, { Fn_compute_blocks: 1, max_warmup_steps: 2, residual_diff_threshold: 1 });
    const cached = run();
    expect(summary(transformer, { print: false }).contexts[0].cachedSteps).toEqual([2, 3, 4]);
    expect(cached.slice(0, 2)).toEqual(reference.slice(0, 2));
    expect(disableCache(transformer)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });
});
