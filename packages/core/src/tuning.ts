// How `ditcache tune` searches a policy's configs for the fastest one that keeps a fidelity
// target. Gridding every knob costs a generation per combination; instead a policy says which
// knob trades fidelity for speed monotonically (so the search bisects it) and the few structural
// variants worth bisecting it in. A policy whose configs need something measured on the model
// first (MagCache's magnitude ratios) names a preparation run whose cache summaries give it.
// A policy hands these over in its registration's `tuning` field; a policy without one is not
// tuned.
import type { CacheSummary } from './stats.js';

/** A knob whose values run from the most faithful to the fastest. */
export type TuningKnob = TuningRange | TuningSteps;

/** A numeric knob bisected between two ends, e.g. the residual-diff threshold. */
export interface TuningRange {
  /** The config key, spelled as the variant's config spells its keys. */
  readonly key: string;
  /** [most faithful, fastest]. */
  readonly range: readonly [number, number];
  /** 'log' bisects ratios (thresholds matter by their order of magnitude), 'linear' differences. */
  readonly scale: 'linear' | 'log';
}

/** A knob with a few ordered values, e.g. a named preset from careful to aggressive. */
export interface TuningSteps {
  readonly key: string;
  /** From the most faithful to the fastest. */
  readonly values: readonly (string | number)[];
}

/** One structure of a policy's config (blocks, forecaster, limits) in which its knob is searched. */
export interface TuningVariant {
  /** Unique within the policy; letters, digits, '.', '+' and '-' only (it names folders). */
  readonly name: string;
  /** The config without the knob, in the keys cache-dit's YAML uses where the policy is cache-dit's. */
  readonly config: Readonly<Record<string, unknown>>;
  /** Absent: the variant is a single config. */
  readonly knob?: TuningKnob;
}

/** What the search knows of the runs it tunes for. */
export interface TuningRun {
  readonly steps: number;
}

/**
 * A run on each tuning prompt before the search, whose cache summaries give keys that every
 * variant's config needs (what a calibration measured of the model).
 */
export interface TuningPreparation {
  /** The cache config of the run (every step computed, as in a calibration). */
  readonly config: Readonly<Record<string, unknown>>;
  /** The keys added to every variant's config, from the summaries of the runs, one per tuning prompt. */
  prepared(summaries: readonly CacheSummary[]): Readonly<Record<string, unknown>>;
}

export interface PolicyTuning {
  /** The variants to search at this run length (none where the policy cannot run it). */
  variants(run: TuningRun): readonly TuningVariant[];
  /** The run the variants need first, if any: its prepared keys go into every variant's config (and so into best.yaml). */
  preparation?(run: TuningRun): TuningPreparation | undefined;
  /**
   * The config as cache-dit's own loader reads it to the same effect, for a file both can load;
   * undefined where cache-dit has no such form. Absent: cache-dit does not know the policy.
   */
  cacheDitForm?(config: Readonly<Record<string, unknown>>, run: TuningRun): Readonly<Record<string, unknown>> | undefined;
}
