#!/usr/bin/env node
import { dirname, resolve } from 'node:path';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';
import cliProgress from 'cli-progress';
import { availableLearnedMetrics, MetricsSession, type CompareOptions, type LpipsBackbone, type ProgressReporter } from './compare.js';
import { MetricsError } from './errors.js';
import { isDirectory, siblingDirectories } from './pairs.js';
import { comparisonToJson, markdownTable, METRIC_NAMES, textReport, type Comparison, type MetricName } from './report.js';
import type { OnnxRuntimeChoice } from './onnx-network.js';
import type { SsimWindow } from './ssim.js';

/**
 * ditcache-metrics METRIC... -i1 PATH -i2 PATH [--json] [--table]
 * ditcache-metrics METRIC... --ref-dir DIR [--source-dir DIR] [--json] [--table]
 */

const USAGE_EXAMPLES = `
Metrics: ${METRIC_NAMES.join(', ')}, all (the pixel metrics plus every learned
metric whose model files are in --models; clip_score also needs --prompts).

Examples:
  ditcache-metrics psnr ssim -i1 ref.png -i2 cached.png
  ditcache-metrics psnr ssim lpips -i1 out/baseline -i2 out/F1B0_R0.08 --json
  ditcache-metrics all --ref-dir out/baseline --prompts prompts.txt --table
`;

interface CliOptions {
  i1?: string;
  i2?: string;
  refDir?: string;
  sourceDir?: string;
  json?: boolean;
  table?: boolean;
  ssimWindow: SsimWindow;
  dataRange?: number;
  threads?: number;
  models?: string;
  lpipsNet: LpipsBackbone;
  prompts?: string;
  runtime: OnnxRuntimeChoice;
  batchSize: number;
  progress?: boolean;
}

function positiveNumber(value: string): number {
  const parsed = Number(value);
  if (!(parsed > 0) || !Number.isFinite(parsed)) throw new InvalidArgumentError('must be a positive number');
  return parsed;
}

function positiveInteger(value: string): number {
  const parsed = positiveNumber(value);
  if (!Number.isInteger(parsed)) throw new InvalidArgumentError('must be a positive integer');
  return parsed;
}

/** `-i1` and `-i2` are the established spellings (cache-dit's CLI); commander wants `--i1`. */
export function normaliseArguments(argv: readonly string[]): string[] {
  return argv.map((arg) => arg.replace(/^-(i[12])(=|$)/, '--$1$2'));
}

function expandMetrics(names: readonly string[], options: CompareOptions): { metrics: MetricName[]; skipped: string[] } {
  const requested = new Set<MetricName>();
  let skipped: string[] = [];
  for (const raw of names) {
    const name = raw.toLowerCase();
    if (name === 'all') {
      for (const m of ['psnr', 'ssim', 'mse', 'mae'] as const) requested.add(m);
      const learned = availableLearnedMetrics(options);
      for (const m of learned.available) requested.add(m);
      skipped = learned.skipped;
    } else if ((METRIC_NAMES as readonly string[]).includes(name)) {
      requested.add(name as MetricName);
    } else {
      throw new MetricsError(`unknown metric "${raw}" (choose from ${METRIC_NAMES.join(', ')}, all)`);
    }
  }
  return { metrics: METRIC_NAMES.filter((m) => requested.has(m)), skipped };
}

/** A cli-progress bar per metric on stderr; only when asked or when stderr is a terminal. */
function progressFactory(enabled: boolean): CompareOptions['progress'] {
  if (!enabled) return undefined;
  return (label: string, total: number): ProgressReporter => {
    if (total < 2) return { update: () => undefined, stop: () => undefined };
    const bar = new cliProgress.SingleBar(
      {
        stream: process.stderr,
        format: '{label} |{bar}| {value}/{total} | {eta_formatted}',
        hideCursor: true,
        clearOnComplete: false,
        // --progress into a file or pipe: print updates there too (cli-progress skips non-TTYs otherwise).
        noTTYOutput: true,
        notTTYSchedule: 1000,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, { label });
    return { update: (done) => bar.update(done), stop: () => bar.stop() };
  };
}

export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<number> {
  const program = new Command()
    .name('ditcache-metrics')
    .description('Fidelity metrics between images or directories of images (pairs matched by file name).')
    .argument('<metric...>', `one or more of ${METRIC_NAMES.join(', ')}, all`)
    .option('--i1 <path>', 'reference image or directory (also spelled -i1)')
    .option('--i2 <path>', 'image or directory to compare with it (also spelled -i2)')
    .option('-r, --ref-dir <dir>', '1-vs-many: compare this reference directory with every sibling directory')
    .option('-d, --source-dir <dir>', "1-vs-many: the directory holding the directories to compare (default: the reference's parent)")
    .option('--json', 'print one JSON object')
    .option('--table', 'print a markdown table')
    .addOption(new Option('--ssim-window <window>', 'SSIM window: 7x7 uniform or Gaussian (sigma 1.5)').choices(['uniform', 'gaussian']).default('uniform'))
    .option('--data-range <number>', 'data range for PSNR and SSIM (default: 255 for 8-bit, 65535 for 16-bit, 1 for float)', positiveNumber)
    .option('--threads <n>', 'worker threads and network threads (default: number of cores)', positiveInteger)
    .option('--models <dir>', 'folder with the ONNX exports (default: $DITCACHE_METRICS_MODELS or ~/.cache/ditcache/metrics)')
    .addOption(new Option('--lpips-net <net>', 'LPIPS backbone').choices(['alex', 'vgg']).default('alex'))
    .option('--prompts <file>', 'prompts for clip_score: .txt (one per line, file-name order) or .json (file name -> prompt)')
    .addOption(
      new Option('--runtime <runtime>', 'ONNX runtime: onnxruntime-node if installed, else onnxruntime-web').choices(['auto', 'node', 'web']).default('auto'),
    )
    .option('--batch-size <n>', 'images per network call for fid and clip_score', positiveInteger, 8)
    .option('--progress', 'show progress bars on stderr (default: when stderr is a terminal)')
    .option('--no-progress', 'never show progress bars')
    .addHelpText('after', USAGE_EXAMPLES)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  try {
    program.parse(normaliseArguments(argv), { from: 'user' });
  } catch (error) {
    const code = (error as { exitCode?: number }).exitCode;
    return code ?? 1;
  }
  const options = program.opts<CliOptions>();
  try {
    await runCli(program.args, options);
    return 0;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`ditcache-metrics: error: ${message}\n`);
    // Bad input is a MetricsError with a one-line message; anything else is a bug worth a trace.
    if (!(error instanceof MetricsError) && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    return 1;
  }
}

async function runCli(metricNames: string[], options: CliOptions): Promise<void> {
  if (options.json && options.table) throw new MetricsError('choose one of --json and --table');
  const compareOptions: CompareOptions = {
    metrics: [],
    ssimWindow: options.ssimWindow,
    dataRange: options.dataRange,
    threads: options.threads,
    modelsDir: options.models,
    lpipsNet: options.lpipsNet,
    prompts: options.prompts,
    runtime: options.runtime,
    batchSize: options.batchSize,
    progress: progressFactory(options.progress ?? process.stderr.isTTY === true),
  };
  const { metrics, skipped } = expandMetrics(metricNames, compareOptions);
  compareOptions.metrics = metrics;
  if (skipped.length > 0) process.stderr.write(`ditcache-metrics: all: leaving out ${skipped.join('; ')}\n`);

  const session = new MetricsSession(compareOptions);
  const comparisons: Comparison[] = [];
  try {
    if (options.refDir) {
      if (options.i1 || options.i2) throw new MetricsError('use either -i1/-i2 or --ref-dir, not both');
      const reference = resolve(options.refDir);
      if (!(await isDirectory(reference))) throw new MetricsError(`--ref-dir must be a directory: ${options.refDir}`);
      const parent = resolve(options.sourceDir ?? dirname(reference));
      for (const directory of await siblingDirectories(reference, parent)) {
        comparisons.push(await session.compare(reference, directory));
      }
      writeOutput(comparisons, metrics, options, { reference: options.refDir });
    } else {
      const onlyClip = metrics.every((m) => m === 'clip_score');
      const reference = options.i1 ?? (onlyClip ? options.i2 : undefined);
      const compared = options.i2 ?? (onlyClip ? options.i1 : undefined);
      if (!reference || !compared) throw new MetricsError('give both -i1 PATH and -i2 PATH, or --ref-dir DIR');
      comparisons.push(await session.compare(reference, compared, compared));
      writeOutput(comparisons, metrics, options);
    }
  } finally {
    await session.dispose();
  }
}

function writeOutput(comparisons: Comparison[], metrics: MetricName[], options: CliOptions, manyMode?: { reference: string }): void {
  if (options.json) {
    const json = manyMode
      ? { reference: manyMode.reference, results: Object.fromEntries(comparisons.map((c) => [c.label, comparisonToJson(c)])) }
      : comparisonToJson(comparisons[0]);
    process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
  } else if (options.table) {
    process.stdout.write(`${markdownTable(comparisons, metrics)}\n`);
  } else {
    process.stdout.write(`${textReport(comparisons, metrics)}\n`);
  }
}

/** Runs when executed as a script (also through the npm bin symlink), not when imported. */
function invokedDirectly(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  const code = await main();
  // The WebAssembly runtime's worker threads would keep the process alive; output is written.
  process.exit(code);
}
