// /metrics in Prometheus' text format: the queue's own counts (depth, jobs by state, workers)
// and what this process saw of finished jobs (seconds per step, cached fraction of the steps).
import { JOB_STATES, type JobView, type QueueStats } from './job.js';

export class JobMetrics {
  private steps = 0;
  private cachedSteps = 0;
  private seconds = 0;
  private readonly finished: Record<string, number> = {};

  record(view: JobView): void {
    this.finished[view.state] = (this.finished[view.state] ?? 0) + 1;
    if (!view.result) return;
    this.steps += view.result.steps;
    this.cachedSteps += view.result.cachedSteps;
    this.seconds += view.result.seconds;
  }

  text(stats: QueueStats): string {
    const lines: string[] = [];
    const metric = (name: string, type: string, help: string, samples: [labels: string, value: number][]): void => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...samples.map(([labels, v]) => `${name}${labels} ${v}`));
    };
    metric('ditcache_queue_depth', 'gauge', 'Jobs waiting for a worker.', [['', stats.depth]]);
    metric(
      'ditcache_jobs',
      'gauge',
      'Jobs the queue holds, by state (finished ones until their results expire).',
      JOB_STATES.map((s) => [`{state="${s}"}`, stats.byState[s]]),
    );
    metric('ditcache_workers', 'gauge', 'Pipelines taking jobs.', [['', stats.workers]]);
    metric(
      'ditcache_jobs_finished_total',
      'counter',
      'Jobs this process saw end, by final state.',
      ['succeeded', 'failed', 'cancelled'].map((s) => [`{state="${s}"}`, this.finished[s] ?? 0]),
    );
    metric('ditcache_step_seconds', 'summary', 'Generation time per denoising step of succeeded jobs.', [
      ['_sum', this.seconds],
      ['_count', this.steps],
    ]);
    metric('ditcache_cached_steps_total', 'counter', 'Denoising steps the cache skipped in succeeded jobs.', [['', this.cachedSteps]]);
    metric('ditcache_cached_fraction', 'gauge', 'Cached steps over all steps of succeeded jobs.', [['', this.steps ? this.cachedSteps / this.steps : 0]]);
    return `${lines.join('\n')}\n`;
  }
}
