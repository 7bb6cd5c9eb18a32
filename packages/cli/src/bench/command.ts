// `ditcache bench`: a grid of cache configs over prompts on a pipeline folder of any family the
// CLI can run (images or videos); pictures per config, metrics against the uncached run, a
// markdown table and a speedup-vs-PSNR plot.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import type { Command } from 'commander';

import { SCM_POLICY, parseCacheConfig, resolveConfig, scmMask, type ScmPreset } from '@ditcache/core';
import type { ComputeDtype } from '@ditcache/diffusion';
import type { CliFamily } from '@ditcache/diffusion/cli';

import { adapterOption } from '../adapters-command.js';
import { checkCacheFitsModel } from '../cache-spec.js';
import { UsageError } from '../errors.js';
import { addFamilyOptions, familyFlagsGiven } from '../family-options.js';
import { dtypeOption } from '../load-options.js';
import { finite, nonNegativeInt, positiveInt } from '../parsers.js';
import { familiesFor, familyForPipeline, type Families, type ProgramFamilies } from '../plugins.js';
import { benchProgress } from './progress.js';
import { paretoChartSvg, renderSvgToPng } from './charts.js';
import { readBenchConfigs, UNCACHED, type BenchConfig } from './configs.js';
import { readBenchPrompts } from './prompts.js';
import { benchMarkdown, evaluateBench, type ConfigResult } from './report.js';
import { runBench } from './runner.js';
import { benchRunSettings, withoutTextOptions } from './settings.js';

export interface BenchFlags {
  model: string;
  prompts: string;
  configs: string;
  out: string;
  steps?: number;
  height?: number;
  width?: number;
  /** Guidance scale, as generate's --guidance (default: the prompts file's, the folder's, else the pipeline's). */
  guidance?: number;
  seed: number;
  repeats: number;
  /** What the pipeline computes in (default float32). */
  dtype?: ComputeDtype;
  /** --adapter: plugins to load besides those installed beside the CLI. */
  adapter?: string[];
}

export interface BenchOutputs {
  readonly results: readonly ConfigResult[];
  readonly table: string;
  readonly files: { readonly table: string; readonly json: string; readonly plot: string };
}

/** Each config against the model's block chains (Fn + Bn within each, one params_modifiers entry per chain), before any work. */
function checkConfigsFitModel(family: CliFamily, model: string, configs: readonly BenchConfig[]): void {
  const chains = family.cacheChains?.(model);
  if (!chains) return;
  for (const c of configs) {
    try {
      checkCacheFitsModel(c.cache, chains);
    } catch (e) {
      throw new UsageError((e as Error).message.replace(/^--cache:/, `--configs: '${c.name}':`));
    }
  }
}

/**
 * Each config that takes its step mask from a preset (SCM's `mask_policy`) against the run's step
 * count, before any work: cache-dit's presets cover some counts only.
 */
function checkConfigsFitSteps(configs: readonly BenchConfig[], steps: number): void {
  for (const c of configs) {
    const config = resolveConfig(parseCacheConfig(c.cache).base);
    if (config.policy !== SCM_POLICY) continue;
    try {
      scmMask(config.policyOptions.maskPolicy as ScmPreset, steps);
    } catch (e) {
      throw new UsageError(`--configs: '${c.name}': ${(e as Error).message} (--steps)`);
    }
  }
}

/**
 * Runs (or resumes) a benchmark and writes results.md, results.json and pareto.png into
 * flags.out. The model runs through the family that runs its folder (`families`, else the
 * plugins installed beside the CLI and --adapter's), with the family's own flags (`familyFlags`,
 * by flag: --frames, --fps, --guidance-2, ...) as generate takes them.
 */
export async function bench(flags: BenchFlags, families?: Families, familyFlags: ReadonlyMap<string, string | number> = new Map()): Promise<BenchOutputs> {
  const family = familyForPipeline(families ?? (await familiesFor(undefined, flags.adapter ?? [])), flags.model);
  const configs = readBenchConfigs(flags.configs);
  checkConfigsFitModel(family, flags.model, configs);
  using prompts = readBenchPrompts(flags.prompts, family);
  const settings = benchRunSettings(family, flags.model, prompts, flags, familyFlags);
  const { width, height } = settings;
  checkConfigsFitSteps(configs, settings.steps);
  mkdirSync(flags.out, { recursive: true });

  const progress = benchProgress();
  let records: Awaited<ReturnType<typeof runBench>>;
  try {
    records = await runBench({ model: flags.model, prompts, configs, out: flags.out, settings, family, onProgress: (p) => progress.update(p) });
  } finally {
    progress.stop();
  }
  const results = await evaluateBench(flags.out, records);
  const table = benchMarkdown(results, settings.steps);
  const files = { table: join(flags.out, 'results.md'), json: join(flags.out, 'results.json'), plot: join(flags.out, 'pareto.png') };
  const frames = records.get(UNCACHED)?.[0]?.frames;
  const count = prompts.labels.length;
  const runDescription = [
    `Model ${flags.model} (${family.label}) in ${settings.dtype}`,
    `${count} prompts`,
    `${settings.steps} steps`,
    `${width}x${height}${frames === undefined ? '' : `, ${frames} frames`}`,
    ...(settings.guidance === undefined ? [] : [`guidance ${settings.guidance}`]),
    ...Object.entries(settings.family ?? {})
      .filter(([setting]) => setting !== 'frames')
      .map(([setting, value]) => `${setting} ${value}`),
    prompts.tensors?.latents_in ? "the prompts file's latents_in as noise" : `seeds ${settings.seed}..${settings.seed + count - 1}`,
  ].join(', ');
  const compared =
    frames === undefined
      ? 'PSNR and SSIM of the 8-bit images against the uncached run, averaged over prompts'
      : "PSNR of each 8-bit video's frames together and SSIM averaged over its frames, against the uncached run, averaged over prompts";
  const header = `${runDescription}. ${compared}; wall time summed over prompts (VAE decoding included; the fastest of ${settings.repeats} per cell).\n\n`;
  writeFileSync(files.table, `${header}${table}\n`);
  writeFileSync(
    files.json,
    `${JSON.stringify({ model: flags.model, family: family.label, prompts: prompts.labels, settings, results }, (_, v: unknown) => (v === Infinity ? null : v), 2)}\n`,
  );
  const points = results.filter((r) => r.name !== UNCACHED).map((r) => ({ label: r.name, x: r.speedup, y: r.meanPsnr, highlighted: r.pareto }));
  await renderSvgToPng(
    paretoChartSvg(points, {
      title: `Speedup vs PSNR, ${settings.steps} steps (Pareto front in red)`,
      xLabel: 'wall-clock speedup vs uncached',
      yLabel: 'PSNR vs uncached (dB)',
    }),
    files.plot,
  );
  return { results, table, files };
}

/** Adds the `bench` command to the program, with the options of the families `loaded` holds (as generate has them). */
export function registerBench(program: Command, loaded?: ProgramFamilies): void {
  const command = program
    .command('bench')
    .description(
      'run cache configs over prompts on a pipeline of any installed family, images or videos; metrics vs uncached, a table and a speedup-vs-PSNR plot (resumable)',
    )
    .requiredOption('--model <dir>', 'a diffusers-format pipeline folder')
    .addOption(adapterOption())
    .requiredOption(
      '--prompts <file>',
      "safetensors with the tensors generate's --inputs takes for the family (prompt_embeds, pooled_prompt_embeds, negative_prompt_embeds, ...), one row per prompt, e.g. a model's demo-prompts.safetensors",
    )
    .requiredOption(
      '--configs <file|grid>',
      '`grid` for the built-in grids (DBCache and SCM), or a JSON / YAML file: a list of configs (or preset names), a mapping name -> config, or { grid: { axis: [values] } } (or a list of such grids)',
    )
    .option('--out <dir>', 'where pictures, records and the report go; finished cells there are not run again', 'bench-out')
    .option('--steps <n>', "denoising steps (default: the prompts file's, the folder's, else 28)", positiveInt('--steps'))
    .option('--height <px>', "image height (default: the prompts file's, else the folder's)", positiveInt('--height'))
    .option('--width <px>', "image width (default: the prompts file's, else the folder's)", positiveInt('--width'))
    .option('--guidance <g>', "guidance scale (default: the prompts file's, the folder's, else the pipeline's)", finite('--guidance'))
    .option('--seed <n>', 'prompt i starts from the noise of seed + i', nonNegativeInt('--seed'), 0)
    .option('--repeats <n>', 'generations per cell; the fastest is kept (steadier timings on a busy machine)', positiveInt('--repeats'), 1)
    .addOption(dtypeOption());
  const familyFlags = addFamilyOptions(command, loaded?.families.loaded.map((p) => withoutTextOptions(p.family)) ?? []);
  command.action(async (parsed: BenchFlags & Record<string, unknown>) => {
    const given = familyFlagsGiven(parsed, familyFlags);
    const { table, files } = await bench(parsed, await familiesFor(loaded, parsed.adapter ?? []), given);
    process.stdout.write(`${table}\n\nwrote ${files.table}, ${files.json} and ${files.plot}\n`);
  });
}
