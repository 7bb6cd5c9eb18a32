// The one channel from a pipeline to the engine: a transformer call run inside its description, cleared after it, nesting-safe.
import { describe, expect, it, vi } from 'vitest';

import {
  BlockAdapter,
  disableCache,
  enableCache,
  ForwardPattern,
  runTransformerCall,
  summary,
  TransformerCallScope,
  type CacheConfigInput,
} from '../src/index.js';
import { toyPipeline } from './toy-models.js';

const CONFIG: CacheConfigInput = { fnComputeBlocks: 1, maxWarmupSteps: 2, residualDiffThreshold: 0.3 };

describe('TransformerCallScope', () => {
  it('holds the running call while the callback runs, puts back the outer one after, even on a throw', () => {
    const scope = new TransformerCallScope();
    expect(scope.current).toBeUndefined();
    const seen: unknown[] = [];
    scope.run({ step: 3, branch: 'cond' }, () => {
      seen.push(scope.current);
      scope.runBare(500, () => seen.push(scope.current));
      expect(() =>
        scope.run({ step: 4, branch: 'uncond' }, () => {
          seen.push(scope.current);
          throw new Error('boom');
        }),
      ).toThrow('boom');
      seen.push(scope.current);
    });
    expect(scope.current).toBeUndefined();
    expect(seen).toEqual([
      { kind: 'announced', call: { step: 3, branch: 'cond' } },
      { kind: 'bare', timestep: 500 },
      { kind: 'announced', call: { step: 4, branch: 'uncond' } },
      { kind: 'announced', call: { step: 3, branch: 'cond' } },
    ]);
  });
});

describe('runTransformerCall', () => {
  it('without a cache runs the call and returns what it returns', () => {
    expect(runTransformerCall({}, { step: 0, branch: 'cond' }, () => 42)).toBe(42);
  });

  it('names the field that is wrong and its valid values', () => {
    const pipe = toyPipeline(ForwardPattern.Pattern_0);
    enableCache(
      new BlockAdapter({ transformer: pipe.transformer, blocks: 'transformerBlocks', forwardPattern: ForwardPattern.Pattern_0, ops: pipe.ops }),
      CONFIG,
    );
    const run = (call: object) => () => runTransformerCall(pipe.transformer, call as never, () => undefined);
    expect(run({ step: 0, branch: 'positive' })).toThrow(/branch must be one of cond, uncond, batched, got positive/);
    expect(run({ step: -1, branch: 'cond' })).toThrow(/step must be an integer >= 0, got -1/);
    expect(run({ step: 2, branch: 'cond', numSteps: 2 })).toThrow(/numSteps must be an integer above step \(2\), got 2/);
    expect(run({ step: 0, branch: 'cond', timestep: Number.NaN })).toThrow(
      /timestep must be a finite number, got NaN .*fields: step, branch, numSteps\?, timestep\?/,
    );
    disableCache(pipe.transformer);
  });

  it("a call the pipeline runs is placed from its description: the adapter's timestepOf is never asked", () => {
    const pipe = toyPipeline(ForwardPattern.Pattern_0);
    const timestepOf = vi.fn((args: readonly unknown[]) => args[2] as number);
    const adapter = () =>
      new BlockAdapter({
        pipe,
        transformer: pipe.transformer,
        blocks: 'transformerBlocks',
        forwardPattern: ForwardPattern.Pattern_0,
        ops: pipe.ops,
        timestepOf,
      });
    enableCache(adapter(), CONFIG);
    const announced = pipe.generate({ steps: 8, guidance: 3, announce: true });
    const stats = summary(pipe, { print: false }).contexts[0];
    expect(timestepOf).not.toHaveBeenCalled();
    expect(stats.pipelineSteps).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(stats.branches.map((b) => b.announcedAs)).toEqual(['cond', 'uncond']);
    disableCache(pipe);

    // The same pipeline calling its transformer bare: each call is placed by its timestep.
    enableCache(adapter(), { ...CONFIG, enableSeparateCfg: true });
    const bare = pipe.generate({ steps: 8, guidance: 3 });
    expect(timestepOf).toHaveBeenCalledTimes(16);
    expect(summary(pipe, { print: false }).contexts[0].steps).toBe(8);
    expect(bare).toEqual(announced);
    disableCache(pipe);
  });

  it('a chain run twice within one call is placed by the call once, then as an unannounced call', () => {
    const pipe = toyPipeline(ForwardPattern.Pattern_3);
    enableCache(
      new BlockAdapter({ pipe, transformer: pipe.transformer, blocks: 'transformerBlocks', forwardPattern: ForwardPattern.Pattern_3, ops: pipe.ops }),
      CONFIG,
    );
    const x = pipe.ops.tensor([0.1, 0.2, 0.3]);
    runTransformerCall(pipe.transformer, { step: 0, branch: 'cond' }, () => {
      for (let i = 0; i < 2; i++) pipe.transformer.forward(x, undefined, 1).h.dispose();
    });
    const stats = summary(pipe, { print: false }).contexts[0];
    expect(stats.transformerCalls).toBe(2);
    expect(stats.pipelineSteps).toEqual([0, undefined]);
    x.dispose();
    disableCache(pipe);
  });
});
