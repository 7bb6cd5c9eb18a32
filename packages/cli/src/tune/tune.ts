// `tune()`: the fastest cache config that keeps a fidelity target, for apps and for
// `ditcache tune`. It searches the variants each tunable policy describes (search.ts) on the
// tuning prompts, reruns the pick and the other Pareto-optimal configs that met the target on
// held-out prompts (the same prompts from other seeds), and writes best.yaml, the tables and
// a Pareto plot per policy.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { policyRegistry, type CacheConfigInput, type RegisteredPolicy } from '@ditcache/core';
import type { ComputeDtype } from '@ditcache/diffusion';
import type { CliCacheChain } from '@ditcache/diffusion/cli';

import { paretoFlags, type ConfigResult } from '../bench/report.js';
import { readBenchPrompts, type BenchSettings } from '../bench/runner.js';
import { benchRunSettings } from '../bench/settings.js';
import { checkCacheFitsModel } from '../cache-spec.js';
import { UsageError } from '../errors.js';
import { familiesFor, familyForPipeline, type Families } from '../plugins.js';
import { benchEvaluator, benchPreparer } from './evaluator.js';
import { writeTuneOutputs, type TuneFiles } from './outputs.js';
import { preparedSpaces } from './prepare.js';
import { fastestMeetingTarget, searchConfigs, tuneSpaces, TargetNotMetError, type Evaluate, type Trial, type TunePoint, type TuneSpace } from './search.js';

export interface TuneOptions {
  /** A diffusers-format pipeline folder bench can run. */
  readonly model: string;
  /** A prompts file as bench reads it (prompt_embeds, pooled_prompt_embeds). */
  readonly prompts: string;
  /** Mean PSNR against the uncached images, dB, that the pick must keep on the tuning prompts. */
  readonly targetPsnr: number;
  /** Where cells, best.yaml and the reports go; cells already there are not run again. */
  readonly out: string;
  /** Policies to search (default: every registered policy with tuning hints). */
  readonly policies?: readonly string[];
  readonly steps?: number;
  readonly height?: number;
  readonly width?: number;
  /** Guidance scale (default: the prompts file's, the model folder's, else the pipeline's). */
  readonly guidance?: number;
  /** The family's own flags, by flag (--frames, --fps, --guidance-2, ...), as bench takes them. */
  readonly familyFlags?: ReadonlyMap<string, string | number>;
  /** Plugins to load besides those installed beside the CLI (as --adapter). */
  readonly adapter?: readonly string[];
  /** The families to find the model's among (default: those installed beside the CLI, and adapter's). */
  readonly families?: Families;
  /** Tuning prompt i starts from the noise of seed + i (default 0). */
  readonly seed?: number;
  /** Held-out prompt i starts from the noise of holdoutSeed + i (default seed + 1000). */
  readonly holdoutSeed?: number;
  /** Generations per cell; the fastest is kept (default 1). */
  readonly repeats?: number;
  readonly dtype?: ComputeDtype;
  /** Configs evaluated per variant at most (default 8). */
  readonly evaluationsPerVariant?: number;
  /** Receives a line per round and per config measured (the CLI writes them to stderr). */
  readonly log?: (line: string) => void;
}

export type TunedPoint = TunePoint<ConfigResult>;

/** A finalist: timed again beside the others on the tuning prompts, then measured on the held-out ones. */
export interface HeldOutCheck {
  readonly point: TunedPoint;
  /** The tuning prompts, the finalists and the uncached run timed in one batch (prompt by prompt, every config in turn). */
  readonly timed: ConfigResult;
  readonly heldOut: ConfigResult;
  readonly meetsTarget: boolean;
}

export interface TuneSettings extends BenchSettings {
  readonly holdoutSeed: number;
  readonly targetPsnr: number;
  readonly policies: readonly string[];
}

export interface TuneResult {
  readonly settings: TuneSettings;
  /** The finalist fastest in the timing batch. */
  readonly pick: TunedPoint;
  /** Every config evaluated on the tuning prompts, in the order evaluated. */
  readonly points: readonly TunedPoint[];
  /** The finalists, the pick first: the configs that met the target, skip work, and no config beats in both work and PSNR. */
  readonly heldOut: readonly HeldOutCheck[];
  /** The fastest of those on the held-out prompts that meets the target there (undefined: none does). */
  readonly bestHeldOut: HeldOutCheck | undefined;
  readonly files: TuneFiles;
}

const DEFAULT_EVALUATIONS = 8;
const HOLDOUT_SEED_OFFSET = 1000;

/** The registered policies to search: those named (each must bring tuning hints), else every one that does. */
export function tunablePolicies(names: readonly string[] | undefined): RegisteredPolicy[] {
  const registry = policyRegistry();
  const tunable = registry
    .names()
    .map((n) => registry.get(n)!)
    .filter((p) => p.tuning);
  if (names === undefined) return tunable;
  const tunableNames = tunable.map((p) => p.name).join(', ');
  return names.map((name) => {
    const policy = registry.get(name);
    if (!policy) throw new UsageError(`--policies: '${name}' is not a registered cache policy (tunable: ${tunableNames})`);
    if (!policy.tuning) throw new UsageError(`--policies: policy '${name}' brings no tuning hints (tunable: ${tunableNames})`);
    return policy;
  });
}

/** Runs the search, the held-out check and writes the outputs; see TuneOptions. */
export async function tune(options: TuneOptions): Promise<TuneResult> {
  const log = options.log ?? (() => undefined);
  if (!Number.isFinite(options.targetPsnr)) throw new UsageError(`--target-psnr must be a number of dB, got ${options.targetPsnr}`);
  const policies = tunablePolicies(options.policies);
  const family = familyForPipeline(options.families ?? (await familiesFor(undefined, options.adapter ?? [])), options.model);
  using prompts = readBenchPrompts(options.prompts, family);
  const seed = options.seed ?? 0;
  const settings: TuneSettings = {
    ...benchRunSettings(family, options.model, prompts, { ...options, seed, repeats: options.repeats ?? 1 }, options.familyFlags),
    holdoutSeed: options.holdoutSeed ?? seed + HOLDOUT_SEED_OFFSET,
    targetPsnr: options.targetPsnr,
    policies: policies.map((p) => p.name),
  };
  const count = prompts.labels.length;
  if (prompts.tensors?.latents_in) {
    throw new UsageError(
      `--prompts: ${options.prompts} gives latents_in, so every seed starts from the same noise; held-out prompts need noise drawn from seeds: leave latents_in out`,
    );
  }
  if (settings.holdoutSeed < seed + count && seed < settings.holdoutSeed + count) {
    throw new UsageError(`--holdout-seed ${settings.holdoutSeed}: its ${count} seeds overlap the tuning seeds ${seed}..${seed + count - 1}`);
  }
  const spaces = tuneSpaces(policies, settings.steps);
  if (spaces.length === 0) throw new UsageError(`--policies: ${settings.policies.join(', ')} give no configs to search at ${settings.steps} steps`);
  const chains = family.cacheChains?.(options.model);
  checkSpacesFitModel(spaces, chains);
  mkdirSync(options.out, { recursive: true });

  const { holdoutSeed: _h, targetPsnr: _t, policies: _p, ...bench } = settings;
  const tuning = { model: options.model, family, prompts, out: join(options.out, 'tuning'), settings: bench, label: 'tune' };
  const prepare = benchPreparer(tuning);
  const searched = await preparedSpaces(spaces, policies, { steps: settings.steps }, (policy, config) => {
    log(`tune: preparing policy ${policy}: ${JSON.stringify(config)} on ${count} prompt${count === 1 ? '' : 's'}`);
    return prepare(policy, config);
  });
  // What the preparations added (a ratio list per cache context) must fit the model too.
  checkSpacesFitModel(searched, chains);
  const evaluate = logged(benchEvaluator(tuning), settings.targetPsnr, log);
  const points = await searchConfigs(searched, evaluate, {
    targetPsnr: settings.targetPsnr,
    evaluationsPerVariant: options.evaluationsPerVariant ?? DEFAULT_EVALUATIONS,
    onRound: (round, trials) => log(`tune: round ${round}, ${trials.length} config${trials.length === 1 ? '' : 's'} on ${count} prompts`),
  });
  try {
    fastestMeetingTarget(points, settings.targetPsnr);
  } catch (e) {
    if (e instanceof TargetNotMetError) await writeTuneOutputs(options.out, { model: options.model, settings, points, policies });
    throw e;
  }

  // The search's rounds ran at different times, against an uncached time measured in the first:
  // on a machine whose load drifts their speedups do not compare. The finalists are timed again
  // together, with the uncached run, and the fastest there is the pick.
  const finalists = finalistsOf(points, settings.targetPsnr);
  const run = (label: string, out: string, seed: number) =>
    benchEvaluator({ model: options.model, family, prompts, out: join(options.out, out), settings: { ...bench, seed }, label })(finalists);
  log(`tune: timing ${finalists.length} finalist${finalists.length === 1 ? '' : 's'} together on the tuning prompts`);
  const timed = await run('timing', 'timing', settings.seed);
  log(`tune: held-out check of the finalists with seeds from ${settings.holdoutSeed}`);
  const heldOutResults = await run('held-out', 'holdout', settings.holdoutSeed);
  const checks = finalists.map((point, i) => ({
    point,
    timed: timed[i],
    heldOut: heldOutResults[i],
    meetsTarget: heldOutResults[i].meanPsnr >= settings.targetPsnr,
  }));
  const pickCheck = checks.reduce((a, b) => (b.timed.speedup > a.timed.speedup ? b : a));
  const pick = pickCheck.point;
  const heldOut = [pickCheck, ...checks.filter((c) => c !== pickCheck)];
  const bestHeldOut = heldOut
    .filter((c) => c.meetsTarget)
    .reduce<HeldOutCheck | undefined>((a, b) => (!a || b.heldOut.speedup > a.heldOut.speedup ? b : a), undefined);
  const files = await writeTuneOutputs(options.out, { model: options.model, settings, points, policies, pick, heldOut, bestHeldOut });
  return { settings, pick, points, heldOut, bestHeldOut, files };
}

/** Each variant against the model's block chains (Fn + Bn within each), before any work. */
function checkSpacesFitModel(spaces: readonly TuneSpace[], chains: readonly CliCacheChain[] | undefined): void {
  if (!chains) return;
  for (const { policy, variant } of spaces) {
    try {
      checkCacheFitsModel(variant.config as CacheConfigInput, chains);
    } catch (e) {
      throw new UsageError((e as Error).message.replace(/^--cache:/, `--policies: policy '${policy}', variant '${variant.name}':`));
    }
  }
}

/**
 * The configs worth timing: those that met the target, and among them the ones no other beats in
 * both work (blocks computed) and PSNR. Work, unlike a wall time, does not drift with the
 * machine's load. A config that computes every block does the uncached run's work, so it is a
 * finalist only when no config that caches meets the target.
 */
function finalistsOf(points: readonly TunedPoint[], targetPsnr: number): TunedPoint[] {
  const meeting = points.filter((p) => p.meetsTarget);
  const caching = meeting.filter((p) => p.measured.computedFraction < 1);
  if (caching.length === 0) return [fastestMeetingTarget(meeting, targetPsnr)];
  const front = paretoFlags(caching.map((p) => ({ x: 1 - p.measured.computedFraction, y: p.measured.meanPsnr })));
  // One config per work and PSNR (equal points are the same trade-off).
  const seen = new Set<string>();
  return caching.filter((p, i) => {
    const key = `${p.measured.computedFraction}/${p.measured.meanPsnr}`;
    if (!front[i] || seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** The evaluator, with a log line per config measured. */
function logged(evaluate: Evaluate<ConfigResult>, targetPsnr: number, log: (line: string) => void): Evaluate<ConfigResult> {
  return async (trials: readonly Trial[]) => {
    const results = await evaluate(trials);
    results.forEach((r, i) => {
      const psnr = Number.isFinite(r.meanPsnr) ? `${r.meanPsnr.toFixed(2)} dB` : 'identical';
      log(`tune: ${trials[i].name}: ${psnr}, ${r.speedup.toFixed(2)}x${r.meanPsnr >= targetPsnr ? '' : ` (below ${targetPsnr} dB)`}`);
    });
    return results;
  };
}
