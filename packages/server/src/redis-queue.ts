// The queue on Redis, API side: jobs go to a BullMQ queue that `ditcache worker` processes take;
// their steps come back as BullMQ progress events, their results stay in Redis until they
// expire. A worker that dies mid-job loses its lock, and BullMQ gives the job to another.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';

import { Queue, QueueEvents, type Job, type RedisClient } from 'bullmq';

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
import type { ModelInfo } from './model-info.js';
import { CANCELLED, DEFAULT_QUEUE_NAME, cancelKey, modelInfoKey, redisConnection } from './redis-keys.js';

export interface RedisQueueOptions {
  queueName?: string;
  /** How long finished jobs stay in Redis, in milliseconds. */
  resultTtlMs: number;
  /** Runs of a job before it fails for good (a dead worker's run counts as one stall, below). */
  attempts?: number;
}

/** BullMQ's states as a job's. */
function stateOf(bull: string, failedReason: string | undefined): JobState {
  if (bull === 'active') return 'running';
  if (bull === 'completed') return 'succeeded';
  if (bull === 'failed') return failedReason === CANCELLED ? 'cancelled' : 'failed';
  return 'queued';
}

export class RedisQueue implements JobQueue {
  private readonly events = new EventEmitter();
  private cachedInfo: { info: ModelInfo | undefined; at: number } | undefined;

  private constructor(
    private readonly queue: Queue<GenerationSpec, JobResult>,
    private readonly queueEvents: QueueEvents,
    private readonly connections: readonly RedisClient[],
    private readonly options: RedisQueueOptions & { queueName: string },
  ) {
    this.events.setMaxListeners(0);
    queueEvents.on('progress', ({ jobId, data }) => this.events.emit(jobId, { type: 'progress', progress: data as unknown as JobProgress } satisfies JobEvent));
    queueEvents.on('completed', ({ jobId }) => void this.announceEnd(jobId));
    queueEvents.on('failed', ({ jobId }) => void this.announceEnd(jobId));
  }

  static async connect(url: string, options: RedisQueueOptions): Promise<RedisQueue> {
    const queueName = options.queueName ?? DEFAULT_QUEUE_NAME;
    const connections = [redisConnection(url), redisConnection(url)];
    const queue = new Queue<GenerationSpec, JobResult>(queueName, { connection: connections[0] });
    const queueEvents = new QueueEvents(queueName, { connection: connections[1] });
    await Promise.all([queue.waitUntilReady(), queueEvents.waitUntilReady()]);
    return new RedisQueue(queue, queueEvents, connections, { ...options, queueName });
  }

  private async client() {
    return this.queue.getBackend().client;
  }

  /** Tells this process's watchers that a job ended (BullMQ reports failures that will be retried too: those are skipped). */
  private async announceEnd(id: string): Promise<void> {
    const view = await this.view(id);
    if (!view || !isFinal(view.state)) return;
    this.events.emit(id, { type: 'end', view } satisfies JobEvent);
    this.events.emit('finished', view);
  }

  async submit(spec: GenerationSpec): Promise<string> {
    const id = randomUUID();
    const age = Math.ceil(this.options.resultTtlMs / 1000);
    await this.queue.add('generate', spec, {
      jobId: id,
      attempts: this.options.attempts ?? 3,
      backoff: { type: 'fixed', delay: 1000 },
      removeOnComplete: { age },
      removeOnFail: { age },
    });
    return id;
  }

  private viewOf(job: Job<GenerationSpec, JobResult>, bullState: string, cancelled: boolean): JobView {
    const state = cancelled && !isFinal(stateOf(bullState, job.failedReason)) ? 'cancelled' : stateOf(bullState, job.failedReason);
    const progress = typeof job.progress === 'object' && job.progress !== null ? (job.progress as unknown as JobProgress) : undefined;
    return {
      id: job.id as string,
      state,
      created_at: Math.floor(job.timestamp / 1000),
      progress,
      fraction: state === 'succeeded' ? 1 : progressFraction(progress),
      result: state === 'succeeded' ? job.returnvalue : undefined,
      error: state === 'failed' ? job.failedReason : undefined,
      attempts: job.attemptsStarted,
    };
  }

  async view(id: string): Promise<JobView | undefined> {
    const client = await this.client();
    // The state before the job's fields: a job that ends in between shows its result with a state that says it runs, never the reverse.
    const state = await this.queue.getJobState(id);
    const [job, mark] = await Promise.all([this.queue.getJob(id), client.get(cancelKey(this.options.queueName, id))]);
    if (!job || state === 'unknown') {
      // A queued job cancelled here was removed; its mark says what became of it.
      return mark === null ? undefined : { id, state: 'cancelled', created_at: Number(mark), fraction: 0 };
    }
    return this.viewOf(job as Job<GenerationSpec, JobResult>, state, mark !== null);
  }

  async watch(id: string, listener: (e: JobEvent) => void): Promise<() => void> {
    this.events.on(id, listener);
    return () => this.events.off(id, listener);
  }

  /**
   * Marks the job cancelled (the mark outlives it as long as its result would), then removes it
   * if it still waits; a worker running it sees the mark at its next step and stops.
   */
  async cancel(id: string): Promise<JobView | undefined> {
    const job = await this.queue.getJob(id);
    if (!job) return this.view(id);
    const client = await this.client();
    await client.set(cancelKey(this.options.queueName, id), String(Math.floor(job.timestamp / 1000)), { PX: this.options.resultTtlMs });
    const state = await job.getState();
    if (!isFinal(stateOf(state, job.failedReason)) && state !== 'active') {
      try {
        await job.remove();
        const view = await this.view(id);
        if (view) {
          this.events.emit(id, { type: 'end', view } satisfies JobEvent);
          this.events.emit('finished', view);
        }
        return view;
      } catch {
        // A worker took it meanwhile: it stops at its first step.
      }
    }
    return this.view(id);
  }

  async stats(): Promise<QueueStats> {
    const c = await this.queue.getJobCounts('waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed');
    const depth = (c.waiting ?? 0) + (c.prioritized ?? 0) + (c.delayed ?? 0);
    return {
      depth,
      // Cancelled jobs that had started end among BullMQ's failed ones; those removed while queued are not held.
      byState: { queued: depth, running: c.active ?? 0, succeeded: c.completed ?? 0, failed: c.failed ?? 0, cancelled: 0 },
      workers: await this.queue.getWorkersCount(),
    };
  }

  onFinished(listener: (view: JobView) => void): void {
    this.events.on('finished', listener);
  }

  /** The record the workers publish; refreshed every few seconds. */
  async modelInfo(): Promise<ModelInfo | undefined> {
    if (this.cachedInfo && Date.now() - this.cachedInfo.at < 5000) return this.cachedInfo.info;
    const text = await (await this.client()).get(modelInfoKey(this.options.queueName));
    this.cachedInfo = { info: text === null ? undefined : (JSON.parse(text) as ModelInfo), at: Date.now() };
    return this.cachedInfo.info;
  }

  async close(): Promise<void> {
    await this.queueEvents.close();
    await this.queue.close();
    for (const c of this.connections) c.disconnect();
  }
}
