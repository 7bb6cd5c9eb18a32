// `ditcache worker`: loads the model once and takes jobs from the BullMQ queue one at a time,
// reporting each step as job progress. Its lock on a job lapses if it dies, and BullMQ moves
// the job back to the queue for another worker; a job's cancel mark stops it at the next step.
import { UnrecoverableError, Worker, type Job } from 'bullmq';

import type { GenerationSpec, JobResult } from './job.js';
import { ModelRunner, type ModelOptions } from './model-runner.js';
import { CANCELLED, DEFAULT_QUEUE_NAME, cancelKey, modelInfoKey, redisConnection } from './redis-keys.js';

export interface RedisWorkerOptions extends ModelOptions {
  redis: string;
  queueName?: string;
  /** How long a job stays taken without a sign of life from its worker (default 30 s): a dead worker's job is retried after it. */
  lockDurationMs?: number;
  /** Told of each job taken and finished (the CLI prints them). */
  log?: (line: string) => void;
}

export interface RedisWorker {
  readonly runner: ModelRunner;
  close(): Promise<void>;
}

/** A family's complaint about a request fails it for good: another run would fail the same way. */
function finalError(e: unknown): Error {
  const name = (e as Error).name;
  return name === 'UsageError' || name === 'CacheConfigError' ? new UnrecoverableError((e as Error).message.split('\n').join(' ')) : (e as Error);
}

export async function startRedisWorker(o: RedisWorkerOptions): Promise<RedisWorker> {
  const queueName = o.queueName ?? DEFAULT_QUEUE_NAME;
  const lockDuration = o.lockDurationMs ?? 30_000;
  const runner = await ModelRunner.open(o);
  const log = o.log ?? (() => {});
  let worker: Worker<GenerationSpec, JobResult> | undefined;
  const cancelled = async (id: string): Promise<boolean> => (await (await worker!.getBackend().client).get(cancelKey(queueName, id))) !== null;

  const processor = async (job: Job<GenerationSpec, JobResult>): Promise<JobResult> => {
    const id = job.id as string;
    if (await cancelled(id)) throw new UnrecoverableError(CANCELLED);
    log(`started ${id}`);
    const controller = new AbortController();
    let pending: Promise<unknown> = Promise.resolve();
    try {
      const result = await runner.run(job.data, {
        signal: controller.signal,
        onProgress: (p) => {
          // In order, one after the other; each step also looks for the job's cancel mark.
          pending = pending
            .then(() => job.updateProgress(p as unknown as object))
            .then(async () => (await cancelled(id)) && controller.abort())
            .catch(() => {});
        },
      });
      await pending;
      // Said before BullMQ records the completion: a job a worker dies on without this line was
      // not recorded as done by it, so it runs again elsewhere.
      log(`finished ${id}`);
      return result;
    } catch (e) {
      if (controller.signal.aborted) throw new UnrecoverableError(CANCELLED);
      throw finalError(e);
    }
  };

  const connection = redisConnection(o.redis);
  worker = new Worker<GenerationSpec, JobResult>(queueName, processor, {
    connection,
    concurrency: 1,
    lockDuration,
    stalledInterval: lockDuration,
    // A job whose workers died this often fails instead of killing more.
    maxStalledCount: 2,
  });
  worker.on('completed', (job) => log(`completed ${job.id}`));
  worker.on('failed', (job, e) => log(`failed ${job?.id}: ${e.message}`));
  await worker.waitUntilReady();
  await (await worker.getBackend().client).set(modelInfoKey(queueName), JSON.stringify(runner.info));
  return {
    runner,
    async close() {
      await worker.close();
      connection.disconnect();
      await runner.close();
    },
  };
}
