// The evaluator of `ditcache tune`: each round's configs run through bench's resumable runner
// (the uncached cells are made once and found on disk afterwards; a config already run is not
// run again) and are measured by bench's metrics against the uncached images.
import type { CliFamily } from '@ditcache/diffusion/cli';

import { benchProgress } from '../bench/progress.js';
import { evaluateBench, type ConfigResult } from '../bench/report.js';
import { runBench, type BenchPrompts, type BenchSettings } from '../bench/runner.js';
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

/** Runs trials as bench cells and measures each (PSNR, SSIM, wall-clock speedup, cached steps). */
export function benchEvaluator(options: BenchEvaluatorOptions): Evaluate<ConfigResult> {
  return async (trials: readonly Trial[]) => {
    const progress = benchProgress(options.label);
    let records: Awaited<ReturnType<typeof runBench>>;
    try {
      records = await runBench({
        model: options.model,
        family: options.family,
        prompts: options.prompts,
        configs: trials.map((t) => ({ name: t.name, cache: t.config })),
        out: options.out,
        settings: options.settings,
        onProgress: (p) => progress.update(p),
      });
    } finally {
      progress.stop();
    }
    const results = new Map((await evaluateBench(options.out, records)).map((r) => [r.name, r]));
    return trials.map((t) => results.get(t.name)!);
  };
}
