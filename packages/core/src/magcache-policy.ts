// MagCache (Ma et al., "MagCache: Fast Video Generation with Magnitude-Aware Cache") as a cache
// policy, with diffusers' semantics: a step reuses the residual of a chain's blocks (all of them:
// Fn and Bn default to 0) from its last computed step when the error that the calibrated
// magnitude ratios predict, accumulated over the steps skipped in a row, stays within the
// threshold. It measures nothing at run time; its calibration mode computes every step and
// records the ratios a later run needs.
import { boolean, integer, nonNegative, nullable, type Check, type KeySpec } from './config-keys.js';
import { CacheConfigError, type CacheConfig } from './config.js';
import type { Decision } from './decision.js';
import { MAG_RATIOS_PRESETS, magRatiosForSteps } from './magcache-ratios.js';
import { MAGCACHE_TUNING } from './magcache-tuning.js';
import { registerPolicy, type CachePolicy, type CachePolicyFactory, type RunInfo, type StepDecider, type Stream } from './policy.js';
import { LastResidualStore, type Forecast, type ResidualStore } from './residual-store.js';
import { sameShape, type TensorOps } from './tensor-ops.js';

export const MAGCACHE_POLICY = 'magcache';

const fraction: Check = (v) => (typeof v === 'number' && v >= 0 && v <= 1 ? undefined : 'a number from 0 to 1');
const magRatios: Check = (v) =>
  (typeof v === 'string' && v in MAG_RATIOS_PRESETS) ||
  (Array.isArray(v) && v.length > 0 && v.every((r) => typeof r === 'number' && Number.isFinite(r) && r >= 0))
    ? undefined
    : `a non-empty list of finite numbers >= 0 (one per step), or a preset: ${Object.keys(MAG_RATIOS_PRESETS)
        .map((p) => `'${p}'`)
        .join(', ')}`;

/**
 * MagCache's keys, named as diffusers' MagCacheConfig names them. Fn and Bn are the engine's
 * keys, here allowed down to 0 and defaulting to 0: MagCache reuses the whole chain.
 */
export const MAGCACHE_KEYS: Readonly<Record<string, KeySpec>> = {
  fnComputeBlocks: { snake: 'Fn_compute_blocks', check: integer(0) },
  bnComputeBlocks: { snake: 'Bn_compute_blocks', check: integer(0) },
  threshold: { snake: 'threshold', check: nonNegative },
  maxSkipSteps: { snake: 'max_skip_steps', check: integer(0) },
  retentionRatio: { snake: 'retention_ratio', check: fraction },
  magRatios: { snake: 'mag_ratios', check: nullable(magRatios) },
  calibrate: { snake: 'calibrate', check: boolean },
};

/** diffusers' defaults; mag_ratios has none (it is the model's), so one of it and calibrate is needed. */
export const MAGCACHE_DEFAULTS = Object.freeze({
  fnComputeBlocks: 0,
  bnComputeBlocks: 0,
  threshold: 0.06,
  maxSkipSteps: 3,
  retentionRatio: 0.2,
  magRatios: null,
  calibrate: false,
});

export interface MagCacheRule {
  /** The ratios of the run, one per step (already resampled to its step count). */
  readonly ratios: readonly number[];
  /** Steps before this one are always computed. */
  readonly retentionSteps: number;
  readonly threshold: number;
  readonly maxSkipSteps: number;
}

/** The steps MagCache never skips at the start of a run: retention_ratio of them, rounded half up. */
export function magCacheRetentionSteps(retentionRatio: number, steps: number): number {
  return Math.floor(retentionRatio * steps + 0.5);
}

/**
 * One branch's MagCache decisions in one run. From the retention step on, each step multiplies
 * the accumulated ratio by its own ratio (1 past the list's end), counts one more step and adds
 * |1 - accumulated ratio| to the accumulated error; it is skipped when a computed step left a
 * residual, the error is within the threshold and at most maxSkipSteps steps were counted since
 * the last reset, else computed with the three accumulators reset.
 */
export class MagCacheDecider implements StepDecider {
  readonly cachedSteps: number[] = [];
  /** step -> the accumulated error compared with the threshold. */
  readonly residualDiffs = new Map<number, number>();
  private ratio = 1;
  private error = 0;
  private counted = 0;

  constructor(private readonly rule: MagCacheRule) {}

  decide(step: number, hasReference: boolean): Decision {
    const r = this.rule;
    if (step < r.retentionSteps) return { cache: false, reason: 'retention' };
    this.ratio *= step < r.ratios.length ? r.ratios[step] : 1;
    this.counted += 1;
    this.error += Math.abs(1 - this.ratio);
    const diff = this.error;
    this.residualDiffs.set(step, diff);
    if (hasReference && diff <= r.threshold && this.counted <= r.maxSkipSteps) {
      this.cachedSteps.push(step);
      return { cache: true, reason: 'error-within-threshold', diff };
    }
    this.ratio = 1;
    this.error = 0;
    this.counted = 0;
    const reason = !hasReference ? 'no-reference' : diff > r.threshold ? 'error-above-threshold' : 'max-skip-steps';
    return { cache: false, reason, diff };
  }
}

/**
 * Calibration: every step computed; the store of the hidden stream records, per step, the mean
 * over tokens of |R_t| / (|R_{t-1}| + 1e-8), |.| the L2 norm of each token's residual (1 at the
 * first step), as diffusers' calibration does.
 */
export class MagCacheCalibrationDecider implements StepDecider {
  readonly cachedSteps: readonly number[] = [];
  readonly residualDiffs: ReadonlyMap<number, number> = new Map();
  /** The recorded ratios, in step order. */
  readonly magRatios: number[] = [];

  decide(): Decision {
    return { cache: false, reason: 'calibrate' };
  }

  report(): Readonly<Record<string, unknown>> {
    return { magRatios: [...this.magRatios] };
  }
}

/** diffusers' guard against a residual of norm 0. */
const NORM_EPSILON = 1e-8;

/** The hidden stream's store in calibration: keeps the residual, and measures how its norms changed. */
class MagCacheCalibrationStore<T> implements ResidualStore<T> {
  private readonly last: LastResidualStore<T>;
  private norms: Float64Array | undefined;
  private shape: readonly number[] | undefined;

  constructor(
    private readonly ops: TensorOps<T>,
    private readonly decider: MagCacheCalibrationDecider,
  ) {
    if (!ops.rowNorms) throw new Error("cache policy 'magcache': calibrate needs TensorOps.rowNorms, which this model's tensor ops do not provide");
    this.last = new LastResidualStore(ops);
  }

  get hasValue(): boolean {
    return this.last.hasValue;
  }

  update(step: number, value: T): void {
    const shape = this.ops.shape(value);
    const norms = (this.ops.rowNorms as (a: T) => Float64Array)(value);
    if (this.norms === undefined || this.shape === undefined) {
      this.decider.magRatios.push(1);
    } else {
      if (!sameShape(this.shape, shape)) {
        throw new Error(
          `cache policy 'magcache': the residual changed shape from [${this.shape}] to [${shape}] at step ${step}; calibrate on a run of one shape`,
        );
      }
      let sum = 0;
      for (let i = 0; i < norms.length; i++) sum += norms[i] / (this.norms[i] + NORM_EPSILON);
      this.decider.magRatios.push(sum / norms.length);
    }
    this.norms = norms;
    this.shape = shape;
    this.last.update(step, value);
  }

  predict(): Forecast<T> {
    return this.last.predict();
  }

  clear(): void {
    this.last.clear();
    this.norms = undefined;
    this.shape = undefined;
  }
}

interface MagCacheOptions {
  threshold: number;
  maxSkipSteps: number;
  retentionRatio: number;
  magRatios: readonly number[] | string | null;
  calibrate: boolean;
}

class MagCachePolicy implements CachePolicy {
  readonly cachingPossible: boolean;
  private readonly options: MagCacheOptions;
  /** step count -> the rule for runs of that length, shared by their branches. */
  private readonly rules = new Map<number, MagCacheRule>();

  constructor(config: CacheConfig) {
    this.options = config.policyOptions as unknown as MagCacheOptions;
    const o = this.options;
    if (o.magRatios === null && !o.calibrate) {
      throw new CacheConfigError(
        "policy 'magcache' needs mag_ratios (the model's magnitude ratios, e.g. 'flux'), or calibrate: true to record them in a run",
        'magRatios',
        MAGCACHE_POLICY,
      );
    }
    this.cachingPossible = o.calibrate || o.maxSkipSteps > 0;
  }

  createDecider(run: RunInfo): StepDecider {
    if (this.options.calibrate) return new MagCacheCalibrationDecider();
    if (run.numSteps === undefined) {
      throw new Error(
        "cache policy 'magcache' needs the run's step count: run the transformer from a pipeline that announces numSteps, or set numInferenceSteps",
      );
    }
    return new MagCacheDecider(this.ruleFor(run.numSteps));
  }

  createStore<T>(ops: TensorOps<T>, stream: Stream, decider?: StepDecider): ResidualStore<T> {
    if (stream === 'hidden' && decider instanceof MagCacheCalibrationDecider) return new MagCacheCalibrationStore(ops, decider);
    return new LastResidualStore(ops);
  }

  storesResidual(): boolean {
    return true;
  }

  private ruleFor(steps: number): MagCacheRule {
    let rule = this.rules.get(steps);
    if (!rule) {
      const o = this.options;
      const given = typeof o.magRatios === 'string' ? MAG_RATIOS_PRESETS[o.magRatios] : (o.magRatios as readonly number[]);
      rule = Object.freeze({
        ratios: magRatiosForSteps(given, steps),
        retentionSteps: magCacheRetentionSteps(o.retentionRatio, steps),
        threshold: o.threshold,
        maxSkipSteps: o.maxSkipSteps,
      });
      this.rules.set(steps, rule);
    }
    return rule;
  }
}

@registerPolicy({ name: MAGCACHE_POLICY, keys: MAGCACHE_KEYS, defaults: MAGCACHE_DEFAULTS, tuning: MAGCACHE_TUNING })
export class MagCachePolicyFactory implements CachePolicyFactory {
  create(config: CacheConfig): CachePolicy {
    return new MagCachePolicy(config);
  }
}
