// The 'fastercache' policy (diffusers' FasterCache): its keys (defaults, snake_case spellings,
// refusals naming the key and listing the valid ones), its rules, and its call hook on plain
// tensors: which uncond calls it skips, the uncond prediction it rebuilds (checked against the
// formula in float64 with cumulative weights), and that it leaves no tensor alive. The FLUX and
// Wan adapters' tests compare it with diffusers end to end.
import { describe, expect, it } from 'vitest';

import {
  AttentionForecaster,
  BlockAdapter,
  disableCache,
  enableCache,
  FASTERCACHE_DEFAULTS,
  ForwardPattern,
  FasterCacheCalls,
  frequencyWeights,
  lowPassPlanes,
  parseCacheConfig,
  resolveConfig,
  skipsUncond,
  type CfgBranch,
  type FasterCacheOptions,
} from '../src/index.js';
import { PlainTensorOps, type PlainTensor } from '../src/testing.js';
import { AdditiveBlock, noise } from './toy-models.js';

const options = (settings: Record<string, unknown> = {}): FasterCacheOptions =>
  resolveConfig(parseCacheConfig({ policy: 'fastercache', ...settings }).base).policyOptions as unknown as FasterCacheOptions;

describe('fastercache keys', () => {
  it("default to diffusers' FasterCacheConfig and accept its snake_case names", () => {
    const config = resolveConfig(parseCacheConfig({ policy: 'fastercache' }).base);
    const { fnComputeBlocks, bnComputeBlocks, ...own } = FASTERCACHE_DEFAULTS;
    expect(config.policyOptions).toEqual(own);
    expect([fnComputeBlocks, bnComputeBlocks]).toEqual([0, 0]);
    expect(config.fnComputeBlocks).toBe(0);
    const o = options({
      unconditional_batch_skip_range: 3,
      spatial_attention_timestep_skip_range: [-1, 900],
      attention_weight: 0.3,
      is_guidance_distilled: true,
    });
    expect(o.unconditionalBatchSkipRange).toBe(3);
    expect(o.spatialAttentionTimestepSkipRange).toEqual([-1, 900]);
    expect(o.attentionWeight).toBe(0.3);
    expect(o.isGuidanceDistilled).toBe(true);
  });

  it.each([
    [{ unconditional_batch_skip_range: 0 }, /unconditional_batch_skip_range must be an integer >= 1, got 0/],
    [{ spatial_attention_timestep_skip_range: [681, -1] }, /spatial_attention_timestep_skip_range must be a list \[lo, hi\] of two finite numbers, lo <= hi/],
    [{ low_frequency_weight_update_timestep_range: 99 }, /low_frequency_weight_update_timestep_range must be a list \[lo, hi\]/],
    [{ alpha_high_frequency: 'x' }, /alpha_high_frequency must be a finite number/],
    [{ tensor_format: 'BSC' }, /tensor_format must be one of 'BCFHW', 'BFCHW', 'BCHW', got "BSC"/],
    [{ attention_weight_callback: 0.5 }, /attention_weight_callback.*attention_weight/s],
    [{ residual_diff_threshold: 0.1 }, /residual_diff_threshold.*fastercache/s],
  ])('refuse %j, naming the key and the valid values', (settings, message) => {
    expect(() => resolveConfig(parseCacheConfig({ policy: 'fastercache', ...settings }).base)).toThrow(message);
  });
});

describe('fastercache on a model', () => {
  it('refuses a guidance-distilled run on a model whose adapter declares no attention sites (nothing would act), and takes one with CFG', () => {
    const ops = new PlainTensorOps();
    const transformer = { blocks: [1, 2].map((c) => new AdditiveBlock(ops, c, (s) => s)) };
    const adapter = () => new BlockAdapter({ transformer, blocks: 'blocks', forwardPattern: ForwardPattern.Pattern_3, ops });
    expect(() => enableCache(adapter(), { policy: 'fastercache', is_guidance_distilled: true })).toThrow(
      /'fastercache' acts on attention modules.*declares no attention sites/,
    );
    enableCache(adapter(), { policy: 'fastercache' });
    expect(disableCache(transformer)).toBe(true);
  });
});

describe('fastercache rules', () => {
  it("skip the uncond call as diffusers' denoiser hook does: after step 0, within the range, off every N-th step, never when distilled", () => {
    const o = options({ unconditional_batch_skip_range: 3, unconditional_batch_timestep_skip_range: [-1, 900] });
    const timesteps = [999, 950, 899, 850, 700, 600, 500];
    expect(timesteps.map((t, i) => skipsUncond(o, i, t))).toEqual([false, false, true, false, true, true, false]);
    expect(timesteps.some((t, i) => skipsUncond({ ...o, isGuidanceDistilled: true }, i, t))).toBe(false);
  });

  it('weigh the low and high bands by alpha within their ranges, else 1', () => {
    const o = options();
    expect(frequencyWeights(o, 950)).toEqual({ low: 1, high: 1 });
    expect(frequencyWeights(o, 500)).toEqual({ low: 1.1, high: 1 });
    expect(frequencyWeights(o, 200)).toEqual({ low: 1.1, high: 1.1 });
    expect(frequencyWeights(o, 50)).toEqual({ low: 1, high: 1.1 });
  });
});

describe('the fastercache call hook', () => {
  const shape = [1, 2, 2, 5, 10]; // (B, C, F, H, W): radius 1
  const size = shape.reduce((a, b) => a * b);
  const o = options({
    unconditional_batch_skip_range: 3,
    unconditional_batch_timestep_skip_range: [-1, 950],
    low_frequency_weight_update_timestep_range: [-1, 800],
    high_frequency_weight_update_timestep_range: [-1, 600],
    alpha_low_frequency: 1.2,
    alpha_high_frequency: 1.05,
  });
  const timesteps = [999, 900, 800, 700, 600, 500, 400];

  it('runs the uncond call on computed steps and rebuilds it as cond + w_h·d + (w_l − w_h)·LowPass(d), weights cumulative', () => {
    const ops = new PlainTensorOps();
    const hook = new FasterCacheCalls(ops, o);
    const ran: string[] = [];
    let d: Float64Array | undefined;
    let weights = { low: 1, high: 1 };
    const call = (step: number, branch: CfgBranch, values: number[]) =>
      hook.run({ step, branch, timestep: timesteps[step] }, () => {
        ran.push(`${step}:${branch}`);
        return ops.tensor(values, shape);
      });
    for (let step = 0; step < timesteps.length; step++) {
      const cond = noise(size, 10 + step);
      const uncond = noise(size, 100 + step);
      const c = call(step, 'cond', cond);
      const u = call(step, 'uncond', uncond);
      expect(u.skipped).toBe(skipsUncond(o, step, timesteps[step]));
      if (!u.skipped) {
        d = Float64Array.from(uncond, (x, i) => x - cond[i]);
        weights = { low: 1, high: 1 };
        expect(Array.from(u.output.values())).toEqual(uncond);
      } else {
        const w = frequencyWeights(o, timesteps[step]);
        weights = { low: weights.low * w.low, high: weights.high * w.high };
        const delta = d as Float64Array;
        const low = lowPassPlanes(delta, 5, 10);
        const got = u.output.values();
        for (let i = 0; i < size; i++) expect(got[i]).toBeCloseTo(cond[i] + weights.high * (delta[i] - low[i]) + weights.low * low[i], 12);
      }
      for (const t of [c.output, u.output] as PlainTensor[]) t.dispose();
    }
    expect(ran.filter((r) => r.endsWith('uncond'))).toEqual(['0:uncond', '3:uncond', '6:uncond']);
    expect(hook.report()).toEqual({ uncondSkippedSteps: [1, 2, 4, 5], forecastAttention: {} });
    hook.clear();
    expect(ops.liveCount).toBe(0);
  });

  it('warns that batched [uncond, cond] calls cannot be halved, and runs them', () => {
    const ops = new PlainTensorOps();
    const warnings: string[] = [];
    const hook = new FasterCacheCalls(ops, o, (message) => warnings.push(message));
    for (let step = 0; step < 3; step++) {
      const { output, skipped } = hook.run({ step, branch: 'batched', timestep: timesteps[step] }, () => ops.tensor(noise(size, step), shape));
      expect(skipped).toBe(false);
      output.dispose();
    }
    expect(warnings[0]).toMatch(/step 0 is one call on the batch \[uncond, cond\], which cannot be halved/);
    hook.clear();
    expect(ops.liveCount).toBe(0);
  });

  it('refuses an output without (H, W) planes, such as packed tokens, pointing to is_guidance_distilled', () => {
    const ops = new PlainTensorOps();
    const hook = new FasterCacheCalls(ops, o);
    hook.run({ step: 0, branch: 'cond', timestep: 999 }, () => ops.tensor(noise(64, 1), [1, 4, 16])).output.dispose();
    expect(() => hook.run({ step: 0, branch: 'uncond', timestep: 999 }, () => ops.tensor(noise(64, 2), [1, 4, 16]))).toThrow(
      /tensor_format 'BCFHW' needs a transformer output of rank 5.*got shape \[1,4,16\].*is_guidance_distilled: true/,
    );
    hook.clear();
    expect(ops.liveCount).toBe(1); // the uncond output the failed call made, which its caller owns
  });
});

describe('the fastercache attention forecast', () => {
  const rule = { blockSkipRange: 2, timestepSkipRange: [-1, 681] as const, weight: 0.3, isGuidanceDistilled: false };
  const timesteps = [999, 700, 650, 600, 550, 500];

  it("forecasts a cond call as t + (t − t₂)·w where the rules allow it and the step's uncond is rebuilt, element by element for several outputs", () => {
    const ops = new PlainTensorOps();
    const site = new AttentionForecaster(ops, rule);
    const kept: number[][][] = [];
    const computed: string[] = [];
    for (let step = 0; step < timesteps.length; step++) {
      const call = (branch: CfgBranch, uncondRebuilt: boolean) =>
        site.run({ pipelineStep: step, branch, iteration: step, timestep: timesteps[step], uncondRebuilt }, () => {
          computed.push(`${step}:${branch}`);
          return [ops.tensor(noise(6, step * 2 + (branch === 'cond' ? 0 : 1))), ops.tensor(noise(4, 50 + step))];
        });
      // Steps 3 and 5 rebuild their uncond (it is not called); the others call it.
      const rebuilt = step === 3 || step === 5;
      const cond = call('cond', rebuilt);
      if (!rebuilt) for (const t of call('uncond', false)) t.dispose();
      const values = cond.map((t) => Array.from(t.values()));
      if (rebuilt) {
        const [t2, t1] = [kept.at(-2) ?? kept.at(-1), kept.at(-1)] as number[][][];
        values.forEach((v, k) => v.forEach((x, i) => expect(x).toBeCloseTo(t1[k][i] + (t1[k][i] - t2[k][i]) * 0.3, 12)));
      }
      kept.push(values);
      for (const t of cond) t.dispose();
    }
    // Step 3 is forecast (within the range, odd); step 5 too; computed steps are cached as they come.
    expect(site.forecastSteps).toEqual([3, 5]);
    expect(computed.filter((c) => c.endsWith(':cond'))).toEqual(['0:cond', '1:cond', '2:cond', '4:cond']);
    site.clear();
    expect(ops.liveCount).toBe(0);
  });

  it('forecasts a guidance-distilled model whatever the uncond does, never at its first call, and never outside the range', () => {
    const ops = new PlainTensorOps();
    const site = new AttentionForecaster(ops, { ...rule, isGuidanceDistilled: true, timestepSkipRange: [-1, 1000] });
    for (let step = 0; step < timesteps.length; step++) {
      site
        .run({ pipelineStep: step, branch: 'cond', iteration: step, timestep: timesteps[step], uncondRebuilt: false }, () => ops.tensor(noise(3, step)))
        .dispose();
    }
    expect(site.forecastSteps).toEqual([1, 3, 5]);
    site.clear();
    expect(ops.liveCount).toBe(0);
  });
});
