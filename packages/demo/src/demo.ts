// The demo: the reference model's demo prompts, uncached, under cache presets and under the SCM
// policy, measured with the benchmark runner; a table, a side-by-side image grid and the
// residual diff of every step.
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
  type BenchProgress,
  type CellRecord,
  type ComputeDtype,
  type ConfigResult,
} from '@ditcache/cli/bench';
import { parseCacheConfig, resolveConfig } from '@ditcache/core';

/** models/flux-shapes at the root of the repository. */
export const REFERENCE_MODEL = fileURLToPath(new URL('../../../models/flux-shapes', import.meta.url));

export interface DemoOptions {
  /** A FLUX pipeline folder with a demo-prompts.safetensors (default: the reference model). */
  readonly model?: string;
  /** Where cells/, grid.png, residual-diffs.png and results.md go; cells/ is emptied first. */
  readonly out: string;
  /** Only these presets (default: DEMO_PRESETS, then DEMO_SCM). */
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

export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const model = opts.model ?? REFERENCE_MODEL;
  const cells = join(opts.out, 'cells');
  // Fresh timings every time: the demo shows this machine now, never resumes.
  rmSync(cells, { recursive: true, force: true });
  mkdirSync(cells, { recursive: true });
  using file = readBenchPrompts(join(model, 'demo-prompts.safetensors'));
  const count = Math.min(opts.promptCount ?? file.labels.length, file.labels.length);
  using prompts = firstPrompts(file, count);
  const configs = opts.presets ? opts.presets.map(presetConfig) : [...DEMO_PRESETS.map(presetConfig), DEMO_SCM];
  const settings = {
    steps: file.steps ?? 28,
    height: file.height ?? 32,
    width: file.width ?? 32,
    seed: 0,
    repeats: opts.repeats ?? 3,
    dtype: opts.dtype ?? 'float32',
  };
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

  const panels = configs.map((c) => ({
    title: `${c.name}: ${describeConfig(c.cache)}`,
    threshold: resolved(c.cache).residualDiffThreshold,
    series: records.get(c.name)!.map((r) => ({ label: prompts.labels[r.prompt], diffs: r.residualDiffs, cachedSteps: r.cachedSteps })),
  }));
  await renderSvgToPng(residualDiffChartSvg(panels, settings.steps), files.plot);
  writeFileSync(files.table, `${table}\n`);
  return { results, records, prompts: prompts.labels, steps: settings.steps, table, files };
}

const resolved = (cache: Readonly<Record<string, unknown>>) => resolveConfig(parseCacheConfig(cache).base);

/** E.g. 'F1B0, warmup 3, max 3 in a row, TaylorSeer 1', after the policy when it is not DBCache ('scm medium dynamic, F1B0, ...'). */
export function describeConfig(cache: Readonly<Record<string, unknown>>): string {
  const c = resolved(cache);
  const policy = c.policy === 'dbcache' ? '' : `${describePolicy(c)}, `;
  const run = c.maxContinuousCachedSteps < 0 ? '' : `, max ${c.maxContinuousCachedSteps} in a row`;
  return `${policy}F${c.fnComputeBlocks}B${c.bnComputeBlocks}, warmup ${c.maxWarmupSteps}${run}, TaylorSeer ${c.enableTaylorseer ? c.taylorseerOrder : 'off'}`;
}

/** The demo's table: one row per config, totals over the prompts. */
export function demoTable(results: readonly ConfigResult[], steps: number): string {
  const rows = results.map((r) =>
    [
      r.name,
      r.cache ? describePolicy(resolved(r.cache)) : '-',
      r.cache ? String(resolved(r.cache).residualDiffThreshold) : '-',
      r.seconds.toFixed(2),
      `${r.speedup.toFixed(2)}x`,
      `${r.cachedSteps.toFixed(1)}/${steps}`,
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
