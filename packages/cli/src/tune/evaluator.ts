// The evaluator of `ditcache tune`: each round's configs run through bench's resumable runner
// (the uncached cells are made once and found on disk afterwards; a config already run is not
// run again) and are measured by bench's metrics against the uncached images. The policies'
// preparation runs go through the same runner, keeping their cache summaries.
import type { CliFamily } from '@ditcache/diffusion/cli';

import { benchProgress } from '../bench/progress.js';
import { evaluateBench, type ConfigResult } from '../bench/report.js';
import type { BenchConfig } from '../bench/configs.js';
import { runBench, type BenchPrompts, type BenchSettings, type CellRecord } from '../bench/runner.js';
import type { Prepare } from './prepare.js';
import type { Evaluate, Trial } from './search.js';

export interface BenchEvaluatorOptions {
  readonly model: string;
  /** The family that runs the model (default: the installed plugin that runs its folder). */
  readonly family?: CliFamily;
  readonly prompts: BenchPrompts;
  /** The folder of cells, shared by every round. */
  readonly out: string;
  readonly settings: BenchSettings;
  /** The progress bar's label. */
  readonly label: string;
}

/** Runs the bench cells of `configs` with progress on stderr; their records. */
async function runCells(options: BenchEvaluatorOptions, configs: readonly BenchConfig[]): Promise<Map<string, CellRecord[]>> {
  const progress = benchProgress(options.label);
  try {
    return await runBench({
      model: options.model,
      family: options.family,
      prompts: options.prompts,
      configs,
      out: options.out,
      settings: options.settings,
      onProgress: (p) => progress.update(p),
    });
  } finally {
    progress.stop();
  }
}

/** Runs trials as bench cells and measures each (PSNR, SSIM, wall-clock speedup, cached steps). */
export function benchEvaluator(options: BenchEvaluatorOptions): Evaluate<ConfigResult> {
  return async (trials: readonly Trial[]) => {
    const records = await runCells(
      options,
      trials.map((t) => ({ name: t.name, cache: t.config })),
    );
    const results = new Map((await evaluateBench(options.out, records)).map((r) => [r.name, r]));
    return trials.map((t) => results.get(t.name)!);
  };
}

/** Runs a policy's preparation config as a bench cell per prompt (`<policy>_preparation`), its summaries kept. */
export function benchPreparer(options: BenchEvaluatorOptions): Prepare {
  return async (policy, config) => {
    const name = `${policy}_preparation`;
    const records = await runCells(options, [{ name, cache: config, keepSummary: true }]);
    return records.get(name)!.map((r) => r.summary!);
  };
}
