// The wall-clock speedup of a cached pipeline run against the speedup its skipped work allows.
// Random weights never settle the way trained ones do, so the residual-diff threshold is taken
// from an uncached calibration run of the same request (a quantile of the diffs it measured):
// the cached run then skips a known share of steps, and what is measured is how much of the
// skipped work turns into saved time. Steps are timed one by one too, so that a shortfall
// shows whether it comes from the cached steps (work the FLOP count leaves out) or from the
// computed ones (the engine's bookkeeping).
import { disableCache, enableCache, summary, type CacheConfigInput, type CacheSummary } from '@ditcache/core';

import { benchSetting, cpuSince, loadAverage, machineLine, markdownTable, median, ms, quantile } from './harness.js';

export interface CacheBenchmark {
  /** e.g. 'FLUX.1 pipeline, 28 steps'. */
  title: string;
  /** What enableCache gets: the pipeline. */
  target: object;
  /** One generate call of the request (no decoding), its outputs disposed; `onStep` after each step. */
  run(onStep: () => void): void;
  /** The cache config without its threshold. */
  config: CacheConfigInput;
  /** The request in words, e.g. '28 steps, 256 image tokens, guidance 3.5'. */
  request: string;
}

/** One timed run: its wall time, its process CPU time and each step's wall time. */
interface TimedRun {
  seconds: number;
  cpu: number;
  steps: number[];
}

export interface CacheResult {
  threshold: number;
  uncached: number[];
  cached: number[];
  speedup: { median: number; min: number; max: number };
  /** uncached / cached process CPU time, median over rounds. */
  cpuSpeedup: number;
  summary: CacheSummary;
  /** 1 / (1 - flopsSkippedFraction), or null when the adapter does not count FLOPs. */
  flopsIdeal: number | null;
  blocksIdeal: number;
  markdown: string;
}

function timed(bench: CacheBenchmark): TimedRun {
  const steps: number[] = [];
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let last = t0;
  bench.run(() => {
    const now = performance.now();
    steps.push((now - last) / 1000);
    last = now;
  });
  return { seconds: (performance.now() - t0) / 1000, cpu: cpuSince(c0), steps };
}

/**
 * Calibrates the threshold, then times uncached and cached runs in alternating rounds. Settings:
 * DITCACHE_BENCH_CACHE_ROUNDS (5), DITCACHE_BENCH_CACHE_QUANTILE (0.7: the share of the
 * calibration run's diffs that fall below the threshold).
 */
export function runCacheBenchmark(bench: CacheBenchmark): CacheResult {
  const rounds = benchSetting('CACHE_ROUNDS', 5);
  const share = benchSetting('CACHE_QUANTILE', 0.7);
  console.error(`${bench.title}: warm-up and calibration runs...`);
  bench.run(() => {});
  // A threshold no diff reaches: every step after warmup is measured and none is cached.
  enableCache(bench.target, { ...bench.config, residual_diff_threshold: 1e-12 });
  bench.run(() => {});
  const diffs = summary(bench.target, { print: false }).contexts.flatMap((c) => [...Object.values(c.residualDiffs), ...Object.values(c.cfgResidualDiffs)]);
  disableCache(bench.target);
  if (diffs.length === 0) throw new Error(`${bench.title}: the calibration run measured no residual diffs (is the warmup as long as the run?)`);
  const threshold = Number(quantile(diffs, share).toPrecision(3));
  const config = { ...bench.config, residual_diff_threshold: threshold };

  const uncached: TimedRun[] = [];
  const cached: TimedRun[] = [];
  let last: CacheSummary | undefined;
  const load = [loadAverage()];
  const timeCached = (): void => {
    enableCache(bench.target, config);
    cached.push(timed(bench));
    const s = summary(bench.target, { print: false });
    disableCache(bench.target);
    if (last && (s.computedBlocks !== last.computedBlocks || s.cachedSteps !== last.cachedSteps)) {
      throw new Error(`${bench.title}: cached runs of the same request made different decisions`);
    }
    last = s;
  };
  for (let round = 0; round < rounds; ++round) {
    console.error(`${bench.title}: round ${round + 1} of ${rounds}`);
    if (round % 2 === 0) {
      uncached.push(timed(bench));
      timeCached();
    } else {
      timeCached();
      uncached.push(timed(bench));
    }
  }
  load.push(loadAverage());
  const s = last!;
  const perRound = uncached.map((u, i) => u.seconds / cached[i].seconds);
  const speedup = { median: median(perRound), min: Math.min(...perRound), max: Math.max(...perRound) };
  const cpuSpeedup = median(uncached.map((u, i) => u.cpu / cached[i].cpu));
  const flopsIdeal = s.flopsSkippedFraction === undefined ? null : 1 / (1 - s.flopsSkippedFraction);
  const blocksIdeal = s.totalBlocks / s.computedBlocks;
  const result = {
    threshold,
    uncached: uncached.map((r) => r.seconds),
    cached: cached.map((r) => r.seconds),
    speedup,
    cpuSpeedup,
    summary: s,
    flopsIdeal,
    blocksIdeal,
  };
  const markdown = cacheMarkdown(bench, result, { rounds, share, calibrationDiffs: diffs, load, steps: stepTimes(uncached, cached, s) });
  console.log(markdown);
  return { ...result, markdown };
}

interface StepTimes {
  /** Median over runs of the mean step of an uncached run. */
  uncached: number;
  /** In cached runs: steps no context cached, and steps every context cached (median over runs of their mean). */
  computed: number | null;
  cached: number | null;
  /** An all-cached step's time if time followed FLOPs: null when some steps were cached by some contexts only. */
  cachedIdeal: number | null;
}

function stepTimes(uncached: TimedRun[], cached: TimedRun[], s: CacheSummary): StepTimes {
  const steps = uncached[0].steps.length;
  const cachedBy = Array.from({ length: steps }, (_, i) => s.contexts.filter((c) => c.cachedSteps.includes(i)).length);
  const allCached = cachedBy.map((n) => n === s.contexts.length);
  const noneCached = cachedBy.map((n) => n === 0);
  const mean = (xs: number[]): number | null => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
  const medianOf = (runs: TimedRun[], pick: (i: number) => boolean): number | null => {
    const means = runs.map((r) => mean(r.steps.filter((_, i) => pick(i)))).filter((x): x is number => x !== null);
    return means.length ? median(means) : null;
  };
  const uncachedStep = medianOf(uncached, () => true)!;
  const mixed = cachedBy.some((n) => n > 0 && n < s.contexts.length);
  const cachedCount = allCached.filter(Boolean).length;
  let cachedIdeal: number | null = null;
  if (!mixed && cachedCount > 0 && s.flopsSkippedFraction !== undefined) {
    // All skipped FLOPs fall in the all-cached steps: each skips skipped / cachedCount of a step's FLOPs x steps.
    cachedIdeal = uncachedStep * (1 - (s.flopsSkippedFraction * steps) / cachedCount);
  }
  return { uncached: uncachedStep, computed: medianOf(cached, (i) => noneCached[i]), cached: medianOf(cached, (i) => allCached[i]), cachedIdeal };
}

function cacheMarkdown(
  bench: CacheBenchmark,
  r: Omit<CacheResult, 'markdown'>,
  s: { rounds: number; share: number; calibrationDiffs: number[]; load: string[]; steps: StepTimes },
): string {
  const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
  const maybeMs = (x: number | null): string => (x === null ? '-' : `${ms(x)} ms`);
  const cfg = JSON.stringify({ ...bench.config, residual_diff_threshold: r.threshold });
  const lines = [
    `### ${bench.title}: cached vs uncached (ours)`,
    '',
    `Request: ${bench.request}. Cache: \`${cfg}\`. The threshold is the ${Math.round(s.share * 100)}th percentile of the ` +
      `${s.calibrationDiffs.length} residual diffs an uncached calibration run measured (min ${Math.min(...s.calibrationDiffs).toFixed(4)}, ` +
      `median ${median(s.calibrationDiffs).toFixed(4)}, max ${Math.max(...s.calibrationDiffs).toFixed(4)}): random weights do not settle like ` +
      'trained ones, so a fixed threshold would cache nothing or everything.',
    '',
    `Machine: ${machineLine()}; load average ${s.load.join(' -> ')}. ${s.rounds} rounds, uncached and cached taking turns to go first; ` +
      'the speedup is per round (uncached / cached), median over rounds and its range.',
    '',
  ];
  const steps = r.summary.contexts.map((c) => `${c.name}: ${c.cachedSteps.length} of ${c.steps} (${c.cachedSteps.join(', ')})`).join('; ');
  const range = (xs: number[]): string => `${ms(median(xs))} ms (${ms(Math.min(...xs))}-${ms(Math.max(...xs))})`;
  const rows = [
    ['uncached run, median (range)', range(r.uncached)],
    ['cached run, median (range)', range(r.cached)],
    ['steps cached', steps],
    ['blocks computed', `${r.summary.computedBlocks} of ${r.summary.totalBlocks} (${pct(r.summary.computedBlocks / r.summary.totalBlocks)})`],
    ['transformer FLOPs skipped', r.summary.flopsSkippedFraction === undefined ? '-' : pct(r.summary.flopsSkippedFraction)],
    ['**wall-clock speedup**', `**${r.speedup.median.toFixed(2)}x** (${r.speedup.min.toFixed(2)}-${r.speedup.max.toFixed(2)})`],
    ['ideal from FLOPs, 1 / (1 - skipped)', r.flopsIdeal === null ? '-' : `${r.flopsIdeal.toFixed(2)}x`],
    ['**achieved / FLOPs ideal** (goal >= 0.95)', r.flopsIdeal === null ? '-' : `**${(r.speedup.median / r.flopsIdeal).toFixed(3)}**`],
    [
      'CPU-time speedup (process CPU, all threads) / FLOPs ideal',
      `${r.cpuSpeedup.toFixed(2)}x / ${r.flopsIdeal === null ? '-' : (r.cpuSpeedup / r.flopsIdeal).toFixed(3)}`,
    ],
    ['ideal from blocks, total / computed', `${r.blocksIdeal.toFixed(2)}x`],
    ['achieved / blocks ideal', (r.speedup.median / r.blocksIdeal).toFixed(3)],
    ['step of an uncached run, mean', maybeMs(s.steps.uncached)],
    ['computed step of a cached run, mean', maybeMs(s.steps.computed)],
    ['cached step, mean / FLOPs ideal', `${maybeMs(s.steps.cached)} / ${maybeMs(s.steps.cachedIdeal)}`],
  ];
  lines.push(markdownTable(['', 'value'], rows));
  return lines.join('\n');
}
