// The search of `ditcache tune`, as a pure function over an evaluator: for each policy variant it
// bisects the knob the policy calls monotone (more fidelity one way, more speed the other) for
// the boundary of the fidelity target, instead of running a grid. The variants advance together,
// one proposal each per round, so that every round is one batch of generations for the evaluator.
import type { PolicyTuning, TuningKnob, TuningRange, TuningVariant } from '@ditcache/core';

/** A variant of a policy, as the search walks it. */
export interface TuneSpace {
  readonly policy: string;
  readonly variant: TuningVariant;
}

/** One config the search asks the evaluator for. */
export interface Trial {
  /** Unique over the search: it names the config's folder of images. */
  readonly name: string;
  readonly policy: string;
  readonly variant: string;
  /** The knob's value in this config (absent for a variant without a knob). */
  readonly knob?: { readonly key: string; readonly value: number | string };
  readonly config: Readonly<Record<string, unknown>>;
}

/** What the evaluator must measure of a trial (it may measure more). */
export interface Measurement {
  /** Mean PSNR against the uncached run, dB (Infinity where every image is the uncached one). */
  readonly meanPsnr: number;
  /** Uncached wall time / this config's. */
  readonly speedup: number;
}

export type TunePoint<M extends Measurement = Measurement> = Trial & { readonly measured: M; readonly meetsTarget: boolean };

/** Runs trials (a round at a time) and measures each, in order. */
export type Evaluate<M extends Measurement> = (trials: readonly Trial[]) => Promise<readonly M[]>;

export interface SearchOptions {
  /** The fidelity target, dB of mean PSNR. */
  readonly targetPsnr: number;
  /** Configs evaluated per variant at most (both ends of a knob count); at least 2. */
  readonly evaluationsPerVariant: number;
  /** A numeric knob's bisection stops once the infeasible value is within this ratio above the feasible one. */
  readonly tolerance?: number;
  /** Called before each round's evaluations. */
  onRound?(round: number, trials: readonly Trial[]): void;
}

/** Rounded to three significant digits: a knob's value names a folder, and finer thresholds change nothing visible. */
export function roundKnobValue(value: number): number {
  return Number(value.toPrecision(3));
}

/** The search of one variant's knob: the values to evaluate next, and what was learnt of each. */
interface KnobSearch {
  next(): (number | string)[];
  record(value: number | string, meetsTarget: boolean): void;
}

/**
 * A numeric knob bisected in position u in [0, 1] (0 the faithful end): both ends first, then
 * the middle of the last feasible and first infeasible positions.
 */
function rangeSearch(knob: TuningRange, budget: number, tolerance: number): KnobSearch {
  const [lo, hi] = knob.range;
  const valueAt = (u: number) => roundKnobValue(knob.scale === 'log' ? lo * (hi / lo) ** u : lo + u * (hi - lo));
  const positionOf = new Map<number, number>();
  let feasible: number | undefined;
  let infeasible: number | undefined;
  let asked = 0;
  let done = false;
  const propose = (...us: number[]) => {
    const values = us.map(valueAt);
    us.forEach((u, i) => positionOf.set(values[i], u));
    asked += values.length;
    return values;
  };
  return {
    next() {
      if (done) return [];
      if (asked === 0) return propose(1, 0);
      // The fastest end keeps the target, or the most faithful end misses it: nothing to bisect.
      if (infeasible === undefined || feasible === undefined) return [];
      const [f, i] = [valueAt(feasible), valueAt(infeasible)];
      const middle = valueAt((feasible + infeasible) / 2);
      // Contradicting measurements (a knob not quite monotone on these prompts) end the bisection too.
      const settled = feasible >= infeasible || Math.abs(i - f) <= tolerance * Math.abs(f) || middle === f || middle === i;
      if (asked >= budget || settled) {
        done = true;
        return [];
      }
      return propose((feasible + infeasible) / 2);
    },
    record(value, meetsTarget) {
      const u = positionOf.get(value as number)!;
      if (meetsTarget) feasible = Math.max(feasible ?? u, u);
      else infeasible = Math.min(infeasible ?? u, u);
    },
  };
}

/** A knob of ordered values, bisected by index: both ends first. */
function stepsSearch(values: readonly (number | string)[], budget: number): KnobSearch {
  let feasible: number | undefined;
  let infeasible: number | undefined;
  let asked = 0;
  const propose = (...indices: number[]) => {
    asked += indices.length;
    return indices.map((i) => values[i]);
  };
  return {
    next() {
      if (asked === 0) return propose(...new Set([values.length - 1, 0]));
      if (infeasible === undefined || feasible === undefined || infeasible - feasible <= 1 || asked >= budget) return [];
      return propose(Math.floor((feasible + infeasible) / 2));
    },
    record(value, meetsTarget) {
      const i = values.indexOf(value);
      if (meetsTarget) feasible = Math.max(feasible ?? i, i);
      else infeasible = Math.min(infeasible ?? i, i);
    },
  };
}

/** A variant without a knob: its one config. */
function singleSearch(): KnobSearch {
  let asked = false;
  return {
    next() {
      if (asked) return [];
      asked = true;
      return [''];
    },
    record: () => undefined,
  };
}

function knobSearch(knob: TuningKnob | undefined, budget: number, tolerance: number): KnobSearch {
  if (!knob) return singleSearch();
  return 'range' in knob ? rangeSearch(knob, budget, tolerance) : stepsSearch(knob.values, budget);
}

function trialOf(space: TuneSpace, value: number | string): Trial {
  const { policy, variant } = space;
  const key = variant.knob?.key;
  if (key === undefined) return { name: `${policy}_${variant.name}`, policy, variant: variant.name, config: variant.config };
  return {
    name: `${policy}_${variant.name}_${key}-${value}`,
    policy,
    variant: variant.name,
    knob: { key, value },
    config: { ...variant.config, [key]: value },
  };
}

/** Every config the search evaluated, in the order evaluated. */
export async function searchConfigs<M extends Measurement>(
  spaces: readonly TuneSpace[],
  evaluate: Evaluate<M>,
  options: SearchOptions,
): Promise<TunePoint<M>[]> {
  if (!Number.isInteger(options.evaluationsPerVariant) || options.evaluationsPerVariant < 2)
    throw new RangeError(`evaluations per variant must be an integer of at least 2, got ${options.evaluationsPerVariant}`);
  const names = new Set<string>();
  for (const { policy, variant } of spaces) {
    const name = `${policy}_${variant.name}`;
    if (names.has(name)) throw new RangeError(`policy '${policy}' names two tuning variants '${variant.name}'`);
    names.add(name);
  }
  const searches = spaces.map((space) => ({ space, search: knobSearch(space.variant.knob, options.evaluationsPerVariant, options.tolerance ?? 0.05) }));
  const points: TunePoint<M>[] = [];
  for (let round = 1; ; ++round) {
    const proposals = searches.flatMap(({ space, search }) => search.next().map((value) => ({ search, value, trial: trialOf(space, value) })));
    if (proposals.length === 0) return points;
    options.onRound?.(
      round,
      proposals.map((p) => p.trial),
    );
    const measured = await evaluate(proposals.map((p) => p.trial));
    proposals.forEach(({ search, value, trial }, i) => {
      const meetsTarget = measured[i].meanPsnr >= options.targetPsnr;
      search.record(value, meetsTarget);
      points.push({ ...trial, measured: measured[i], meetsTarget });
    });
  }
}

/** Raised when no evaluated config keeps the target; it carries them all. */
export class TargetNotMetError extends Error {
  constructor(
    message: string,
    readonly points: readonly TunePoint[],
  ) {
    super(message);
    this.name = 'TargetNotMetError';
  }
}

/** The fastest point that meets the target (the more faithful of equally fast ones). */
export function fastestMeetingTarget<P extends TunePoint>(points: readonly P[], targetPsnr: number): P {
  const meeting = points.filter((p) => p.measured.meanPsnr >= targetPsnr);
  if (meeting.length === 0) {
    if (points.length === 0) throw new TargetNotMetError('no config was evaluated: no tunable policy can run this model at these settings', points);
    const best = points.reduce((a, b) => (b.measured.meanPsnr > a.measured.meanPsnr ? b : a));
    throw new TargetNotMetError(
      `no config reaches ${targetPsnr} dB mean PSNR: the most faithful of the ${points.length} evaluated, ${best.name}, reached ` +
        `${best.measured.meanPsnr.toFixed(2)} dB at ${best.measured.speedup.toFixed(2)}x; lower --target-psnr or tune other policies`,
      points,
    );
  }
  return meeting.reduce((a, b) =>
    b.measured.speedup > a.measured.speedup || (b.measured.speedup === a.measured.speedup && b.measured.meanPsnr > a.measured.meanPsnr) ? b : a,
  );
}

/** The variants of the registered policies that bring tuning hints, at a run of `steps` steps. */
export function tuneSpaces(policies: readonly { name: string; tuning?: PolicyTuning }[], steps: number): TuneSpace[] {
  return policies.flatMap(({ name, tuning }) => (tuning?.variants({ steps }) ?? []).map((variant) => ({ policy: name, variant })));
}
