// The cache-policy interface: a policy registered by decorator here, in a test, as a third
// party's package would, is selected by name from the config, validated like core's keys, and
// drives the engine; an absent `policy` is DBCache exactly.
import { describe, expect, it } from 'vitest';

import {
  BlockAdapter,
  CacheConfigError,
  DEFAULT_CACHE_CONFIG,
  disableCache,
  enableCache,
  ForwardPattern,
  integer,
  LastResidualStore,
  parseCacheConfig,
  policyRegistry,
  registerPolicy,
  resolveConfig,
  scmMask,
  strify,
  summary,
  type CacheConfig,
  type CachePolicy,
  type CachePolicyFactory,
  type Decision,
  type StepDecider,
  type TensorOps,
} from '../src/index.js';
import { PlainTensorOps } from '../src/testing.js';
import { AdditiveBlock, toyPipeline } from './toy-models.js';

/** Computes every `computeEvery`-th step and reuses the last middle residual in between. */
class EveryNthDecider implements StepDecider {
  readonly cachedSteps: number[] = [];
  readonly residualDiffs = new Map<number, number>();

  constructor(private readonly every: number) {}

  decide(step: number, hasReference: boolean): Decision {
    if (step % this.every === 0 || !hasReference) return { cache: false, reason: 'nth-step' };
    this.cachedSteps.push(step);
    return { cache: true, reason: 'between-nth' };
  }
}

@registerPolicy({ name: 'every-nth', keys: { computeEvery: { snake: 'compute_every', check: integer(1) } }, defaults: { computeEvery: 2 } })
class EveryNthPolicyFactory implements CachePolicyFactory {
  create(config: CacheConfig): CachePolicy {
    const every = config.policyOptions.computeEvery as number;
    return {
      cachingPossible: every > 1,
      createDecider: () => new EveryNthDecider(every),
      createStore: <T>(ops: TensorOps<T>) => new LastResidualStore(ops),
      storesResidual: () => true,
    };
  }
}

/** Blocks whose outputs are known in closed form: block c adds c * f(step) * (1 + 0.1 i). */
function additiveRun(config: Record<string, unknown>, steps: number) {
  const ops = new PlainTensorOps();
  const f = (step: number) => 1 + step * step;
  const transformer = { blocks: [0.5, 1, 2, 3, 0.25].map((c) => new AdditiveBlock(ops, c, f)) };
  enableCache(new BlockAdapter({ transformer, blocks: 'blocks', forwardPattern: ForwardPattern.Pattern_3, ops }), config);
  const x = ops.tensor([1, 2, 3]);
  const outputs = Array.from({ length: steps }, (_, step) => {
    const out = transformer.blocks[0].forward(x, step);
    const values = Array.from(out.values());
    out.dispose();
    return values;
  });
  const stats = summary(transformer, { print: false });
  disableCache(transformer);
  // Fn = block 0 and Bn = block 4 always run; the middle blocks (1 + 2 + 3) ran at `middleStep`.
  const expected = (step: number, middleStep: number) => [0, 1, 2].map((i) => x.data[i] + (0.5 * f(step) + 6 * f(middleStep) + 0.25 * f(step)) * (1 + 0.1 * i));
  return { outputs, stats, expected };
}

describe('a policy registered by decorator', () => {
  it('is selected by name, gets its own keys with defaults, and decides the steps', () => {
    expect(policyRegistry().names()).toEqual(['dbcache', 'dbprune', 'every-nth', 'fastercache', 'magcache', 'pab', 'scm']);
    const { outputs, stats, expected } = additiveRun({ policy: 'every-nth', Fn_compute_blocks: 1, Bn_compute_blocks: 1, compute_every: 3 }, 7);
    const context = stats.contexts[0];
    expect(context.config.policyOptions).toEqual({ computeEvery: 3 });
    expect(context.cachedSteps).toEqual([1, 2, 4, 5]);
    expect(context.decisions.map((d) => d.reason)).toEqual(['nth-step', 'between-nth', 'between-nth', 'nth-step', 'between-nth', 'between-nth', 'nth-step']);
    outputs.forEach((out, step) => {
      const want = expected(step, step - (step % 3));
      out.forEach((v, i) => expect(v).toBeCloseTo(want[i], 12));
    });
    expect(resolveConfig(parseCacheConfig({ policy: 'every-nth' }).base).policyOptions).toEqual({ computeEvery: 2 });
  });

  it("reads its keys in cache-dit's sections and in params modifiers, which inherit the base's policy", () => {
    const yaml = 'cache_config:\n  policy: every-nth\n  compute_every: 4\n  Fn_compute_blocks: 2\n';
    expect(resolveConfig(parseCacheConfig(yaml).base)).toMatchObject({ policy: 'every-nth', fnComputeBlocks: 2, policyOptions: { computeEvery: 4 } });
    const parsed = parseCacheConfig({ policy: 'every-nth', paramsModifiers: [{ computeEvery: 5 }] });
    expect(resolveConfig(parsed.base, parsed.modifiers?.[0] ?? {}).policyOptions).toEqual({ computeEvery: 5 });
  });

  it('refuses a second policy under the same name', () => {
    expect(() =>
      registerPolicy({ name: 'every-nth', keys: {}, defaults: {} })(
        class Other implements CachePolicyFactory {
          create(): CachePolicy {
            throw new Error('never built');
          }
        },
      ),
    ).toThrow(/policy 'every-nth' is already registered by EveryNthPolicyFactory/);
  });
});

describe('config errors name the key and list the valid ones', () => {
  const failure = (input: Record<string, unknown>) => {
    try {
      resolveConfig(parseCacheConfig(input).base);
    } catch (e) {
      expect(e).toBeInstanceOf(CacheConfigError);
      return e as CacheConfigError;
    }
    throw new Error('expected a CacheConfigError');
  };

  it('an unknown policy, with the registered ones', () => {
    const e = failure({ policy: 'teacache', residual_diff_threshold: 0.1 });
    expect(e.key).toBe('policy');
    expect(e.message).toMatch(
      /^Invalid cache config: policy must be a registered cache policy: one of 'dbcache', 'dbprune', 'every-nth', 'fastercache', 'magcache', 'pab', 'scm', got "teacache"/,
    );
  });

  it("another policy's key, with this policy's keys and not DBCache's", () => {
    const e = failure({ policy: 'every-nth', residual_diff_threshold: 0.1 });
    expect(e.key).toBe('residual_diff_threshold');
    expect(e.message).toMatch(/unknown key "residual_diff_threshold"/);
    expect(e.message).toMatch(
      /Valid keys with policy 'every-nth' \(camelCase, or cache-dit's snake_case in parentheses\): fnComputeBlocks \(Fn_compute_blocks\), bnComputeBlocks \(Bn_compute_blocks\), enableSeparateCfg \(enable_separate_cfg\), cfgComputeFirst \(cfg_compute_first\), cfgDiffComputeSeparate \(cfg_diff_compute_separate\), numInferenceSteps \(num_inference_steps\), policy, computeEvery \(compute_every\);/,
    );
    expect(failure({ compute_every: 3 }).message).toMatch(
      /unknown key "compute_every".*Valid keys with policy 'dbcache'.*residualDiffThreshold \(residual_diff_threshold\)/s,
    );
  });

  it("a bad value of the policy's key", () => {
    const e = failure({ policy: 'every-nth', compute_every: 0 });
    expect(e.message).toMatch(/^Invalid cache config: compute_every must be an integer >= 1, got 0/);
  });
});

describe("policy absent is 'dbcache'", () => {
  it('resolves to the same config and the same outputs as naming it', () => {
    const settings = { Fn_compute_blocks: 1, max_warmup_steps: 2, residual_diff_threshold: 0.2, taylorseer_order: 2 };
    expect(resolveConfig(parseCacheConfig(settings).base)).toEqual(resolveConfig(parseCacheConfig({ ...settings, policy: 'dbcache' }).base));
    expect(DEFAULT_CACHE_CONFIG.policy).toBe('dbcache');
    const run = (config: Record<string, unknown>) => {
      const pipe = toyPipeline(ForwardPattern.Pattern_0);
      enableCache(
        new BlockAdapter({ pipe, transformer: pipe.transformer, blocks: 'transformerBlocks', forwardPattern: pipe.transformer.pattern, ops: pipe.ops }),
        config,
      );
      const out = pipe.generate({ steps: 12 });
      const cached = summary(pipe, { print: false }).contexts[0].cachedSteps;
      disableCache(pipe);
      return { out, cached };
    };
    const absent = run(settings);
    const named = run({ ...settings, policy: 'dbcache' });
    expect(absent.cached.length).toBeGreaterThan(2);
    expect(named.cached).toEqual(absent.cached);
    expect(named.out).toEqual(absent.out);
  });
});

describe("the 'scm' policy: cache-dit's steps computation masks", () => {
  it("gives cache-dit's preset masks (values from its steps_mask) and refuses step counts it has none for", () => {
    expect(scmMask('slow', 28).join('')).toBe('1111111101110011100110010001');
    expect(scmMask('ultra', 50).join('')).toBe('11111110001100000000011000000000001100000000000001');
    expect(scmMask('medium', 4).join('')).toBe('1101');
    expect(() => scmMask('fast', 7)).toThrow(/cache-dit's presets cover 4, 6 and 8-100 steps, not 7/);
  });

  it("takes DBCache's keys and its preset, not an explicit mask", () => {
    expect(resolveConfig(parseCacheConfig({ policy: 'scm', mask_policy: 'fast', residual_diff_threshold: 0.3 }).base)).toMatchObject({
      policy: 'scm',
      residualDiffThreshold: 0.3,
      stepsComputationMask: null,
      policyOptions: { maskPolicy: 'fast' },
    });
    expect(resolveConfig(parseCacheConfig({ policy: 'scm' }).base).policyOptions).toEqual({ maskPolicy: 'medium' });
    expect(() => parseCacheConfig({ policy: 'scm', steps_computation_mask: [1, 0] })).toThrow(
      /unknown key "steps_computation_mask".*Valid keys with policy 'scm'.*residualDiffThreshold \(residual_diff_threshold\).*maskPolicy \(mask_policy\);/s,
    );
    expect(() => parseCacheConfig({ policy: 'scm', mask_policy: 'turbo' })).toThrow(
      /mask_policy must be one of 'slow', 'medium', 'fast', 'ultra', got "turbo"/,
    );
  });

  it('decides as DBCache with the preset mask at the announced step count', () => {
    const settings = { Fn_compute_blocks: 1, residual_diff_threshold: 0.08, steps_computation_policy: 'static' };
    const run = (config: Record<string, unknown>) => {
      const pipe = toyPipeline(ForwardPattern.Pattern_0);
      enableCache(
        new BlockAdapter({ pipe, transformer: pipe.transformer, blocks: 'transformerBlocks', forwardPattern: pipe.transformer.pattern, ops: pipe.ops }),
        config,
      );
      const out = pipe.generate({ steps: 20, announce: true });
      const cached = summary(pipe, { print: false }).contexts[0].cachedSteps;
      disableCache(pipe);
      return { out, cached };
    };
    const scm = run({ ...settings, policy: 'scm', mask_policy: 'fast' });
    // fast at 20 steps: 11111101000000000001; 'static' caches every 0.
    expect(scm.cached).toEqual([6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]);
    const explicit = run({ ...settings, steps_computation_mask: scmMask('fast', 20) });
    expect(explicit.cached).toEqual(scm.cached);
    expect(explicit.out).toEqual(scm.out);
  });

  it('strify names the policy, its preset and its mask policy', () => {
    expect(strify({ policy: 'scm', Fn_compute_blocks: 1, mask_policy: 'fast', steps_computation_policy: 'static' })).toBe(
      'scm_F1B0_W8I1M0MC0_R0.08_T0O0_static_maskPolicy-fast',
    );
    expect(strify({ policy: 'every-nth', compute_every: 3 })).toBe('every-nth_F8B0_computeEvery-3');
  });

  it("needs the run's step count", () => {
    const ops = new PlainTensorOps();
    const transformer = { blocks: [1, 2].map((c) => new AdditiveBlock(ops, c, (s) => s)) };
    enableCache(new BlockAdapter({ transformer, blocks: 'blocks', forwardPattern: ForwardPattern.Pattern_3, ops }), { policy: 'scm', Fn_compute_blocks: 1 });
    expect(() => transformer.blocks[0].forward(ops.tensor([1]), 0)).toThrow(/cache policy 'scm' needs the run's step count.*numInferenceSteps/);
    disableCache(transformer);
  });
});
