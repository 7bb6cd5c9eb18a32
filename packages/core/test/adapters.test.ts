import 'reflect-metadata';

import { injectable } from 'tsyringe';
import { describe, expect, it } from 'vitest';

import {
  AdapterRegistry,
  BlockAdapter,
  CacheManager,
  cacheHandleOf,
  disableCache,
  ditcacheContainer,
  enableCache,
  ForwardPattern,
  registerAdapter,
  runTransformerCall,
  summary,
  supportedPipelines,
  type AdapterTarget,
  type BlockAdapterFactory,
} from '../src/index.js';
import { ToyBlock, ToyPipeline, ToyTransformer, toyBlocks, toyPipeline } from './toy-models.js';

const quiet = { print: false } as const;

/** A service the factory asks for in its constructor, without an @inject token. */
@injectable()
class ToyFamily {
  readonly blocks = 'transformerBlocks';
  readonly hasSeparateCfg = true;
}

@registerAdapter({ transformerClass: 'ToyTransformer', pipelines: ['ToyPipeline', 'ToyImg2ImgPipeline'] })
class ToyAdapterFactory implements BlockAdapterFactory {
  constructor(readonly family: ToyFamily) {}

  createBlockAdapter({ pipe, transformer }: AdapterTarget): BlockAdapter<unknown> {
    const toy = transformer as ToyTransformer;
    return new BlockAdapter({
      pipe,
      transformer: toy,
      blocks: this.family.blocks,
      forwardPattern: toy.pattern,
      ops: toy.ops,
      hasSeparateCfg: this.family.hasSeparateCfg,
    });
  }
}

describe('registry and dependency injection', () => {
  it('resolves constructor parameters from decorator metadata, without @inject tokens', () => {
    expect(Reflect.getMetadata('design:paramtypes', ToyAdapterFactory)).toEqual([ToyFamily]);
    expect(ditcacheContainer.resolve(ToyAdapterFactory).family).toBeInstanceOf(ToyFamily);
    expect(Reflect.getMetadata('design:paramtypes', CacheManager)).toEqual([AdapterRegistry]);
    expect(ditcacheContainer.resolve(CacheManager)).toBe(ditcacheContainer.resolve(CacheManager));
  });

  it('lists the registered pipelines', () => {
    expect(supportedPipelines()).toEqual(expect.arrayContaining(['ToyPipeline', 'ToyImg2ImgPipeline']));
  });

  it('finds the adapter by pipeline class, parent class, transformer class, or for the transformer alone', () => {
    class ToyImg2ImgPipeline extends ToyPipeline {}
    class SomeoneElsesPipeline {
      constructor(readonly transformer: ToyTransformer) {}
    }
    const base = toyPipeline(ForwardPattern.Pattern_0);
    const variant = new ToyImg2ImgPipeline(base.transformer, base.ops);
    class CustomToy extends ToyPipeline {}
    const subclass = new CustomToy(toyPipeline(ForwardPattern.Pattern_0).transformer, base.ops);
    const foreign = new SomeoneElsesPipeline(toyPipeline(ForwardPattern.Pattern_0).transformer);
    const alone = toyPipeline(ForwardPattern.Pattern_0).transformer;
    for (const target of [base, variant, subclass, foreign, alone]) {
      const handle = enableCache(target, { Fn_compute_blocks: 1, max_warmup_steps: 2, residual_diff_threshold: 0.2 });
      expect(handle.contexts.map((c) => c.layout.name)).toEqual(['transformer.transformerBlocks']);
      expect(cacheHandleOf(target)).toBe(handle);
      expect(disableCache(target)).toBe(true);
    }
    expect(cacheHandleOf(base)).toBeUndefined();
  });

  it('reports a model without an adapter, and a name registered twice', () => {
    expect(() => enableCache(new (class StrangePipeline {})())).toThrow(
      /no adapter is registered for StrangePipeline\. Installed adapters cover the pipelines .*ToyPipeline.* and the transformer classes ToyTransformer\./,
    );
    expect(() =>
      registerAdapter({ pipelines: ['ToyPipeline'] })(
        class Other implements BlockAdapterFactory {
          createBlockAdapter(): never {
            throw new Error('unused');
          }
        },
      ),
    ).toThrow(/pipeline ToyPipeline is already registered by ToyAdapterFactory/);
  });

  it('uses the registered adapter end to end: hasSeparateCfg from the family, stats by branch', () => {
    const pipe = toyPipeline(ForwardPattern.Pattern_0);
    enableCache(pipe, { Fn_compute_blocks: 1, max_warmup_steps: 2, residual_diff_threshold: 0.3 });
    pipe.generate({ steps: 8, guidance: 3 });
    const stats = summary(pipe, quiet).contexts[0];
    expect(stats.steps).toBe(8);
    expect(stats.branches.map((b) => b.role)).toEqual(['main', 'cfg']);
    disableCache(pipe);
  });
});

describe('BlockAdapter', () => {
  const pipe = toyPipeline(ForwardPattern.Pattern_0, { transformerBlocks: 3, singleTransformerBlocks: 5 });
  const base = { transformer: pipe.transformer, ops: pipe.ops };

  it('checks its options', () => {
    expect(() => new BlockAdapter({ ...base, blocks: 'transformerBlocks' })).toThrow(/forwardPattern is required/);
    expect(() => new BlockAdapter({ ...base, forwardPattern: 0 })).toThrow(/give blocks .* or auto: true/);
    expect(() => new BlockAdapter({ ...base, blocks: ['transformerBlocks', 'singleTransformerBlocks'], forwardPattern: [0] })).toThrow(
      /1 forward patterns for 2 cache contexts/,
    );
    expect(() => new BlockAdapter({ ...base, blocks: 'transformerBlocks', forwardPattern: 0, paramsModifiers: [{}, {}] })).toThrow(
      /2 paramsModifiers for 1 cache contexts/,
    );
    expect(() => new BlockAdapter({ ...base, transformer: [pipe.transformer, pipe.transformer], blocks: 'transformerBlocks', forwardPattern: 0 })).toThrow(
      /with 2 transformers, blocks must list one entry per transformer/,
    );
    expect(() => new BlockAdapter({ ...base, blocks: { chain: [] }, forwardPattern: 0 })).toThrow(/a block list is a property name or \{ chain/);
    expect(() => new BlockAdapter({ ...base, auto: true, blocks: 'transformerBlocks' })).toThrow(/either blocks or auto/);
    expect(() => new BlockAdapter({ ...base, forwardPattern: 9 as ForwardPattern, blocks: 'transformerBlocks' })).toThrow(/unknown ForwardPattern 9/);
  });

  it('checks the lists and their patterns when caching is enabled, leaving the model untouched on failure', () => {
    const lists = pipe.transformer.transformerBlocks;
    const tryEnable = (options: Partial<ConstructorParameters<typeof BlockAdapter>[0]>, config = {}) =>
      enableCache(new BlockAdapter({ ...base, blocks: 'transformerBlocks', forwardPattern: 0, ...options }), config);
    expect(() => tryEnable({ blocks: 'missing' })).toThrow(/transformer\.missing is not a non-empty list of blocks/);
    expect(() => tryEnable({ blocks: 'ops.nothing.here' })).toThrow(/nothing is not an object/);
    expect(() => tryEnable({ forwardPattern: ForwardPattern.Pattern_2 })).toThrow(
      /block 0 of transformer\.transformerBlocks states Pattern_0, but the chain uses Pattern_2/,
    );
    expect(() => tryEnable({}, { Fn_compute_blocks: 2, Bn_compute_blocks: 2 })).toThrow(
      /fnComputeBlocks \(2\) \+ bnComputeBlocks \(2\) exceeds the 3 blocks of transformer\.transformerBlocks/,
    );
    expect(pipe.transformer.transformerBlocks).toBe(lists);

    const oneArgument = { ops: pipe.ops, blocks: [{ forward: (h: unknown) => h }] };
    expect(() => enableCache(new BlockAdapter({ transformer: oneArgument, blocks: 'blocks', forwardPattern: 0, ops: pipe.ops }))).toThrow(
      /block 0 of transformer\.blocks takes one argument, but Pattern_0 passes \(h, e, \.\.\.\)/,
    );
    const wrongOutput = { blocks: [{ forward: (...args: unknown[]) => [args[0], args[0]] }] };
    enableCache(new BlockAdapter({ transformer: wrongOutput, blocks: 'blocks', forwardPattern: 3, ops: pipe.ops }), {
      residual_diff_threshold: 0,
      Fn_compute_blocks: 1,
    });
    expect(() => wrongOutput.blocks[0].forward(pipe.ops.tensor([1]), 0)).toThrow(/block 0 returned an array of 2, but Pattern_3 blocks return a single tensor/);
    disableCache(wrongOutput);
  });

  it('auto mode takes the longest conventionally named list and the pattern its blocks state', () => {
    class StatedBlock extends ToyBlock {
      static readonly forwardPattern = ForwardPattern.Pattern_0;
    }
    const transformer = {
      transformerBlocks: [0, 1].map((k) => new StatedBlock(pipe.ops, 0, k)),
      singleTransformerBlocks: [2, 3, 4, 5].map((k) => new StatedBlock(pipe.ops, 0, k)),
      norms: [{ forward: () => 0 }, { forward: () => 0 }, { forward: () => 0 }, { forward: () => 0 }, { forward: () => 0 }],
    };
    const handle = enableCache(new BlockAdapter({ transformer, auto: true, ops: pipe.ops }), { Fn_compute_blocks: 1 });
    expect(handle.contexts.map((c) => [c.layout.name, c.layout.blockCount])).toEqual([['transformer.singleTransformerBlocks', 4]]);
    disableCache(transformer);

    expect(() => enableCache(new BlockAdapter({ transformer: { stack: toyBlocks(pipe.ops, 0, 2) }, auto: true, forwardPattern: 0, ops: pipe.ops }))).toThrow(
      /has none of the conventional block lists/,
    );
    expect(() =>
      enableCache(new BlockAdapter({ transformer: { blocks: [{ forward: (h: unknown, e: unknown) => [h, e] }] }, auto: true, ops: pipe.ops })),
    ).toThrow(/state no forwardPattern; give forwardPattern/);
  });
});

/** Wan 2.2-like: two experts, the first for the high-noise steps, each its own cache context. */
class TwoExpertPipeline {
  constructor(
    readonly transformer: ToyTransformer,
    readonly transformer2: ToyTransformer,
  ) {}

  generate(steps: number, boundary: number): Float64Array {
    const first = new ToyPipeline(this.transformer, this.transformer.ops);
    const second = new ToyPipeline(this.transformer2, this.transformer2.ops);
    // Each expert's own pipeline announces its calls to the shared cache (steps are pipeline steps).
    const handle = cacheHandleOf(this.transformer);
    handle?.beginRun();
    const out: number[] = [];
    for (let step = 0; step < steps; step++) {
      const pipe = step < boundary ? first : second;
      const transformer = pipe.transformer;
      const x = transformer.ops.tensor([0.1 * step, 0.2, -0.3, 0.4]);
      const e = transformer.ops.tensor([0.5, -0.5]);
      const result = runTransformerCall(transformer, { step, branch: 'cond' }, () => transformer.forward(x, e, 1 - step / steps));
      out.push(result.h.values()[0]);
      for (const t of [x, e, result.h]) t.dispose();
    }
    return Float64Array.from(out);
  }
}

describe('two transformers with ParamsModifiers', () => {
  const make = () => {
    const a = toyPipeline(ForwardPattern.Pattern_2, { blocks: 4 });
    const b = toyPipeline(ForwardPattern.Pattern_2, { blocks: 4 });
    return new TwoExpertPipeline(a.transformer, b.transformer);
  };
  const adapter = (pipe: TwoExpertPipeline, paramsModifiers?: object[]) =>
    new BlockAdapter({
      pipe,
      transformer: [pipe.transformer, pipe.transformer2],
      blocks: ['blocks', 'blocks'],
      forwardPattern: ForwardPattern.Pattern_2,
      paramsModifiers,
      ops: pipe.transformer.ops,
    });
  const base = { Fn_compute_blocks: 1, max_warmup_steps: 2, residual_diff_threshold: 1 };
  const modifiers = [{ max_warmup_steps: 1, max_cached_steps: 2 }, { residual_diff_threshold: 0 }];

  it('gives each expert its own context, config and step count; its warmup starts again at its first step', () => {
    const pipe = make();
    const reference = pipe.generate(10, 6);
    enableCache(adapter(pipe, modifiers), base);
    const out = pipe.generate(10, 6);
    const [high, low] = summary(pipe, quiet).contexts;
    expect([high.name, low.name]).toEqual(['transformer.blocks', 'transformer2.blocks']);
    expect(high.config).toMatchObject({ maxWarmupSteps: 1, maxCachedSteps: 2, residualDiffThreshold: 1 });
    expect(low.config).toMatchObject({ maxWarmupSteps: 2, maxCachedSteps: -1, residualDiffThreshold: 0 });
    expect(high).toMatchObject({ steps: 6, firstPipelineStep: 0, cachedSteps: [1, 2] });
    expect(low).toMatchObject({ steps: 4, firstPipelineStep: 6, pipelineSteps: [6, 7, 8, 9], cachedSteps: [] });
    expect(low.decisions.map((d) => d.reason)).toEqual(['warmup', 'warmup', 'threshold-off', 'threshold-off']);
    expect(Array.from(out.slice(6))).toEqual(Array.from(reference.slice(6)));
    disableCache(pipe);
    expect(pipe.generate(10, 6)).toEqual(reference);
  });

  it('takes the modifiers from the config as well (params_modifiers, in context order)', () => {
    const pipe = make();
    enableCache(adapter(pipe), { ...base, params_modifiers: modifiers });
    pipe.generate(10, 6);
    expect(summary(pipe, quiet).contexts.map((c) => c.cachedSteps)).toEqual([[1, 2], []]);
    expect(() => enableCache(adapter(pipe), { ...base, params_modifiers: [modifiers[0]] })).toThrow(/paramsModifiers has 1 entries for 2 cache contexts/);
    disableCache(pipe);
  });
});
