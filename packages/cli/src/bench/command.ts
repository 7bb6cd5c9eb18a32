// `ditcache bench`: a grid of cache configs over prompts on a FLUX pipeline folder; images per
// config, metrics against the uncached run, a markdown table and a speedup-vs-PSNR plot.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { InvalidArgumentError, type Command } from 'commander';

import { PIPELINE_DEFAULTS_FILE, readPipelineDefaults, type ComputeDtype } from '@ditcache/diffusion';

import { UsageError } from '../errors.js';
import { dtypeOption } from '../load-options.js';
import { pipelineClassOf } from '../model-folder.js';
import { benchProgress } from './progress.js';
import { paretoChartSvg, renderSvgToPng } from './charts.js';
import { readBenchConfigs, UNCACHED } from './configs.js';
import { benchMarkdown, evaluateBench, type ConfigResult } from './report.js';
import { readBenchPrompts, runBench } from './runner.js';

export interface BenchFlags {
  model: string;
  prompts: string;
  configs: string;
  out: string;
  steps?: number;
  height?: number;
  width?: number;
  seed: number;
  repeats: number;
  /** What the pipeline computes in (default float32). */
  dtype?: ComputeDtype;
}

export interface BenchOutputs {
  readonly results: readonly ConfigResult[];
  readonly table: string;
  readonly files: { readonly table: string; readonly json: string; readonly plot: string };
}

/** Runs (or resumes) a benchmark and writes results.md, results.json and pareto.png into flags.out. */
export async function bench(flags: BenchFlags): Promise<BenchOutputs> {
  const cls = pipelineClassOf(flags.model, { FluxTransformer2DModel: 'FluxPipeline' });
  if (cls !== 'FluxPipeline') throw new UsageError(`--model: bench runs FLUX pipelines; ${flags.model} holds a ${cls}`);
  const configs = readBenchConfigs(flags.configs);
  using prompts = readBenchPrompts(flags.prompts);
  // Flags win, then what the prompts file recommends, then the model folder's ditcache.json (as generate reads it).
  const folder = readPipelineDefaults(flags.model);
  const height = flags.height ?? prompts.height ?? folder.height;
  const width = flags.width ?? prompts.width ?? folder.width;
  if (height === undefined || width === undefined) {
    throw new UsageError(`--height and --width are needed: neither ${flags.prompts} nor ${join(flags.model, PIPELINE_DEFAULTS_FILE)} recommends a size`);
  }
  const steps = flags.steps ?? prompts.steps ?? folder.numInferenceSteps ?? 28;
  const settings = { steps, height, width, seed: flags.seed, repeats: flags.repeats, dtype: flags.dtype ?? 'float32' };
  mkdirSync(flags.out, { recursive: true });

  const progress = benchProgress();
  let records: Awaited<ReturnType<typeof runBench>>;
  try {
    records = await runBench({ model: flags.model, prompts, configs, out: flags.out, settings, onProgress: (p) => progress.update(p) });
  } finally {
    progress.stop();
  }
  const results = await evaluateBench(flags.out, records);
  const table = benchMarkdown(results, settings.steps);
  const files = { table: join(flags.out, 'results.md'), json: join(flags.out, 'results.json'), plot: join(flags.out, 'pareto.png') };
  const header =
    `Model ${flags.model} in ${settings.dtype}, ${prompts.labels.length} prompts, ${settings.steps} steps, ${width}x${height}, seeds ${settings.seed}..${settings.seed + prompts.labels.length - 1}. ` +
    `PSNR and SSIM of the 8-bit images against the uncached run, averaged over prompts; wall time summed over prompts (VAE decoding included; the fastest of ${settings.repeats} per cell).\n\n`;
  writeFileSync(files.table, `${header}${table}\n`);
  writeFileSync(
    files.json,
    `${JSON.stringify({ model: flags.model, prompts: prompts.labels, settings, results }, (_, v: unknown) => (v === Infinity ? null : v), 2)}\n`,
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

const positiveInt =
  (flag: string) =>
  (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${flag} must be a positive integer`);
    return n;
  };

/** Adds the `bench` command to the program. */
export function registerBench(program: Command): void {
  program
    .command('bench')
    .description('run cache configs over prompts on a FLUX pipeline; metrics vs uncached, a table and a speedup-vs-PSNR plot (resumable)')
    .requiredOption('--model <dir>', 'a diffusers-format FLUX pipeline folder')
    .requiredOption(
      '--prompts <file>',
      "safetensors with prompt_embeds (P, tokens, dim) and pooled_prompt_embeds (P, dim), e.g. a model's demo-prompts.safetensors",
    )
    .requiredOption(
      '--configs <file|grid>',
      '`grid` for the built-in grid, or a JSON / YAML file: a list of configs (or preset names), a mapping name -> config, or { grid: { axis: [values] } }',
    )
    .option('--out <dir>', 'where images, records and the report go; finished cells there are not run again', 'bench-out')
    .option('--steps <n>', "denoising steps (default: the prompts file's, else 28)", positiveInt('--steps'))
    .option('--height <px>', "image height (default: the prompts file's)", positiveInt('--height'))
    .option('--width <px>', "image width (default: the prompts file's)", positiveInt('--width'))
    .option(
      '--seed <n>',
      'prompt i starts from the noise of seed + i',
      (v) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('--seed must be a non-negative integer');
        return n;
      },
      0,
    )
    .option('--repeats <n>', 'generations per cell; the fastest is kept (steadier timings on a busy machine)', positiveInt('--repeats'), 1)
    .addOption(dtypeOption())
    .action(async (flags: BenchFlags) => {
      const { table, files } = await bench(flags);
      process.stdout.write(`${table}\n\nwrote ${files.table}, ${files.json} and ${files.plot}\n`);
    });
}
