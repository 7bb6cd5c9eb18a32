// A chain whose last block ends the encoder stream, as SD3's last joint block
// (`context_pre_only`) does: it returns null where the pattern has the encoder stream.
import { describe, expect, it } from 'vitest';

import { BlockAdapter, disableCache, enableCache, ForwardPattern, summary, type Block, type CacheConfigInput } from '../src/index.js';
import { StreamEndingBlock, toyPipeline, type ToyPipeline } from './toy-models.js';

const quiet = { print: false } as const;
const STEPS = 14;

/** Five blocks of `pattern`, the last one ending the encoder stream. */
function sd3Like(pattern: ForwardPattern): ToyPipeline {
  const pipe = toyPipeline(pattern, { transformerBlocks: 5 });
  (pipe.transformer.transformerBlocks as Block[])[4] = new StreamEndingBlock(pipe.ops, pattern, 4);
  return pipe;
}

function adapterFor(pipe: ToyPipeline): BlockAdapter {
  return new BlockAdapter({ pipe, transformer: pipe.transformer, blocks: 'transformerBlocks', forwardPattern: pipe.transformer.pattern, ops: pipe.ops });
}

function cachedRun(pipe: ToyPipeline, config: CacheConfigInput) {
  const live = pipe.ops.liveCount;
  enableCache(adapterFor(pipe), config);
  const out = pipe.generate({ steps: STEPS });
  const stats = summary(pipe, quiet);
  disableCache(pipe);
  expect(pipe.ops.liveCount).toBe(live);
  return { out, stats };
}

describe.each([ForwardPattern.Pattern_0, ForwardPattern.Pattern_1])('Pattern_%i, the last block ends the encoder stream', (pattern) => {
  const taylorSeer = { fnComputeBlocks: 1, maxWarmupSteps: 3, residualDiffThreshold: 0.1, enableTaylorseer: true, taylorseerOrder: 2 };

  it('threshold 0 and a threshold that never caches are bit-identical to the uncached chain', () => {
    const pipe = sd3Like(pattern);
    const reference = pipe.generate({ steps: STEPS });
    expect(cachedRun(pipe, { fnComputeBlocks: 1, residualDiffThreshold: 0 }).out).toEqual(reference);
    const bookkeeping = cachedRun(pipe, { fnComputeBlocks: 2, bnComputeBlocks: 1, maxWarmupSteps: 1, residualDiffThreshold: 1e-12 });
    expect(bookkeeping.out).toEqual(reference);
    expect(bookkeeping.stats.cachedSteps).toBe(0);
  });

  it('the ending block among the middle blocks: TaylorSeer with its encoder forecast on (the default) caches, and has nothing to forecast for the encoder', () => {
    const pipe = sd3Like(pattern);
    const withEncoder = cachedRun(pipe, taylorSeer);
    const withoutEncoder = cachedRun(pipe, { ...taylorSeer, enableEncoderTaylorseer: false });
    expect(withEncoder.stats.cachedSteps).toBeGreaterThan(0);
    expect(withEncoder.stats.contexts[0].cachedSteps).toEqual(withoutEncoder.stats.contexts[0].cachedSteps);
    expect(withEncoder.out).toEqual(withoutEncoder.out);
    // Plain DBCache caches too: a missing encoder residual is no missing reference.
    expect(cachedRun(pipe, { fnComputeBlocks: 1, maxWarmupSteps: 3, residualDiffThreshold: 0.5 }).stats.cachedSteps).toBeGreaterThan(0);
  });

  it('the ending block among the Bn blocks: the middle blocks keep the stream, and its forecast counts', () => {
    const pipe = sd3Like(pattern);
    const config = { ...taylorSeer, bnComputeBlocks: 1 };
    const withEncoder = cachedRun(pipe, config);
    const withoutEncoder = cachedRun(pipe, { ...config, enableEncoderTaylorseer: false });
    expect(withEncoder.stats.cachedSteps).toBeGreaterThan(0);
    expect(withEncoder.out).not.toEqual(withoutEncoder.out);
  });

  it('cached and computed steps alike pass no encoder stream on, and keep no tensor once disabled', () => {
    const pipe = sd3Like(pattern);
    const transformer = pipe.transformer;
    const live = pipe.ops.liveCount;
    enableCache(adapterFor(pipe), { fnComputeBlocks: 2, maxWarmupSteps: 2, residualDiffThreshold: 1, enableTaylorseer: true });
    const runner = (transformer.transformerBlocks as Block[])[0];
    const h = pipe.ops.tensor([0.1, -0.2, 0.3]);
    const e = pipe.ops.tensor([0.5, 0.4]);
    const encoderOut = [0, 1, 2, 3, 4].map((step) => {
      const out = runner.forward(h, e, 1 - step / 5) as [unknown, unknown];
      const [hidden, encoder] = pattern === ForwardPattern.Pattern_0 ? out : [out[1], out[0]];
      (hidden as { dispose(): void }).dispose();
      return encoder;
    });
    expect(encoderOut).toEqual([null, null, undefined, undefined, undefined]);
    expect(summary(pipe, quiet).contexts[0].cachedSteps).toEqual([2, 3, 4]);
    disableCache(pipe);
    h.dispose();
    e.dispose();
    expect(pipe.ops.liveCount).toBe(live);
  });

  it('a block that returns no hidden stream is refused, naming what it must return', () => {
    const pipe = sd3Like(pattern);
    (pipe.transformer.transformerBlocks as Block[])[1] = {
      forward: (_h: unknown, e: unknown) => (pattern === ForwardPattern.Pattern_0 ? [null, e] : [e, null]),
    };
    enableCache(adapterFor(pipe), { fnComputeBlocks: 1, residualDiffThreshold: 0 });
    expect(() => pipe.generate({ steps: 2 })).toThrow(
      /block 1 returned a pair without h, but Pattern_[01] blocks return \[[he], [he]\] \(e may be null where the block ends the encoder stream, h may not\)/,
    );
    disableCache(pipe);
  });
});
