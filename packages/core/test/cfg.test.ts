import { describe, expect, it } from 'vitest';

import { BlockAdapter, disableCache, enableCache, ForwardPattern, summary, type CacheConfigInput } from '../src/index.js';
import { toyPipeline, type DenoiseOptions, type ToyPipeline } from './toy-models.js';

const STEPS = 12;
const CONFIG = { fnComputeBlocks: 1, maxWarmupSteps: 2, residualDiffThreshold: 0.25 };

function run(options: Omit<DenoiseOptions, 'steps'>, adapter: { hasSeparateCfg?: boolean; timestep?: boolean } = {}, config: CacheConfigInput = CONFIG) {
  const pipe: ToyPipeline = toyPipeline(ForwardPattern.Pattern_0);
  enableCache(
    new BlockAdapter({
      pipe,
      transformer: pipe.transformer,
      blocks: 'transformerBlocks',
      forwardPattern: ForwardPattern.Pattern_0,
      ops: pipe.ops,
      hasSeparateCfg: adapter.hasSeparateCfg,
      timestepOf: adapter.timestep ? (args) => args[2] as number : undefined,
    }),
    config,
  );
  const latents = pipe.generate({ steps: STEPS, ...options });
  const stats = summary(pipe, { print: false }).contexts[0];
  disableCache(pipe);
  return { latents, stats };
}

describe('CFG branches', () => {
  it('announced cond and uncond calls keep separate state, one step per pipeline step', () => {
    const { stats } = run({ guidance: 4, announce: true });
    expect(stats.steps).toBe(STEPS);
    expect(stats.transformerCalls).toBe(2 * STEPS);
    expect(stats.branches.map((b) => [b.role, b.announcedAs])).toEqual([
      ['main', 'cond'],
      ['cfg', 'uncond'],
    ]);
    expect(stats.cachedSteps.length).toBeGreaterThan(0);
    expect(stats.cfgCachedSteps.length).toBeGreaterThan(0);
    expect(stats.cachedSteps).not.toEqual(stats.cfgCachedSteps);
    expect(Object.keys(stats.residualDiffs)).toHaveLength(STEPS - 2);
    expect(Object.keys(stats.cfgResidualDiffs)).toHaveLength(STEPS - 2);

    // Without announcements and without separate CFG (cache-dit's behaviour for such an
    // adapter), cond and uncond calls share one state and each call counts as a step.
    const shared = run({ guidance: 4 });
    expect(shared.stats.steps).toBe(2 * STEPS);
    expect(shared.stats.branches.map((b) => [b.role, b.announcedAs])).toEqual([['main', undefined]]);
  });

  it('call parity is the fallback: it gives the announced result when the pipeline calls cond then uncond', () => {
    const announced = run({ guidance: 4, announce: true });
    const parity = run({ guidance: 4 }, { hasSeparateCfg: true });
    expect(parity.latents).toEqual(announced.latents);
    expect(parity.stats.cachedSteps).toEqual(announced.stats.cachedSteps);
    expect(parity.stats.cfgCachedSteps).toEqual(announced.stats.cfgCachedSteps);
    expect(parity.stats.residualDiffs).toEqual(announced.stats.residualDiffs);
  });

  it('cfgComputeFirst makes the first call (cond) the CFG role, announced or by parity', () => {
    const plain = run({ guidance: 4, announce: true });
    const config = { ...CONFIG, cfgComputeFirst: true };
    const announced = run({ guidance: 4, announce: true }, {}, config);
    const parity = run({ guidance: 4 }, { hasSeparateCfg: true }, config);
    for (const r of [announced, parity]) {
      expect(r.latents).toEqual(plain.latents);
      expect(r.stats.cfgCachedSteps).toEqual(plain.stats.cachedSteps);
      expect(r.stats.cachedSteps).toEqual(plain.stats.cfgCachedSteps);
    }
    expect(announced.stats.branches.map((b) => [b.role, b.announcedAs])).toEqual([
      ['main', 'uncond'],
      ['cfg', 'cond'],
    ]);
  });

  it('cfgDiffComputeSeparate false: the uncond branch reuses the cond diff of the same step', () => {
    const { stats } = run({ guidance: 4, announce: true }, {}, { ...CONFIG, cfgDiffComputeSeparate: false });
    for (const [step, diff] of Object.entries(stats.cfgResidualDiffs)) {
      if (step in stats.residualDiffs) expect(diff).toBe(stats.residualDiffs[step]);
    }
    expect(Object.keys(stats.cfgResidualDiffs).some((step) => step in stats.residualDiffs)).toBe(true);
  });

  it('guidance <= 1 (no uncond call) leaves the counters intact when calls are announced or the timestep is known', () => {
    const announced = run({ guidance: 1, announce: true }, { hasSeparateCfg: true });
    const byTimestep = run({ guidance: 1 }, { hasSeparateCfg: true, timestep: true });
    for (const r of [announced, byTimestep]) {
      expect(r.stats.steps).toBe(STEPS);
      expect(r.stats.branches.map((b) => b.role)).toEqual(['main']);
    }
    expect(byTimestep.latents).toEqual(announced.latents);
    expect(byTimestep.stats.cachedSteps).toEqual(announced.stats.cachedSteps);
    // Parity alone cannot tell: it pairs consecutive cond calls as cond and uncond.
    const parity = run({ guidance: 1 }, { hasSeparateCfg: true });
    expect(parity.stats.steps).toBe(STEPS / 2);
  });

  it('batched cond + uncond calls share one decision per step', () => {
    const { stats } = run({ guidance: 1, batched: true, announce: true }, { hasSeparateCfg: true });
    expect(stats.steps).toBe(STEPS);
    expect(stats.branches.map((b) => [b.role, b.announcedAs])).toEqual([['main', 'batched']]);
    expect(stats.decisions).toHaveLength(STEPS);
  });
});
