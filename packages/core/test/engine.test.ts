import { describe, expect, it } from 'vitest';

import { BlockAdapter, cacheHandleOf, disableCache, enableCache, ForwardPattern, refreshContext, summary, type CacheConfigInput } from '../src/index.js';
import { PlainTensorOps } from '../src/testing.js';
import { AdditiveBlock, ToyPipeline, ToyTransformer, toyPipeline } from './toy-models.js';

const PATTERNS = [0, 1, 2, 3, 4, 5] as ForwardPattern[];
const quiet = { print: false } as const;

function adapterFor(pipe: ToyPipeline, blocks: string | { chain: string[] } | (string | { chain: string[] })[] = 'transformerBlocks') {
  return new BlockAdapter({ pipe, transformer: pipe.transformer, blocks, forwardPattern: pipe.transformer.pattern, ops: pipe.ops });
}

function cachedRun(pattern: ForwardPattern, config: CacheConfigInput, steps = 12) {
  const pipe = toyPipeline(pattern);
  const reference = pipe.generate({ steps });
  enableCache(adapterFor(pipe), config);
  const out = pipe.generate({ steps });
  const stats = summary(pipe, quiet);
  disableCache(pipe);
  return { reference, out, stats, pipe };
}

describe('threshold 0 and disableCache are exact', () => {
  it.each(PATTERNS)('Pattern_%i: threshold 0 gives bit-identical latents, nothing cached', (pattern) => {
    const { reference, out, stats } = cachedRun(pattern, { Fn_compute_blocks: 1, Bn_compute_blocks: 1, max_warmup_steps: 2, residual_diff_threshold: 0 });
    expect(out).toEqual(reference);
    expect(stats.cachedSteps).toBe(0);
    expect(stats.computedBlocks).toBe(stats.totalBlocks);
  });

  it.each(PATTERNS)('Pattern_%i: a threshold that never caches does all the bookkeeping and stays bit-identical', (pattern) => {
    const { reference, out, stats } = cachedRun(pattern, { fnComputeBlocks: 2, bnComputeBlocks: 1, maxWarmupSteps: 1, residualDiffThreshold: 1e-12 });
    expect(out).toEqual(reference);
    expect(stats.cachedSteps).toBe(0);
    expect(Object.keys(stats.contexts[0].residualDiffs)).toHaveLength(11);
  });

  const WITH_FORECASTS = PATTERNS.flatMap((p) => (['residual', 'hidden_states'] as const).map((cacheType) => [p, cacheType] as const));
  it.each(WITH_FORECASTS)(
    'Pattern_%i, TaylorSeer on the %s: disableCache restores the lists, the methods and bit-identical output, and frees every tensor',
    (pattern, cacheType) => {
      const pipe = toyPipeline(pattern);
      const blocks = pipe.transformer.transformerBlocks;
      const before = pipe.generate({ steps: 10 });
      const live = pipe.ops.liveCount;
      enableCache(adapterFor(pipe), { fnComputeBlocks: 1, maxWarmupSteps: 2, residualDiffThreshold: 0.5, taylorseerOrder: 2, taylorseerCacheType: cacheType });
      expect(pipe.transformer.transformerBlocks).not.toBe(blocks);
      expect(Object.hasOwn(pipe, 'generate')).toBe(true);
      const cached = pipe.generate({ steps: 10 });
      expect(summary(pipe, quiet).cachedSteps).toBeGreaterThan(0);
      expect(cached).not.toEqual(before);
      expect(pipe.ops.liveCount).toBeGreaterThan(live); // the buffers of the last run

      expect(disableCache(pipe)).toBe(true);
      expect(pipe.transformer.transformerBlocks).toBe(blocks);
      expect(Object.hasOwn(pipe, 'generate')).toBe(false);
      expect(pipe.ops.liveCount).toBe(live);
      expect(pipe.generate({ steps: 10 })).toEqual(before);
      expect(disableCache(pipe)).toBe(false);
    },
  );
});

describe('cached steps', () => {
  it('threshold >= 1 computes only the warmup steps', () => {
    const { stats } = cachedRun(ForwardPattern.Pattern_0, { fnComputeBlocks: 1, bnComputeBlocks: 1, maxWarmupSteps: 3, residualDiffThreshold: 1 }, 10);
    const c = stats.contexts[0];
    expect(c.cachedSteps).toEqual([3, 4, 5, 6, 7, 8, 9]);
    expect(c.residualDiffs).toEqual({});
    expect(c.computedBlocks).toBe(3 * 6 + 7 * 2);
    expect(c.decisions.map((d) => d.reason)).toEqual([...Array(3).fill('warmup'), ...Array(7).fill('threshold-always')]);
  });

  it('threshold >= 1 respects max cached steps, max continuous cached steps and the warmup interval', () => {
    const capped = cachedRun(ForwardPattern.Pattern_3, { fnComputeBlocks: 1, maxWarmupSteps: 2, residualDiffThreshold: 1, maxCachedSteps: 4 }, 10);
    expect(capped.stats.contexts[0].cachedSteps).toEqual([2, 3, 4, 5]);
    expect(capped.stats.contexts[0].decisions.slice(6).map((d) => d.reason)).toEqual(Array(4).fill('max-cached'));

    // cache-dit's counter: 1, 2 -> forced; then 0 (after a gap), 2 -> forced; ...
    const continuous = cachedRun(
      ForwardPattern.Pattern_3,
      { fnComputeBlocks: 1, maxWarmupSteps: 2, residualDiffThreshold: 1, maxContinuousCachedSteps: 2 },
      12,
    );
    expect(continuous.stats.contexts[0].cachedSteps).toEqual([2, 3, 5, 6, 8, 9, 11]);

    // warmup_interval 2 computes steps 0 and 2 of the warmup and may cache step 1.
    const interval = cachedRun(ForwardPattern.Pattern_3, { fnComputeBlocks: 1, maxWarmupSteps: 4, warmupInterval: 2, residualDiffThreshold: 1 }, 6);
    expect(interval.stats.contexts[0].cachedSteps).toEqual([1, 3, 4, 5]);
  });

  it('a static steps mask caches the 0 steps and computes the 1 steps, a dynamic one decides by the diff', () => {
    const mask = [1, 1, 0, 0, 1, 0, 0, 0, 1, 0];
    const fixed = cachedRun(
      ForwardPattern.Pattern_2,
      { fnComputeBlocks: 1, maxWarmupSteps: 8, residualDiffThreshold: 0, stepsComputationMask: mask, stepsComputationPolicy: 'static' },
      10,
    );
    expect(fixed.stats.contexts[0].cachedSteps).toEqual([2, 3, 5, 6, 7, 9]);
    expect(fixed.stats.contexts[0].decisions.map((d) => d.reason).slice(0, 3)).toEqual(['warmup', 'warmup', 'static-mask']);

    const dynamic = cachedRun(
      ForwardPattern.Pattern_2,
      { fnComputeBlocks: 1, maxWarmupSteps: 8, residualDiffThreshold: 1e-12, stepsComputationMask: mask },
      10,
    );
    expect(dynamic.stats.contexts[0].cachedSteps).toEqual([]);
    expect(Object.keys(dynamic.stats.contexts[0].residualDiffs).map(Number)).toEqual([2, 3, 5, 6, 7, 9]);
  });

  it('a cached step adds the middle residual of the last computed step to the Fn output, then runs Bn', () => {
    const ops = new PlainTensorOps();
    const f = (step: number) => 1 + step * step;
    const blocks = [0.5, 1, 2, 3, 0.25].map((c) => new AdditiveBlock(ops, c, f));
    const transformer = { blocks };
    enableCache(new BlockAdapter({ transformer, blocks: 'blocks', forwardPattern: ForwardPattern.Pattern_3, ops }), {
      fnComputeBlocks: 1,
      bnComputeBlocks: 1,
      maxWarmupSteps: 2,
      residualDiffThreshold: 1,
    });
    const x = ops.tensor([1, 2, 3]);
    const runner = transformer.blocks[0];
    const outputs = [0, 1, 2, 3].map((step) => {
      const out = runner.forward(x, step);
      const values = Array.from(out.values());
      out.dispose();
      return values;
    });
    // Steps 0 and 1 are computed; steps 2 and 3 reuse the middle residual of step 1.
    const expected = (step: number, middleStep: number) =>
      [0, 1, 2].map((i) => x.data[i] + (0.5 * f(step) + (1 + 2 + 3) * f(middleStep) + 0.25 * f(step)) * (1 + 0.1 * i));
    outputs.forEach((out, step) => {
      const want = expected(step, Math.min(step, 1));
      out.forEach((v, i) => expect(v).toBeCloseTo(want[i], 12));
    });
    disableCache(transformer);
  });
});

describe('block lists: one chain or separate contexts', () => {
  const lists = { doubleBlocks: 2, singleBlocks: 4 };

  it('joins several lists into one chain with one context, or caches each list on its own', () => {
    const reference = toyPipeline(ForwardPattern.Pattern_1, lists).generate({ steps: 8 });
    const config = { fnComputeBlocks: 1, maxWarmupSteps: 2, residualDiffThreshold: 1 };

    const chained = toyPipeline(ForwardPattern.Pattern_1, lists);
    const singles = chained.transformer.singleBlocks;
    enableCache(adapterFor(chained, { chain: ['doubleBlocks', 'singleBlocks'] }), { ...config, residualDiffThreshold: 0 });
    expect(chained.transformer.doubleBlocks).toHaveLength(1);
    expect(chained.transformer.singleBlocks).toEqual([]);
    expect(chained.generate({ steps: 8 })).toEqual(reference);
    enableCache(adapterFor(chained, { chain: ['doubleBlocks', 'singleBlocks'] }), config);
    chained.generate({ steps: 8 });
    const one = summary(chained, quiet);
    expect(one.contexts.map((c) => c.name)).toEqual(['transformer.doubleBlocks+singleBlocks']);
    expect(one.computedBlocks).toBe(2 * 6 + 6 * 1);
    disableCache(chained);
    expect(chained.transformer.singleBlocks).toBe(singles);

    const separate = toyPipeline(ForwardPattern.Pattern_1, lists);
    enableCache(adapterFor(separate, ['doubleBlocks', 'singleBlocks']), config);
    separate.generate({ steps: 8 });
    const two = summary(separate, quiet);
    expect(two.contexts.map((c) => c.name)).toEqual(['transformer.doubleBlocks', 'transformer.singleBlocks']);
    expect(two.contexts.map((c) => c.cachedSteps)).toEqual([
      [2, 3, 4, 5, 6, 7],
      [2, 3, 4, 5, 6, 7],
    ]);
    expect(two.computedBlocks).toBe(2 * 6 + 6 * 2);
    disableCache(separate);
  });
});

describe('state belongs to one instance and one run', () => {
  it('two cached pipelines of the same class run independently, and the class is untouched', () => {
    const a = toyPipeline(ForwardPattern.Pattern_0);
    const b = toyPipeline(ForwardPattern.Pattern_0);
    const generate = ToyPipeline.prototype.generate;
    const forward = ToyTransformer.prototype.forward;
    enableCache(adapterFor(a), { fnComputeBlocks: 1, maxWarmupSteps: 2, residualDiffThreshold: 1 });
    enableCache(adapterFor(b), { fnComputeBlocks: 1, maxWarmupSteps: 5, residualDiffThreshold: 1 });
    a.generate({ steps: 8 });
    b.generate({ steps: 4 });
    expect(summary(a, quiet).contexts[0].cachedSteps).toEqual([2, 3, 4, 5, 6, 7]);
    expect(summary(b, quiet).contexts[0].cachedSteps).toEqual([]);
    expect(ToyPipeline.prototype.generate).toBe(generate);
    expect(ToyTransformer.prototype.forward).toBe(forward);
    disableCache(a);
    expect(cacheHandleOf(b)).toBeDefined();
    disableCache(b);
  });

  it('each generate call starts fresh state', () => {
    const pipe = toyPipeline(ForwardPattern.Pattern_0);
    enableCache(adapterFor(pipe), { fnComputeBlocks: 1, maxWarmupSteps: 2, residualDiffThreshold: 0.3 });
    const first = pipe.generate({ steps: 10 });
    const stats = summary(pipe, quiet).contexts[0];
    const second = pipe.generate({ steps: 10 });
    expect(second).toEqual(first);
    expect(summary(pipe, quiet).contexts[0].cachedSteps).toEqual(stats.cachedSteps);
    expect(summary(pipe, quiet).contexts[0].steps).toBe(10);
    disableCache(pipe);
  });

  it('transformer-only use: a rising timestep starts a new run', () => {
    const pipe = toyPipeline(ForwardPattern.Pattern_0);
    const transformer = pipe.transformer;
    const adapter = new BlockAdapter({
      transformer,
      blocks: 'transformerBlocks',
      forwardPattern: ForwardPattern.Pattern_0,
      ops: pipe.ops,
      timestepOf: (args) => args[2] as number,
    });
    enableCache(adapter, { fnComputeBlocks: 1, maxWarmupSteps: 2, residualDiffThreshold: 0.3 });
    const first = pipe.generate({ steps: 10 }); // the pipeline's generate is not wrapped: only the transformer is cached
    const once = summary(transformer, quiet).contexts[0];
    expect(pipe.generate({ steps: 10 })).toEqual(first);
    expect(summary(transformer, quiet).contexts[0].cachedSteps).toEqual(once.cachedSteps);
    expect(summary(transformer, quiet).contexts[0].steps).toBe(10);
    disableCache(transformer);
    expect(Object.hasOwn(transformer, 'forward')).toBe(false);
  });

  it('transformer-only use: numInferenceSteps starts a new run after that many steps; refreshContext resets by hand', () => {
    const pipe = toyPipeline(ForwardPattern.Pattern_0);
    const transformer = pipe.transformer;
    const adapter = new BlockAdapter({ transformer, blocks: 'transformerBlocks', forwardPattern: ForwardPattern.Pattern_0, ops: pipe.ops });
    enableCache(adapter, { fnComputeBlocks: 1, maxWarmupSteps: 2, residualDiffThreshold: 0.3, numInferenceSteps: 10 });
    const first = pipe.generate({ steps: 10 });
    const stats = summary(transformer, quiet).contexts[0];
    expect(pipe.generate({ steps: 10 })).toEqual(first);
    expect(summary(transformer, quiet).contexts[0]).toMatchObject({ steps: 10, cachedSteps: stats.cachedSteps });

    refreshContext(transformer, { fnComputeBlocks: 1, maxWarmupSteps: 2, residualDiffThreshold: 0.3 });
    pipe.generate({ steps: 6 });
    refreshContext(transformer);
    expect(pipe.generate({ steps: 10 })).toEqual(first);
    pipe.generate({ steps: 10 }); // without numInferenceSteps and a reset, this run continues the last
    expect(summary(transformer, quiet).contexts[0].steps).toBe(20);
    disableCache(transformer);
  });
});
