// enableCache on a model that no registered adapter knows: auto mode when the model's blocks
// state their ForwardPattern and a tensor runtime registered its TensorOps, otherwise an error
// that says what is installed, how to add an adapter and why auto mode could not take it.
// (Its own test file: registering TENSOR_OPS lasts for the process.)
import { afterEach, describe, expect, it, vi } from 'vitest';

import {
  disableCache,
  ditcacheContainer,
  enableCache,
  ForwardPattern,
  registerAdapter,
  summary,
  supportedPipelines,
  TENSOR_OPS,
  type Block,
  type BlockAdapterFactory,
} from '../src/index.js';
import { PlainTensorOps } from '../src/testing.js';
import { ToyBlock, ToyPipeline, ToyTransformer } from './toy-models.js';

/** A block that does not say which ForwardPattern it follows (ToyBlock does). */
class UnstatedBlock implements Block {
  constructor(private readonly inner: ToyBlock) {}

  forward(...args: unknown[]): unknown {
    return this.inner.forward(...args);
  }
}

/** A pipeline and transformer of a family no adapter is registered for. */
class UnknownTransformer extends ToyTransformer {}
class UnknownPipeline extends ToyPipeline {}

function unknownPipeline(ops: PlainTensorOps, statesPattern: boolean): ToyPipeline {
  const blocks = [0, 1, 2, 3].map((k) => {
    const block = new ToyBlock(ops, ForwardPattern.Pattern_1, k);
    return statesPattern ? block : new UnstatedBlock(block);
  });
  return new UnknownPipeline(new UnknownTransformer(ops, ForwardPattern.Pattern_1, ['transformerBlocks'], [blocks]), ops);
}

@registerAdapter({ pipelines: ['KnownPipeline'] })
class KnownAdapterFactory implements BlockAdapterFactory {
  createBlockAdapter(): never {
    throw new Error('not used here');
  }
}

describe('a model no adapter is registered for', () => {
  afterEach(() => vi.restoreAllMocks());

  it('without a registered TensorOps: the error lists the installed adapters, how to add one, and why auto mode was not possible', () => {
    expect(supportedPipelines()).toContain('KnownPipeline');
    const pipe = unknownPipeline(new PlainTensorOps(), true);
    let message = '';
    try {
      enableCache(pipe);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toContain('no adapter is registered for UnknownPipeline or its transformer UnknownTransformer.');
    expect(message).toContain('Installed adapters cover the pipelines KnownPipeline and the transformer classes (none).');
    expect(message).toContain("@registerAdapter({ pipelines: ['UnknownPipeline'] })");
    expect(message).toContain('docs/writing-an-adapter.md');
    expect(message).toContain('Auto mode was not possible: no tensor runtime registered its TensorOps under TENSOR_OPS');
  });

  it('with a registered TensorOps and blocks that state their pattern: caches in auto mode, with a warning', () => {
    const ops = new PlainTensorOps();
    ditcacheContainer.register(TENSOR_OPS, { useValue: ops });
    const pipe = unknownPipeline(ops, true);
    const reference = pipe.generate({ steps: 10 });
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    enableCache(pipe, { Fn_compute_blocks: 1, max_warmup_steps: 2, residual_diff_threshold: 0 });
    expect(warn).toHaveBeenCalledWith(
      expect.stringMatching(/no adapter is registered for UnknownPipeline; caching transformer\.transformerBlocks in auto mode, as its blocks state Pattern_1/),
      'DitcacheAutoAdapterWarning',
    );
    expect(pipe.generate({ steps: 10 })).toEqual(reference);
    enableCache(pipe, { Fn_compute_blocks: 1, max_warmup_steps: 2, residual_diff_threshold: 0.5 });
    pipe.generate({ steps: 10 });
    expect(summary(pipe, { print: false }).cachedSteps).toBeGreaterThan(0);
    expect(disableCache(pipe)).toBe(true);
  });

  it('with a registered TensorOps but blocks that state no pattern: the error says so', () => {
    const ops = new PlainTensorOps();
    ditcacheContainer.register(TENSOR_OPS, { useValue: ops });
    expect(() => enableCache(unknownPipeline(ops, false))).toThrow(
      /Auto mode was not possible: BlockAdapter auto mode: the blocks of transformer\.transformerBlocks state no forwardPattern; give forwardPattern\./,
    );
  });
});
