// The queue without Redis: jobs wait in a FIFO in this process and each loaded pipeline (a
// worker thread) takes the next one when it is free. Finished jobs are kept for a while so that
// clients can fetch their results, then forgotten.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';

import {
  isFinal,
  progressFraction,
  type GenerationSpec,
  type JobEvent,
  type JobProgress,
  type JobQueue,
  type JobResult,
  type JobState,
  type JobView,
  type QueueStats,
} from './job.js';
import type { ModelRunner } from './model-runner.js';

interface LocalJob {
  id: string;
  spec: GenerationSpec;
  state: JobState;
  createdAt: number;
  progress?: JobProgress;
  result?: JobResult;
  error?: string;
  controller: AbortController;
  attempts: number;
}

export interface LocalQueueOptions {
  /** How long a finished job's result is kept, in milliseconds. */
  resultTtlMs: number;
}

export class LocalQueue implements JobQueue {
  private readonly jobs = new Map<string, LocalJob>();
  private readonly waiting: LocalJob[] = [];
  private readonly events = new EventEmitter();
  private readonly idle: ModelRunner[];
  private readonly running = new Set<Promise<void>>();
  private readonly expiry = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(
    private readonly runners: readonly ModelRunner[],
    private readonly options: LocalQueueOptions,
  ) {
    this.idle = [...runners];
    this.events.setMaxListeners(0);
  }

  async submit(spec: GenerationSpec): Promise<string> {
    const job: LocalJob = { id: randomUUID(), spec, state: 'queued', createdAt: Date.now(), controller: new AbortController(), attempts: 0 };
    this.jobs.set(job.id, job);
    this.waiting.push(job);
    this.dispatch();
    return job.id;
  }

  /** Gives waiting jobs to idle runners. */
  private dispatch(): void {
    while (!this.closed && this.idle.length && this.waiting.length) {
      const runner = this.idle.shift() as ModelRunner;
      const job = this.waiting.shift() as LocalJob;
      const done = this.execute(runner, job).finally(() => {
        this.running.delete(done);
        this.idle.push(runner);
        this.dispatch();
      });
      this.running.add(done);
    }
  }

  private async execute(runner: ModelRunner, job: LocalJob): Promise<void> {
    job.state = 'running';
    job.attempts = 1;
    try {
      job.result = await runner.run(job.spec, {
        signal: job.controller.signal,
        onProgress: (progress) => {
          job.progress = progress;
          this.events.emit(job.id, { type: 'progress', progress } satisfies JobEvent);
        },
      });
      job.state = 'succeeded';
    } catch (e) {
      job.state = job.controller.signal.aborted ? 'cancelled' : 'failed';
      if (job.state === 'failed') job.error = (e as Error).message.split('\n').join(' ');
    }
    this.finish(job);
  }

  private finish(job: LocalJob): void {
    const view = this.viewOf(job);
    this.events.emit(job.id, { type: 'end', view } satisfies JobEvent);
    this.events.emit('finished', view);
    const timer = setTimeout(() => {
      this.expiry.delete(timer);
      this.jobs.delete(job.id);
    }, this.options.resultTtlMs);
    timer.unref();
    this.expiry.add(timer);
  }

  private viewOf(job: LocalJob): JobView {
    return {
      id: job.id,
      state: job.state,
      created_at: Math.floor(job.createdAt / 1000),
      progress: job.progress,
      fraction: job.state === 'succeeded' ? 1 : progressFraction(job.progress),
      result: job.result,
      error: job.error,
      attempts: job.attempts,
    };
  }

  async view(id: string): Promise<JobView | undefined> {
    const job = this.jobs.get(id);
    return job && this.viewOf(job);
  }

  async watch(id: string, listener: (e: JobEvent) => void): Promise<() => void> {
    this.events.on(id, listener);
    return () => this.events.off(id, listener);
  }

  async cancel(id: string): Promise<JobView | undefined> {
    const job = this.jobs.get(id);
    if (!job) return undefined;
    if (job.state === 'queued') {
      this.waiting.splice(this.waiting.indexOf(job), 1);
      job.state = 'cancelled';
      this.finish(job);
    } else if (!isFinal(job.state)) {
      // The worker thread stops at its next step; execute() then ends the job as cancelled.
      job.controller.abort();
    }
    return this.viewOf(job);
  }

  async stats(): Promise<QueueStats> {
    const byState = { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
    for (const job of this.jobs.values()) byState[job.state]++;
    return { depth: this.waiting.length, byState, workers: this.runners.length };
  }

  onFinished(listener: (view: JobView) => void): void {
    this.events.on('finished', listener);
  }

  /** Cancels what runs and what waits, then closes the pipelines. */
  async close(): Promise<void> {
    this.closed = true;
    for (const job of [...this.waiting]) await this.cancel(job.id);
    for (const job of this.jobs.values()) if (job.state === 'running') job.controller.abort();
    await Promise.all(this.running);
    for (const timer of this.expiry) clearTimeout(timer);
    await Promise.all(this.runners.map((r) => r.close()));
  }
}
