// The demo: the reference model's demo prompts, uncached, under cache presets and under the other
// cache policies (SCM, DBCache with FoCa, DBPrune, MagCache calibrated on the first prompt),
// measured with the benchmark runner; a table, a side-by-side image grid and the residual diff of
// every step.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  UNCACHED,
  cellPaths,
  describePolicy,
  evaluateBench,
  firstPrompts,
  formatPsnr,
  imageGridSvg,
  presetConfig,
  readBenchPrompts,
  renderSvgToPng,
  residualDiffChartSvg,
  runBench,
  type BenchConfig,
  type BenchPrompts,
  type BenchProgress,
  type BenchSettings,
  type CellRecord,
  type ComputeDtype,
  type ConfigResult,
} from '@ditcache/cli/bench';
import { magCacheCalibration, magCacheConfigFromCalibration, parseCacheConfig, resolveConfig, type CacheConfig } from '@ditcache/core';

/** models/flux-shapes at the root of the repository. */
export const REFERENCE_MODEL = fileURLToPath(new URL('../../../models/flux-shapes', import.meta.url));

export interface DemoOptions {
  /** A FLUX pipeline folder with a demo-prompts.safetensors (default: the reference model). */
  readonly model?: string;
  /** Where cells/, calibration/ (MagCache's), grid.png, residual-diffs.png and results.md go; cells/ and calibration/ are emptied first. */
  readonly out: string;
  /** Only these presets (default: DEMO_PRESETS, then DEMO_POLICIES and the calibrated MagCache). */
  readonly presets?: readonly string[];
  /** Only the first N demo prompts (default: all). */
  readonly promptCount?: number;
  /** Generations per config and prompt; the fastest is timed (default 3). */
  readonly repeats?: number;
  /** What the pipeline computes in (diffusers' torch_dtype; default float32). */
  readonly dtype?: ComputeDtype;
  onProgress?(p: BenchProgress): void;
}

export interface DemoResult {
  readonly results: readonly ConfigResult[];
  readonly records: ReadonlyMap<string, readonly CellRecord[]>;
  readonly prompts: readonly string[];
  readonly steps: number;
  readonly table: string;
  readonly files: { readonly grid: string; readonly plot: string; readonly table: string };
}

export const DEMO_PRESETS = ['quality', 'balanced', 'fast'] as const;

/**
 * The second cache policy beside the presets: SCM with cache-dit's default 'medium' mask, its 0
 * steps decided by the diff ('dynamic'), TaylorSeer 1 (on the reference model 12 of 28 steps
 * cached at about 57 dB).
 */
export const DEMO_SCM: BenchConfig = Object.freeze({
  name: 'scm-medium',
  cache: Object.freeze({
    policy: 'scm',
    mask_policy: 'medium',
    steps_computation_policy: 'dynamic',
    Fn_compute_blocks: 1,
    Bn_compute_blocks: 0,
    residual_diff_threshold: 0.3,
    max_warmup_steps: 2,
    taylorseer_order: 1,
  }),
});

/**
 * DBCache with FoCa forecasting the cached steps instead of TaylorSeer: threshold 0.15, at most 3
 * cached steps in a row (on the reference model 14.5 of 28 steps cached at about 51 dB; at
 * balanced's 0.2 it caches 17.3 at 42 dB, where TaylorSeer 1 keeps 59).
 */
export const DEMO_FOCA: BenchConfig = Object.freeze({
  name: 'foca',
  cache: Object.freeze({
    Fn_compute_blocks: 1,
    Bn_compute_blocks: 0,
    max_warmup_steps: 2,
    residual_diff_threshold: 0.15,
    max_continuous_cached_steps: 3,
    enable_calibrator: true,
    calibrator_type: 'foca',
  }),
});

/** DBPrune: each block after the first pruned while its input moved under 10% (about 16 of 28 steps prune a block, half the blocks computed, about 46 dB). */
export const DEMO_DBPRUNE: BenchConfig = Object.freeze({
  name: 'dbprune',
  cache: Object.freeze({ policy: 'dbprune', Fn_compute_blocks: 1, Bn_compute_blocks: 0, max_warmup_steps: 2, residual_diff_threshold: 0.1 }),
});

/**
 * Pyramid Attention Broadcast: each attention module's output reused for 2 of every 3 steps
 * within diffusers' default timestep range (100, 800) (on the reference model 43% of the
 * attention calls reused at about 53 dB); the blocks themselves always run.
 */
export const DEMO_PAB: BenchConfig = Object.freeze({
  name: 'pab',
  cache: Object.freeze({ policy: 'pab', spatial_attention_block_skip_range: 3 }),
});

/**
 * FasterCache's attention part at diffusers' defaults, the model being guidance-distilled (FLUX
 * has no uncond call to rebuild): attention forecast as t + (t - t2) / 2 every other step below
 * timestep 681 (on the reference model 29% of the attention calls at about 62 dB).
 */
export const DEMO_FASTERCACHE: BenchConfig = Object.freeze({
  name: 'fastercache',
  cache: Object.freeze({ policy: 'fastercache', is_guidance_distilled: true }),
});

/** The policies after the presets, in their order; MagCache follows, once calibrated. */
export const DEMO_POLICIES: readonly BenchConfig[] = Object.freeze([DEMO_SCM, DEMO_FOCA, DEMO_DBPRUNE, DEMO_PAB, DEMO_FASTERCACHE]);

/** Policies that reuse attention outputs and leave the block chains to run: DBCache's keys mean nothing to them. */
const ATTENTION_POLICIES: readonly string[] = [DEMO_PAB.cache.policy as string, DEMO_FASTERCACHE.cache.policy as string];

/** MagCache's row: diffusers' defaults (threshold 0.06, 3 skipped in a row, 20% retention) with the ratios the first prompt's calibration run recorded. */
export const DEMO_MAGCACHE = 'magcache';

/**
 * MagCache's config for the model: a calibration run on the first demo prompt (computing every
 * step, so a repeat would only cost time) records the magnitude ratios, as `ditcache generate
 * --magcache-calibration` does; its cells go to `out`.
 */
async function calibratedMagCache(model: string, prompts: BenchPrompts, settings: BenchSettings, out: string): Promise<BenchConfig> {
  const name = 'magcache-calibration';
  using first = firstPrompts(prompts, 1);
  const records = await runBench({
    model,
    prompts: first,
    configs: [{ name, cache: { policy: 'magcache', calibrate: true }, keepSummary: true }],
    out,
    settings: { ...settings, repeats: 1 },
  });
  return { name: DEMO_MAGCACHE, cache: { ...magCacheConfigFromCalibration(magCacheCalibration(records.get(name)![0].summary!)), threshold: 0.06 } };
}

export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const model = opts.model ?? REFERENCE_MODEL;
  const cells = join(opts.out, 'cells');
  const calibration = join(opts.out, 'calibration');
  // Fresh timings every time: the demo shows this machine now, never resumes.
  for (const dir of [cells, calibration]) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
  }
  using file = readBenchPrompts(join(model, 'demo-prompts.safetensors'));
  const count = Math.min(opts.promptCount ?? file.labels.length, file.labels.length);
  using prompts = firstPrompts(file, count);
  const settings: BenchSettings = {
    steps: file.steps ?? 28,
    height: file.height ?? 32,
    width: file.width ?? 32,
    seed: 0,
    repeats: opts.repeats ?? 3,
    dtype: opts.dtype ?? 'float32',
  };
  const configs = opts.presets
    ? opts.presets.map(presetConfig)
    : [...DEMO_PRESETS.map(presetConfig), ...DEMO_POLICIES, await calibratedMagCache(model, prompts, settings, calibration)];
  const records = await runBench({ model, prompts, configs, out: cells, settings, onProgress: opts.onProgress });
  const results = await evaluateBench(cells, records);
  const table = demoTable(results, settings.steps);
  const files = { grid: join(opts.out, 'grid.png'), plot: join(opts.out, 'residual-diffs.png'), table: join(opts.out, 'results.md') };

  const columns = [UNCACHED, ...configs.map((c) => c.name)];
  const byName = new Map(results.map((r) => [r.name, r]));
  const tiles = prompts.labels.map((_, p) => columns.map((name) => readFileSync(cellPaths(cells, name, p).image)));
  const columnLabels = columns.map((name) => {
    const r = byName.get(name)!;
    return name === UNCACHED ? [name, `${r.seconds.toFixed(1)} s`] : [name, `${r.speedup.toFixed(2)}x, ${formatPsnr(r)} dB`];
  });
  await renderSvgToPng(await imageGridSvg(tiles, { rowLabels: prompts.labels, columnLabels, scale: 6 }), files.grid);

  // DBPrune measures each block, not the step: it has no diff per step to draw.
  const panels = configs
    .filter((c) => records.get(c.name)!.some((r) => Object.keys(r.residualDiffs).length > 0))
    .map((c) => ({
      title: `${c.name}: ${describeConfig(c.cache)}`,
      threshold: threshold(resolved(c.cache)),
      series: records.get(c.name)!.map((r) => ({ label: prompts.labels[r.prompt], diffs: r.residualDiffs, cachedSteps: r.cachedSteps })),
    }));
  await renderSvgToPng(residualDiffChartSvg(panels, settings.steps), files.plot);
  writeFileSync(files.table, `${table}\n`);
  return { results, records, prompts: prompts.labels, steps: settings.steps, table, files };
}

const resolved = (cache: Readonly<Record<string, unknown>>) => resolveConfig(parseCacheConfig(cache).base);

/** What the policy compares its diffs with: MagCache its predicted error's threshold, the others DBCache's residual diff threshold. */
const threshold = (c: CacheConfig): number => (c.policy === 'magcache' ? (c.policyOptions.threshold as number) : c.residualDiffThreshold);

const CALIBRATORS = { taylorseer: 'TaylorSeer', foca: 'FoCa', dmd: 'DMD' } as const;

/**
 * E.g. 'F1B0, warmup 3, max 3 in a row, TaylorSeer 1', after the policy when it is not DBCache
 * ('scm medium dynamic, F1B0, ...'); MagCache, which takes none of these keys, by its policy alone.
 */
export function describeConfig(cache: Readonly<Record<string, unknown>>): string {
  const c = resolved(cache);
  if (c.policy === 'magcache') return `magcache, threshold ${threshold(c)}, max ${c.policyOptions.maxSkipSteps as number} skipped in a row`;
  if (ATTENTION_POLICIES.includes(c.policy)) return describePolicy(c);
  const policy = c.policy === 'dbcache' ? '' : `${describePolicy(c)}, `;
  const run = c.maxContinuousCachedSteps < 0 ? '' : `, max ${c.maxContinuousCachedSteps} in a row`;
  const order = c.calibratorType === 'taylorseer' ? ` ${c.taylorseerOrder}` : '';
  const calibrator = c.enableTaylorseer ? `${CALIBRATORS[c.calibratorType]}${order}` : 'TaylorSeer off';
  return `${policy}F${c.fnComputeBlocks}B${c.bnComputeBlocks}, warmup ${c.maxWarmupSteps}${run}, ${calibrator}`;
}

/** The Policy column: the policy and its options, then the calibrator where it is not TaylorSeer ('dbcache foca'). */
function policyWords(c: CacheConfig): string {
  const calibrator = c.enableTaylorseer && c.calibratorType !== 'taylorseer' ? ` ${c.calibratorType}` : '';
  return `${describePolicy(c)}${calibrator}`;
}

/** The demo's table: one row per config, totals over the prompts. */
export function demoTable(results: readonly ConfigResult[], steps: number): string {
  const rows = results.map((r) =>
    [
      r.name,
      r.cache ? policyWords(resolved(r.cache)) : '-',
      r.cache && !ATTENTION_POLICIES.includes(resolved(r.cache).policy) ? String(threshold(resolved(r.cache))) : '-',
      r.seconds.toFixed(2),
      `${r.speedup.toFixed(2)}x`,
      `${r.cachedSteps.toFixed(1)}/${steps}${r.attentionSkippedFraction === undefined ? '' : `, attention ${(100 * r.attentionSkippedFraction).toFixed(1)}% reused`}`,
      `${(100 * r.computedFraction).toFixed(1)}%`,
      formatPsnr(r),
      r.meanSsim.toFixed(4),
    ].join(' | '),
  );
  return [
    '| Config | Policy | Threshold | Wall time (s) | Speedup | Cached steps | Blocks computed | PSNR (dB) | SSIM |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r} |`),
  ].join('\n');
}
