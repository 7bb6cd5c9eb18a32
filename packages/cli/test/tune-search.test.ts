// The search of `ditcache tune` over fake evaluators with known monotone PSNR and speed curves,
// the tuning hints the built-in policies bring, and the preparation runs (MagCache's
// calibration) over a fake runner.
import { describe, expect, it } from 'vitest';

import {
  DBCACHE_TUNING,
  MAGCACHE_TUNING,
  SCM_TUNING,
  parseCacheConfig,
  registerPolicy,
  resolveConfig,
  scmMask,
  type CachePolicy,
  type CacheConfig,
  type CacheSummary,
  type TuningVariant,
} from '@ditcache/core';

import { UsageError } from '../src/errors.js';
import { preparedSpaces } from '../src/tune/prepare.js';
import { fastestMeetingTarget, searchConfigs, TargetNotMetError, tuneSpaces, type Measurement, type Trial } from '../src/tune/search.js';
import { tunablePolicies } from '../src/tune/tune.js';

const THRESHOLD = { key: 'residual_diff_threshold', range: [0.02, 1] as const, scale: 'log' as const };

/** A variant whose PSNR falls by `slope` dB per doubling of the threshold from `top` dB at 0.02; speed grows with it. */
function curve(name: string, top: number, slope: number, speedPerDoubling: number) {
  const variant: TuningVariant = { name, config: {}, knob: THRESHOLD };
  const measure = (t: number): Measurement => ({ meanPsnr: top - slope * Math.log2(t / 0.02), speedup: 1 + speedPerDoubling * Math.log2(t / 0.02) });
  /** The threshold where PSNR meets the target exactly. */
  const boundary = (target: number) => 0.02 * 2 ** ((top - target) / slope);
  return { variant, measure, boundary };
}

/** An evaluator over curves keyed by variant name, counting rounds and evaluations. */
function fakeEvaluator(curves: Record<string, (value: number | string | undefined) => Measurement>) {
  const rounds: (readonly Trial[])[] = [];
  const evaluate = async (trials: readonly Trial[]) => {
    rounds.push(trials);
    return trials.map((t) => curves[t.variant](t.knob?.value));
  };
  return { evaluate, rounds };
}

describe('tune search', () => {
  it('bisects a monotone threshold to the target boundary within tolerance in few evaluations', async () => {
    const c = curve('T1', 45, 5, 0.4);
    const { evaluate, rounds } = fakeEvaluator({ T1: (t) => c.measure(t as number) });
    const points = await searchConfigs([{ policy: 'dbcache', variant: c.variant }], evaluate, { targetPsnr: 35, evaluationsPerVariant: 10 });
    const boundary = c.boundary(35);
    expect(boundary).toBeCloseTo(0.08, 12);
    const feasible = points.filter((p) => p.meetsTarget).map((p) => p.knob!.value as number);
    const infeasible = points.filter((p) => !p.meetsTarget).map((p) => p.knob!.value as number);
    const [below, above] = [Math.max(...feasible), Math.min(...infeasible)];
    expect(below).toBeLessThanOrEqual(boundary);
    expect(above).toBeGreaterThan(boundary);
    // Stopped by the 5% tolerance (3-digit values), well inside the budget of 10.
    expect(above / below).toBeLessThanOrEqual(1.05 + 1e-9);
    expect(points.length).toBeLessThanOrEqual(9);
    expect(points[0].knob!.value).toBe(1);
    expect(points[1].knob!.value).toBe(0.02);
    expect(new Set(points.map((p) => p.name)).size).toBe(points.length);
    // Both ends in the first round, then one value per round.
    expect(rounds.map((r) => r.length)).toEqual([2, ...Array(points.length - 2).fill(1)]);
    const pick = fastestMeetingTarget(points, 35);
    expect(pick.knob!.value).toBe(below);
    expect(pick.measured.meanPsnr).toBeGreaterThanOrEqual(35);
    expect(pick.config).toEqual({ residual_diff_threshold: below });
  });

  it('stops at the evaluation budget', async () => {
    const c = curve('T1', 45, 5, 0.4);
    const { evaluate } = fakeEvaluator({ T1: (t) => c.measure(t as number) });
    const points = await searchConfigs([{ policy: 'dbcache', variant: c.variant }], evaluate, { targetPsnr: 35, evaluationsPerVariant: 4 });
    expect(points).toHaveLength(4);
    expect(fastestMeetingTarget(points, 35).knob!.value).toBeLessThanOrEqual(0.08);
  });

  it('evaluates only the fastest end when it keeps the target, and only the ends when the faithful one misses it', async () => {
    const easy = curve('easy', 60, 1, 0.2);
    const hard = curve('hard', 30, 1, 0.2);
    const { evaluate } = fakeEvaluator({ easy: (t) => easy.measure(t as number), hard: (t) => hard.measure(t as number) });
    const spaces = [easy, hard].map((c) => ({ policy: 'p', variant: c.variant }));
    const points = await searchConfigs(spaces, evaluate, { targetPsnr: 35, evaluationsPerVariant: 8 });
    expect(points.map((p) => [p.variant, p.knob!.value, p.meetsTarget])).toEqual([
      ['easy', 1, true],
      ['easy', 0.02, true],
      ['hard', 1, false],
      ['hard', 0.02, false],
    ]);
    expect(fastestMeetingTarget(points, 35).name).toBe('p_easy_residual_diff_threshold-1');
  });

  it('walks an ordered knob by index and picks the fastest config over policies and variants', async () => {
    const presets = ['slow', 'medium', 'fast', 'ultra'];
    const staticPsnr = [40, 37, 34, 30];
    const steady = curve('T0', 42, 4, 0.2); // boundary 0.02 * 2^1.75 = 0.067, speedup 1.35 there
    const bold = curve('T1', 45, 5, 0.5); // boundary 0.08, speedup 2.0 there
    const { evaluate, rounds } = fakeEvaluator({
      T0: (t) => steady.measure(t as number),
      T1: (t) => bold.measure(t as number),
      static: (preset) => ({ meanPsnr: staticPsnr[presets.indexOf(preset as string)], speedup: 1.2 + 0.3 * presets.indexOf(preset as string) }),
      single: () => ({ meanPsnr: 50, speedup: 1.1 }),
    });
    const spaces = [
      { policy: 'dbcache', variant: steady.variant },
      { policy: 'dbcache', variant: bold.variant },
      { policy: 'scm', variant: { name: 'static', config: { policy: 'scm' }, knob: { key: 'mask_policy', values: presets } } },
      { policy: 'plain', variant: { name: 'single', config: { x: 1 } } },
    ];
    const points = await searchConfigs(spaces, evaluate, { targetPsnr: 35, evaluationsPerVariant: 8 });
    const scm = points.filter((p) => p.policy === 'scm');
    // ultra and slow, then medium (meets), then fast (misses): the boundary between medium and fast.
    expect(scm.map((p) => [p.knob!.value, p.meetsTarget])).toEqual([
      ['ultra', false],
      ['slow', true],
      ['medium', true],
      ['fast', false],
    ]);
    expect(points.filter((p) => p.policy === 'plain').map((p) => p.name)).toEqual(['plain_single']);
    // Every round asks each unfinished variant at once.
    expect(rounds[0].map((t) => t.variant)).toEqual(['T0', 'T0', 'T1', 'T1', 'static', 'static', 'single']);
    for (const p of points) expect(p.meetsTarget).toBe(p.measured.meanPsnr >= 35);
    const pick = fastestMeetingTarget(points, 35);
    expect(pick.variant).toBe('T1');
    expect(pick.knob!.value).toBeLessThanOrEqual(0.08);
    expect(pick.knob!.value).toBeGreaterThan(0.08 / 1.07);
    expect(pick.measured.speedup).toBeGreaterThan(1.9);
    const fastestFeasible = Math.max(...points.filter((p) => p.measured.meanPsnr >= 35).map((p) => p.measured.speedup));
    expect(pick.measured.speedup).toBe(fastestFeasible);
  });

  it('says clearly when nothing meets the target', async () => {
    const c = curve('T1', 33, 5, 0.4);
    const { evaluate } = fakeEvaluator({ T1: (t) => c.measure(t as number) });
    const points = await searchConfigs([{ policy: 'dbcache', variant: c.variant }], evaluate, { targetPsnr: 35, evaluationsPerVariant: 8 });
    expect(points).toHaveLength(2);
    expect(() => fastestMeetingTarget(points, 35)).toThrow(TargetNotMetError);
    expect(() => fastestMeetingTarget(points, 35)).toThrow(
      /^no config reaches 35 dB mean PSNR: the most faithful of the 2 evaluated, dbcache_T1_residual_diff_threshold-0.02, reached 33.00 dB at 1.00x; lower --target-psnr/,
    );
    expect(() => fastestMeetingTarget([], 35)).toThrow(/no config was evaluated/);
  });

  it('refuses a budget below both ends and two variants of one name', async () => {
    const c = curve('T1', 45, 5, 0.4);
    const { evaluate } = fakeEvaluator({ T1: (t) => c.measure(t as number) });
    await expect(searchConfigs([{ policy: 'd', variant: c.variant }], evaluate, { targetPsnr: 35, evaluationsPerVariant: 1 })).rejects.toThrow(
      /at least 2, got 1/,
    );
    await expect(
      searchConfigs(
        [
          { policy: 'd', variant: c.variant },
          { policy: 'd', variant: c.variant },
        ],
        evaluate,
        { targetPsnr: 35, evaluationsPerVariant: 4 },
      ),
    ).rejects.toThrow(/policy 'd' names two tuning variants 'T1'/);
  });
});

describe('tuning hints of the policies', () => {
  it('give valid configs at both ends of every knob', () => {
    const spaces = tuneSpaces(tunablePolicies(['dbcache', 'scm']), 28);
    expect(spaces.map((s) => `${s.policy}/${s.variant.name}`)).toEqual([
      'dbcache/F1B0-T0',
      'dbcache/F1B0-T1',
      'dbcache/F1B0-T2',
      'dbcache/F1B0-T1-MC3',
      'dbcache/F1B0-T2-MC5',
      'dbcache/F1B0-FoCa-MC5',
      'dbcache/F1B0-DMD-MC5',
      'dbcache/F1B0-periodic-T1',
      'dbcache/F1B0-periodic-T2',
      'dbcache/F1B0-periodic-FoCa',
      'scm/static-T0',
      'scm/static-T1',
      'scm/dynamic-ultra-T1',
    ]);
    for (const { variant } of spaces) {
      const knob = variant.knob!;
      const ends = 'range' in knob ? knob.range : [knob.values[0], knob.values.at(-1)!];
      for (const value of ends) {
        const config = resolveConfig(parseCacheConfig({ ...variant.config, [knob.key]: value }).base);
        expect(config.fnComputeBlocks).toBe(1);
        expect(config.maxWarmupSteps).toBe(variant.config.policy === 'scm' ? 8 : variant.name.includes('periodic') ? 1 : 2);
      }
    }
    // scm's presets cover 4, 6 and 8-100 steps.
    expect(tuneSpaces(tunablePolicies(['scm']), 5)).toEqual([]);
    expect(tuneSpaces(tunablePolicies(['dbcache']), 5).map((s) => s.variant.config.max_warmup_steps)).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    expect(tuneSpaces(tunablePolicies(['dbcache']), 50).map((s) => s.variant.config.max_warmup_steps)).toEqual([4, 4, 4, 4, 4, 4, 4, 1, 1, 1]);
    // The forecaster each dbcache variant turns on, and how many cached steps in a row it allows
    // (the periodic variants' cap is their knob: here its fastest end).
    const dbcache = tuneSpaces(tunablePolicies(['dbcache']), 28).map(({ variant }) => {
      const knob = variant.knob!;
      const fastest = 'range' in knob ? knob.range[1] : knob.values.at(-1)!;
      const config = resolveConfig(parseCacheConfig({ ...variant.config, [knob.key]: fastest }).base);
      return [config.enableTaylorseer ? config.calibratorType : 'none', config.taylorseerOrder, config.maxContinuousCachedSteps];
    });
    expect(dbcache).toEqual([
      ['none', 1, -1],
      ['taylorseer', 1, -1],
      ['taylorseer', 2, -1],
      ['taylorseer', 1, 3],
      ['taylorseer', 2, 5],
      ['foca', 1, 5],
      ['dmd', 1, 5],
      ['taylorseer', 1, 27],
      ['taylorseer', 2, 27],
      ['foca', 1, 27],
    ]);
  });

  it("hand cache-dit scm's preset as its mask, and dbcache's config as it is", () => {
    const scm = { policy: 'scm', Fn_compute_blocks: 1, steps_computation_policy: 'static', mask_policy: 'fast', enable_taylorseer: false };
    const form = SCM_TUNING.cacheDitForm!(scm, { steps: 28 })!;
    expect(form).toEqual({
      Fn_compute_blocks: 1,
      steps_computation_policy: 'static',
      enable_taylorseer: false,
      steps_computation_mask: [...scmMask('fast', 28)],
    });
    const asDbcache = resolveConfig(parseCacheConfig({ cache_config: form }).base);
    expect(asDbcache.policy).toBe('dbcache');
    expect(asDbcache.stepsComputationMask).toEqual(scmMask('fast', 28));
    expect(asDbcache.stepsComputationMask!.filter((s) => s === 0)).toHaveLength(17);
    expect(SCM_TUNING.cacheDitForm!(scm, { steps: 5 })).toBeUndefined();
    const dbcache = { Fn_compute_blocks: 1, residual_diff_threshold: 0.2 };
    expect(DBCACHE_TUNING.cacheDitForm!(dbcache, { steps: 28 })).toBe(dbcache);
    // FoCa and DMD by the flat switches cache-dit's loader reads (it takes no calibrator_type there).
    const forecasters = DBCACHE_TUNING.variants({ steps: 28 }).filter((v) => v.name === 'F1B0-FoCa-MC5' || v.name === 'F1B0-DMD-MC5');
    expect(forecasters.map((v) => DBCACHE_TUNING.cacheDitForm!(v.config, { steps: 28 }))).toEqual([
      { Fn_compute_blocks: 1, Bn_compute_blocks: 0, max_warmup_steps: 2, enable_foca: true, max_continuous_cached_steps: 5 },
      { Fn_compute_blocks: 1, Bn_compute_blocks: 0, max_warmup_steps: 2, enable_dmd: true, max_continuous_cached_steps: 5 },
    ]);
  });

  it('let a third-party policy join with a few lines, and name the tunable ones on a bad --policies', () => {
    @registerPolicy({
      name: 'every-other',
      keys: {},
      defaults: {},
      tuning: { variants: () => [{ name: 'only', config: { policy: 'every-other' } }] },
    })
    class EveryOther {
      create(_config: CacheConfig): CachePolicy {
        throw new Error('not run here');
      }
    }
    expect(EveryOther.name).toBe('EveryOther');
    // Every registered policy with hints, sorted by name (other packages may have registered more).
    const tunable = tunablePolicies(undefined).map((p) => p.name);
    expect(tunable).toEqual(expect.arrayContaining(['dbcache', 'every-other', 'scm']));
    expect(tunable).toEqual([...tunable].sort());
    expect(tuneSpaces(tunablePolicies(['every-other']), 28).map((s) => s.variant.name)).toEqual(['only']);
    expect(() => tunablePolicies(['dbcahe'])).toThrow(UsageError);
    expect(() => tunablePolicies(['dbcahe'])).toThrow(`--policies: 'dbcahe' is not a registered cache policy (tunable: ${tunable.join(', ')})`);
    expect(() => tunablePolicies(['dbcache', 'every-other'])).not.toThrow();
  });
});

/** A calibration run's summary as MagCache reports it: one context, its branches' ratios. */
function calibrationSummary(branches: Record<string, number[]>): CacheSummary {
  return {
    contexts: [
      { name: 'blocks', branches: Object.entries(branches).map(([announcedAs, magRatios]) => ({ role: 'main', announcedAs, report: { magRatios } })) },
    ],
  } as unknown as CacheSummary;
}

describe('preparation runs', () => {
  it("give magcache's variants the ratios of a calibration on the tuning prompts, averaged", () => {
    const variants = MAGCACHE_TUNING.variants({ steps: 10 });
    expect(variants.map((v) => v.name)).toEqual(['K2-R0.2', 'K3-R0.2', 'K4-R0.2', 'K3-R0.1']);
    const preparation = MAGCACHE_TUNING.preparation!({ steps: 10 })!;
    expect(preparation.config).toEqual({ policy: 'magcache', calibrate: true });
    // Under CFG the conditional branch's ratios, averaged step by step over the prompts.
    const prepared = preparation.prepared([
      calibrationSummary({ cond: [1, 0.9, 1.2], uncond: [1, 5, 5] }),
      calibrationSummary({ cond: [1, 1.1, 0.8], uncond: [1, 5, 5] }),
    ]);
    expect(prepared).toEqual({ mag_ratios: [1, 1, 1] });
    for (const variant of variants) {
      const knob = variant.knob as { key: string; range: readonly [number, number] };
      expect(knob.key).toBe('threshold');
      for (const threshold of knob.range) {
        const config = resolveConfig(parseCacheConfig({ ...variant.config, ...prepared, threshold }).base);
        expect(config.policy).toBe('magcache');
        expect(config.policyOptions).toMatchObject({ threshold, magRatios: [1, 1, 1], calibrate: false });
      }
    }
    expect(variants.map((v) => [v.config.max_skip_steps, v.config.retention_ratio])).toEqual([
      [2, 0.2],
      [3, 0.2],
      [4, 0.2],
      [3, 0.1],
    ]);
    // MagCache is not cache-dit's: best.yaml keeps the config as ditcache reads it.
    expect(MAGCACHE_TUNING.cacheDitForm).toBeUndefined();
    expect(() => preparation.prepared([calibrationSummary({ cond: [1, 0.9] }), calibrationSummary({ cond: [1, 0.9, 1] })])).toThrow(
      'meanMagCacheCalibration: the runs recorded different contexts or steps (blocks: cond x2 vs blocks: cond x3)',
    );
  });

  it('run once per policy that names one and has variants, before any variant, whose configs get the prepared keys', async () => {
    const calls: string[] = [];
    const policies = [
      { name: 'plain', tuning: { variants: () => [{ name: 'a', config: { policy: 'plain' } }] } },
      {
        name: 'measured',
        tuning: {
          variants: () => [
            { name: 'x', config: { policy: 'measured', k: 1 } },
            { name: 'y', config: { policy: 'measured', k: 2 } },
          ],
          preparation: (run: { steps: number }) => ({
            config: { policy: 'measured', measure: true, steps: run.steps },
            prepared: (summaries: readonly CacheSummary[]) => ({ measured: summaries.length }),
          }),
        },
      },
      { name: 'unsearched', tuning: { variants: () => [], preparation: () => ({ config: { policy: 'unsearched' }, prepared: () => ({ never: true }) }) } },
    ];
    const spaces = tuneSpaces(policies, 12);
    const prepared = await preparedSpaces(spaces, policies, { steps: 12 }, async (policy, config) => {
      calls.push(`${policy} ${JSON.stringify(config)}`);
      return [{} as CacheSummary, {} as CacheSummary, {} as CacheSummary];
    });
    expect(calls).toEqual(['measured {"policy":"measured","measure":true,"steps":12}']);
    expect(prepared.map((s) => [s.policy, s.variant.name, s.variant.config])).toEqual([
      ['plain', 'a', { policy: 'plain' }],
      ['measured', 'x', { policy: 'measured', k: 1, measured: 3 }],
      ['measured', 'y', { policy: 'measured', k: 2, measured: 3 }],
    ]);
    // The spaces given are left as they were.
    expect(spaces[1].variant.config).toEqual({ policy: 'measured', k: 1 });
  });
});
