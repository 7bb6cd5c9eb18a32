import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { MetricsError } from './errors.js';
import type { ImagePair } from './pairs.js';
import { runPixelTask, type PixelMetricName, type PixelMetricOptions, type PixelMetricValues, type PixelTask } from './pixel-evaluation.js';
import type { PixelWorkerReply, PixelWorkerRequest } from './pixel-worker.js';
import { summarize, type MetricSummary } from './summary.js';

export interface PixelEvaluationOptions extends PixelMetricOptions {
  metrics: readonly PixelMetricName[];
  /**
   * Worker threads to spread the pairs over (default: the number of cores). 1 computes in
   * this thread. Running from TypeScript sources (tests) always computes in this thread.
   */
  threads?: number;
  /** Called after each pair with the number done and the total. */
  onProgress?: (done: number, total: number) => void;
}

export type PixelEvaluation = Partial<Record<PixelMetricName, MetricSummary>>;

/** The compiled worker next to this module; absent when running from the .ts sources. */
function workerScript(): string | null {
  const path = fileURLToPath(new URL('./pixel-worker.js', import.meta.url));
  return existsSync(path) ? path : null;
}

/**
 * Decodes and compares every pair, in parallel over worker threads, and summarises each
 * metric over the pairs (mean, count, per-image values in pair order).
 */
export async function evaluatePixelMetrics(pairs: readonly ImagePair[], options: PixelEvaluationOptions): Promise<PixelEvaluation> {
  if (pairs.length === 0) throw new MetricsError('no image pairs to compare');
  const task = (pair: ImagePair): PixelTask => ({
    path1: pair.path1,
    path2: pair.path2,
    metrics: options.metrics,
    options: { dataRange: options.dataRange, ssim: options.ssim },
  });
  const threads = Math.max(1, Math.min(options.threads ?? availableParallelism(), pairs.length));
  const script = workerScript();
  const results =
    threads > 1 && script
      ? await runOnWorkers(script, pairs.map(task), threads, options.onProgress)
      : await runInThisThread(pairs.map(task), options.onProgress);
  const evaluation: PixelEvaluation = {};
  for (const metric of options.metrics) {
    const perImage: Record<string, number> = {};
    pairs.forEach((pair, i) => {
      perImage[pair.name] = results[i][metric] as number;
    });
    evaluation[metric] = summarize(perImage);
  }
  return evaluation;
}

async function runInThisThread(tasks: PixelTask[], onProgress?: (done: number, total: number) => void): Promise<PixelMetricValues[]> {
  const results: PixelMetricValues[] = [];
  // Decoding the next pair (sharp works off the main thread) overlaps with comparing this one.
  let next = tasks.length > 0 ? runPixelTask(tasks[0]) : null;
  for (let i = 0; i < tasks.length; i++) {
    const current = next as Promise<PixelMetricValues>;
    next = i + 1 < tasks.length ? runPixelTask(tasks[i + 1]) : null;
    // Keep a rejected look-ahead from being reported as unhandled while we await `current`.
    next?.catch(() => undefined);
    results.push(await current);
    onProgress?.(i + 1, tasks.length);
  }
  return results;
}

/**
 * Runs the tasks on `threads` workers, two in flight per worker so that a worker decodes its
 * next pair while it computes the current one. The first error stops everything and is
 * rethrown with its original message.
 */
async function runOnWorkers(
  script: string,
  tasks: PixelTask[],
  threads: number,
  onProgress?: (done: number, total: number) => void,
): Promise<PixelMetricValues[]> {
  const results: PixelMetricValues[] = new Array(tasks.length);
  const workers = Array.from({ length: threads }, () => new Worker(script));
  let nextTask = 0;
  let done = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      const feed = (worker: Worker): void => {
        if (nextTask < tasks.length) {
          const id = nextTask++;
          worker.postMessage({ id, task: tasks[id] } satisfies PixelWorkerRequest);
        }
      };
      for (const worker of workers) {
        worker.on('message', (reply: PixelWorkerReply) => {
          if ('error' in reply) {
            reject(reply.metricsError ? new MetricsError(reply.error) : new Error(reply.error));
            return;
          }
          results[reply.id] = reply.values;
          done++;
          onProgress?.(done, tasks.length);
          if (done === tasks.length) resolve();
          else feed(worker);
        });
        worker.on('error', reject);
        worker.on('exit', (code) => {
          if (done < tasks.length) reject(new Error(`metrics worker exited early with code ${code}`));
        });
        feed(worker);
        feed(worker);
      }
    });
  } finally {
    await Promise.all(workers.map((worker) => worker.terminate()));
  }
  return results;
}
