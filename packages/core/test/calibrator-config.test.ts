// The calibrator keys: calibrator_type and DMD's options, cache-dit's enable_foca / enable_dmd
// switches, which store each stream gets, the checks, and that configs without them keep their
// meaning (defaults and strify tags unchanged).
import { describe, expect, it } from 'vitest';

import {
  CacheConfigError,
  DBCachePolicyFactory,
  DEFAULT_CACHE_CONFIG,
  DmdCalibrator,
  FoCaCalibrator,
  LastResidualStore,
  CacheDitTaylorSeer,
  parseCacheConfig,
  resolveConfig,
  ScmPolicyFactory,
  strify,
  type ResidualStore,
  type Stream,
} from '../src/index.js';
import { PlainTensorOps, type PlainTensor } from '../src/testing.js';

const load = (input: Parameters<typeof parseCacheConfig>[0]) => resolveConfig(parseCacheConfig(input).base);

function failure(input: Parameters<typeof parseCacheConfig>[0]): CacheConfigError {
  try {
    load(input);
  } catch (e) {
    if (e instanceof CacheConfigError) return e;
    throw e;
  }
  throw new Error('expected a CacheConfigError');
}

describe('calibrator keys', () => {
  it("default to cache-dit's: TaylorSeer, and DMD's history 6, automatic rank, ridge 1e-8, 'medium' SVD", () => {
    expect(DEFAULT_CACHE_CONFIG).toMatchObject({ calibratorType: 'taylorseer', dmdHistory: 6, dmdRank: 0, dmdRidge: 1e-8, dmdSvdPrecision: 'medium' });
    expect(load({ taylorseer_order: 2 })).toMatchObject({ enableTaylorseer: true, calibratorType: 'taylorseer', taylorseerOrder: 2 });
  });

  it('are read in either spelling, flat or in a calibrator_config section, under dbcache and scm', () => {
    expect(load({ enable_calibrator: true, calibrator_type: 'foca' })).toMatchObject({ enableTaylorseer: true, calibratorType: 'foca' });
    expect(load({ enableTaylorseer: true, calibratorType: 'dmd', dmdHistory: 4, dmd_rank: 2, dmd_ridge: 1e-6, dmd_svd_precision: 'low' })).toMatchObject({
      calibratorType: 'dmd',
      dmdHistory: 4,
      dmdRank: 2,
      dmdRidge: 1e-6,
      dmdSvdPrecision: 'low',
    });
    const sections = load({
      cache_config: { residual_diff_threshold: 0.2 },
      calibrator_config: { enable_calibrator: true, calibrator_type: 'dmd', dmd_history: 5 },
    });
    expect(sections).toMatchObject({ residualDiffThreshold: 0.2, enableTaylorseer: true, enableEncoderTaylorseer: true, calibratorType: 'dmd', dmdHistory: 5 });
    expect(load({ policy: 'scm', enable_calibrator: true, calibrator_type: 'foca' })).toMatchObject({ policy: 'scm', calibratorType: 'foca' });
  });

  it.each([
    ['an unknown calibrator', { calibrator_type: 'magcache' }, /calibrator_type must be one of 'taylorseer', 'foca', 'dmd', got "magcache"/],
    ['a history of 0', { dmd_history: 0 }, /dmd_history must be an integer >= 1, got 0/],
    ['a negative rank', { dmd_rank: -1 }, /dmd_rank must be an integer >= 0, got -1/],
    ['a negative ridge', { dmd_ridge: -1e-8 }, /dmd_ridge must be a finite number >= 0/],
    ['an unknown SVD precision', { dmd_svd_precision: 'exact' }, /dmd_svd_precision must be one of 'low', 'medium', 'high', got "exact"/],
    ['a misspelt key', { dmd_histroy: 4 }, /unknown key "dmd_histroy" \(did you mean "dmd_history"\?\)/],
    [
      'TaylorSeer order with FoCa on',
      { enable_calibrator: true, calibrator_type: 'foca', taylorseer_order: 2 },
      /taylorseerOrder is a setting of calibratorType 'taylorseer', but the calibrator on is 'foca'/,
    ],
    [
      'a DMD key with TaylorSeer on',
      { enable_taylorseer: true, dmd_history: 4 },
      /dmdHistory is a setting of calibratorType 'dmd', but the calibrator on is 'taylorseer'/,
    ],
    [
      'two of cache-dit switches',
      { enable_taylorseer: true, enable_foca: true },
      /enable_foca and enable_taylorseer are both true; cache-dit takes one calibrator/,
    ],
    ['a switch against calibrator_type', { enable_dmd: true, calibrator_type: 'foca' }, /enable_dmd and calibrator_type both set calibratorType/],
    ['a switch that is not a boolean', { enable_foca: 'yes' }, /enable_foca must be true or false/],
  ])('refuse %s, listing the valid keys', (_name, input, message) => {
    const e = failure(input);
    expect(e.message).toMatch(message);
    expect(e.message).toMatch(/Valid keys .*calibratorType \(calibrator_type\).*dmdHistory \(dmd_history\).*dmdSvdPrecision \(dmd_svd_precision\)/);
    expect(e.message).toMatch(/enable_foca, enable_dmd \(with enable_encoder_foca, enable_encoder_dmd\)/);
  });

  it("take cache-dit's flat enable_foca / enable_dmd switches with its encoder defaults (FoCa off, DMD on)", () => {
    expect(load({ enable_foca: true })).toMatchObject({ enableTaylorseer: true, calibratorType: 'foca', enableEncoderTaylorseer: false });
    expect(load({ enable_foca: true, enable_encoder_foca: true })).toMatchObject({ enableEncoderTaylorseer: true });
    expect(load({ enable_dmd: true, dmd_history: 5 })).toMatchObject({
      enableTaylorseer: true,
      calibratorType: 'dmd',
      enableEncoderTaylorseer: true,
      dmdHistory: 5,
    });
    expect(load({ enable_dmd: true, enable_encoder_dmd: false })).toMatchObject({ enableEncoderTaylorseer: false });
    // enable_taylorseer: false beside a switch, as cache-dit's own files write it.
    expect(load({ enable_taylorseer: false, enable_dmd: true })).toMatchObject({ enableTaylorseer: true, calibratorType: 'dmd' });
    // A switch that is off turns nothing on, and its encoder key waits for it, as in cache-dit.
    expect(load({ enable_dmd: false, enable_encoder_dmd: true })).toMatchObject({ enableTaylorseer: false, calibratorType: 'taylorseer' });
  });
});

describe('the store each stream gets', () => {
  const ops = new PlainTensorOps();
  const storesOf = (input: Parameters<typeof parseCacheConfig>[0], factory = new DBCachePolicyFactory()) => {
    const policy = factory.create(load(input));
    // DBCache's stores need only the ops and the stream.
    const createStore = policy.createStore.bind(policy) as (o: typeof ops, stream: Stream) => ResidualStore<PlainTensor>;
    return (['hidden', 'encoder'] as const).map((stream) => createStore(ops, stream).constructor);
  };

  it('is the configured calibrator, on the encoder stream only where enabled there', () => {
    expect(storesOf({ enable_calibrator: true, calibrator_type: 'foca' })).toEqual([FoCaCalibrator, FoCaCalibrator]);
    expect(storesOf({ enable_foca: true })).toEqual([FoCaCalibrator, LastResidualStore]);
    expect(storesOf({ enable_dmd: true })).toEqual([DmdCalibrator, DmdCalibrator]);
    expect(storesOf({ enable_taylorseer: true })).toEqual([CacheDitTaylorSeer, LastResidualStore]);
    expect(storesOf({ calibrator_type: 'dmd' })).toEqual([LastResidualStore, LastResidualStore]);
    expect(storesOf({ policy: 'scm', enable_calibrator: true, calibrator_type: 'dmd' }, new ScmPolicyFactory())).toEqual([DmdCalibrator, DmdCalibrator]);
  });
});

describe('strify', () => {
  it("tags the calibrator as cache-dit's calibrator configs do", () => {
    const base = { Fn_compute_blocks: 1, max_warmup_steps: 2, residual_diff_threshold: 0.6 };
    expect(strify({ ...base, enable_calibrator: true, calibrator_type: 'foca' })).toBe('DBCache_F1B0_W2I1M0MC0_R0.6_FoCa');
    expect(strify({ ...base, enable_dmd: true })).toBe('DBCache_F1B0_W2I1M0MC0_R0.6_DMDH6');
    expect(strify({ ...base, enable_dmd: true, dmd_history: 4, dmd_svd_precision: 'low' })).toBe('DBCache_F1B0_W2I1M0MC0_R0.6_DMDH4l');
    expect(strify({ ...base, calibrator_type: 'dmd' })).toBe('DBCache_F1B0_W2I1M0MC0_R0.6_T0O0');
  });

  it('keeps the tags of configs without the new keys', () => {
    expect(strify({})).toBe('DBCache_F8B0_W8I1M0MC0_R0.08_T0O0');
    expect(strify({ Fn_compute_blocks: 1, max_continuous_cached_steps: 2, residual_diff_threshold: 0.7, taylorseer_order: 2 })).toBe(
      'DBCache_F1B0_W8I1M0MC2_R0.7_T1O2',
    );
    expect(strify({ enable_taylorseer: true, taylorseer_expansion: 'newton' })).toBe('DBCache_F8B0_W8I1M0MC0_R0.08_T1O1_newton');
  });
});
