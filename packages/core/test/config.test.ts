import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, describe, expect, it, vi } from 'vitest';

import { CacheConfigError, DEFAULT_CACHE_CONFIG, ParamsModifier, parseCacheConfig, readCacheConfig, resolveConfig, strify } from '../src/index.js';

const load = (input: Parameters<typeof parseCacheConfig>[0]) => resolveConfig(parseCacheConfig(input).base);

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    Object.values(value).forEach(deepFreeze);
    Object.freeze(value);
  }
  return value;
}

afterEach(() => vi.restoreAllMocks());

describe('cache config', () => {
  it("has cache-dit's defaults", () => {
    expect(load(undefined)).toEqual(DEFAULT_CACHE_CONFIG);
    expect(DEFAULT_CACHE_CONFIG).toMatchObject({
      fnComputeBlocks: 8,
      bnComputeBlocks: 0,
      residualDiffThreshold: 0.08,
      maxWarmupSteps: 8,
      warmupInterval: 1,
      maxCachedSteps: -1,
      maxContinuousCachedSteps: -1,
      maxAccumulatedResidualDiffThreshold: null,
      enableSeparateCfg: null,
      cfgComputeFirst: false,
      cfgDiffComputeSeparate: true,
      enableTaylorseer: false,
      continuousCounting: 'cache-dit',
      taylorseerExpansion: 'cache-dit',
    });
  });

  it("reads camelCase and cache-dit's snake_case names, from objects, JSON and YAML", () => {
    const camel = load({ fnComputeBlocks: 1, bnComputeBlocks: 0, maxWarmupSteps: 2, residualDiffThreshold: 0.5, maxContinuousCachedSteps: 2 });
    const snake = load({ Fn_compute_blocks: 1, Bn_compute_blocks: 0, max_warmup_steps: 2, residual_diff_threshold: 0.5, max_continuous_cached_steps: 2 });
    const json = load('{"Fn_compute_blocks":1,"Bn_compute_blocks":0,"max_warmup_steps":2,"residual_diff_threshold":0.5,"max_continuous_cached_steps":2}');
    const yaml = load('Fn_compute_blocks: 1\nBn_compute_blocks: 0\nmax_warmup_steps: 2\nresidual_diff_threshold: 0.5\nmax_continuous_cached_steps: 2\n');
    for (const c of [snake, json, yaml]) expect(c).toEqual(camel);
    expect(camel).toMatchObject({ fnComputeBlocks: 1, residualDiffThreshold: 0.5, maxContinuousCachedSteps: 2, maxWarmupSteps: 2 });
  });

  it("loads cache-dit's YAML layouts unchanged: a cache_config section, or flat keys with cache_type", () => {
    const sectioned = load(
      [
        'cache_config:',
        '  max_warmup_steps: 8',
        '  warmup_interval: 2',
        '  max_cached_steps: -1',
        '  max_continuous_cached_steps: 2',
        '  Fn_compute_blocks: 1',
        '  Bn_compute_blocks: 0',
        '  residual_diff_threshold: 0.12',
        '  enable_taylorseer: true',
        '  taylorseer_order: 1',
      ].join('\n'),
    );
    expect(sectioned).toMatchObject({
      warmupInterval: 2,
      residualDiffThreshold: 0.12,
      enableTaylorseer: true,
      taylorseerOrder: 1,
      enableEncoderTaylorseer: false,
    });

    const flat = load(
      [
        'cache_type: DBCache',
        'max_warmup_steps: 8 # 1',
        'Fn_compute_blocks: 1',
        'residual_diff_threshold: 0.12',
        'enable_taylorseer: true',
        'enable_encoder_taylorseer: true',
        'taylorseer_cache_type: residual',
        'taylorseer_order: 2',
      ].join('\n'),
    );
    expect(flat).toMatchObject({ enableTaylorseer: true, enableEncoderTaylorseer: true, taylorseerCacheType: 'residual', taylorseerOrder: 2 });
  });

  it('skips, with a warning, the sections of a cache-dit file that configure other features', () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const config = load('cache_config:\n  Fn_compute_blocks: 2\nparallelism_config:\n  ulysses_size: auto\nquantize_config:\n  quant_type: float8\n');
    expect(config.fnComputeBlocks).toBe(2);
    expect(warn).toHaveBeenCalledTimes(2);
    expect(String(warn.mock.calls[0][0])).toMatch(/parallelism_config' is ignored/);
  });

  it('loads a config cache-dit dumped (every DBCacheConfig field, and the calibrator section)', () => {
    const dumped = {
      cache_config: {
        cache_type: 'DBCache',
        Fn_compute_blocks: 2,
        Bn_compute_blocks: 1,
        residual_diff_threshold: 0.148,
        max_accumulated_residual_diff_threshold: null,
        max_warmup_steps: 2,
        warmup_interval: 1,
        max_cached_steps: -1,
        max_continuous_cached_steps: 2,
        enable_separate_cfg: true,
        cfg_compute_first: false,
        cfg_diff_compute_separate: true,
        num_inference_steps: null,
        steps_computation_mask: null,
        steps_computation_policy: 'dynamic',
        force_refresh_step_hint: null,
        force_refresh_step_policy: 'once',
      },
      calibrator_config: {
        enable_calibrator: true,
        enable_encoder_calibrator: true,
        calibrator_type: 'taylorseer',
        calibrator_cache_type: 'residual',
        calibrator_kwargs: {},
        taylorseer_order: 1,
      },
    };
    expect(load(dumped)).toMatchObject({
      fnComputeBlocks: 2,
      bnComputeBlocks: 1,
      enableSeparateCfg: true,
      enableTaylorseer: true,
      enableEncoderTaylorseer: true,
      taylorseerOrder: 1,
    });
  });

  it('turns TaylorSeer on from taylorseer_order alone (both streams), as the goldens and the CLI pass it', () => {
    expect(load({ taylorseer_order: 2 })).toMatchObject({ enableTaylorseer: true, enableEncoderTaylorseer: true, taylorseerOrder: 2 });
    expect(load({ taylorseer_order: 0 }).enableTaylorseer).toBe(false);
    expect(load({ enableTaylorseer: true }).enableEncoderTaylorseer).toBe(true);
    expect(load({ taylorseer_order: 1, enable_taylorseer: false }).enableTaylorseer).toBe(false);
  });

  it('reads JSON and YAML files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ditcache-config-'));
    try {
      writeFileSync(join(dir, 'c.yaml'), 'residual_diff_threshold: 0.3\nparams_modifiers:\n  - max_warmup_steps: 1\n  - residual_diff_threshold: 0.5\n');
      writeFileSync(join(dir, 'c.json'), '{"residualDiffThreshold": 0.3}');
      const yaml = readCacheConfig(join(dir, 'c.yaml'));
      expect(yaml.base).toEqual({ residualDiffThreshold: 0.3 });
      expect(yaml.modifiers).toEqual([{ maxWarmupSteps: 1 }, { residualDiffThreshold: 0.5 }]);
      expect(readCacheConfig(join(dir, 'c.json')).base).toEqual({ residualDiffThreshold: 0.3 });
      expect(() => readCacheConfig(join(dir, 'missing.yaml'))).toThrow(/cannot read config file/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('never modifies the object it is given', () => {
    const input = deepFreeze({ Fn_compute_blocks: 1, steps_computation_mask: [1, 1, 0, 1], params_modifiers: [{ max_warmup_steps: 1 }] });
    const before = JSON.stringify(input);
    const parsed = parseCacheConfig(input);
    const config = resolveConfig(parsed.base, parsed.modifiers![0]);
    expect(config.stepsComputationMask).toEqual([1, 1, 0, 1]);
    expect(config.stepsComputationMask).not.toBe(input.steps_computation_mask);
    expect(JSON.stringify(input)).toBe(before);
    expect(Object.isFrozen(config)).toBe(true);
  });

  describe('errors name the problem and list the valid keys', () => {
    const cases: [string, unknown, RegExp][] = [
      ['unknown key', { max_warmup: 2 }, /unknown key "max_warmup" \(did you mean "max_warmup_steps"\?\)/],
      ['negative threshold', { residual_diff_threshold: -0.1 }, /residual_diff_threshold must be a finite number >= 0, got -0.1/],
      ['order 0 with TaylorSeer on', { enable_taylorseer: true, taylorseer_order: 0 }, /taylorseerOrder must be 1, 2 or 3 while TaylorSeer is on, got 0/],
      ['order 4', { taylorseerOrder: 4 }, /taylorseerOrder must be 1, 2 or 3/],
      ['Fn 0', { fnComputeBlocks: 0 }, /fnComputeBlocks must be an integer >= 1/],
      ['fractional warmup', { maxWarmupSteps: 1.5 }, /maxWarmupSteps must be an integer >= 0, got 1.5/],
      ['bad mask', { steps_computation_mask: [1, 2] }, /steps_computation_mask must be a non-empty list of 0/],
      ['named mask policy', { steps_computation_mask: 'fast' }, /named cache-dit mask policies are not supported/],
      ['other cache type', { cache_type: 'FBCache' }, /cache_type must be 'DBCache', or 'DBPrune' \(read as policy 'dbprune'\), got "FBCache"/],
      ['DBPrune under another policy', { policy: 'scm', cache_type: 'DBPrune' }, /cache_type must be 'DBCache', or 'DBPrune'/],
      ['forced refresh', { force_refresh_step_hint: 25 }, /forced mid-run refreshes are not supported/],
      ['two spellings, two values', { Fn_compute_blocks: 1, fnComputeBlocks: 2 }, /fnComputeBlocks and Fn_compute_blocks both set fnComputeBlocks/],
      ['not a mapping', '- 1\n- 2', /expected a mapping of settings/],
      ['broken YAML', '{ "a": ', /not valid JSON or YAML/],
      ['stray key beside cache_config', { cache_config: {}, threshold: 1 }, /unknown key "threshold" next to a cache_config section/],
    ];
    it.each(cases)('%s', (_name, input, message) => {
      let error: unknown;
      try {
        load(input as never);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(CacheConfigError);
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message).toMatch(/Valid keys .*fnComputeBlocks \(Fn_compute_blocks\).*residualDiffThreshold \(residual_diff_threshold\)/);
    });
  });
});

describe('ParamsModifier and strify', () => {
  it('a ParamsModifier holds validated overrides, in either spelling', () => {
    expect(new ParamsModifier({ max_warmup_steps: 4, maxCachedSteps: 8 }).settings).toEqual({ maxWarmupSteps: 4, maxCachedSteps: 8 });
    expect(() => new ParamsModifier({ paramsModifiers: [] })).toThrow(CacheConfigError);
    expect(() => new ParamsModifier({ warmup: 4 })).toThrow(/unknown key "warmup"/);
  });

  it('strify tags a config compactly for file names', () => {
    expect(strify({})).toBe('DBCache_F8B0_W8I1M0MC0_R0.08_T0O0');
    expect(strify('{"Fn_compute_blocks":1,"max_warmup_steps":2,"max_continuous_cached_steps":2,"residual_diff_threshold":0.7,"taylorseer_order":1}')).toBe(
      'DBCache_F1B0_W2I1M0MC2_R0.7_T1O1',
    );
    expect(strify({ continuousCounting: 'plain', stepsComputationMask: [1, 0], stepsComputationPolicy: 'static' })).toBe(
      'DBCache_F8B0_W8I1M0MC0_R0.08_T0O0_SCM10_static_CCplain',
    );
  });
});
