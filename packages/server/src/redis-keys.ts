// The names the API process and the workers share on Redis besides BullMQ's own: the model's
// record (so the API validates sizes without loading the model) and a job's cancel mark.
import type { ConnectionOptions } from 'bullmq';

export const DEFAULT_QUEUE_NAME = 'ditcache';

/** BullMQ's connection for a redis:// URL; `maxRetriesPerRequest: null`, as its workers need. */
export function redisConnection(url: string): ConnectionOptions {
  if (!/^rediss?:\/\//.test(url)) throw new Error(`--redis ${url}: expected redis://[user:password@]host:port[/db]`);
  return { url, maxRetriesPerRequest: null };
}

export const modelInfoKey = (queueName: string): string => `ditcache:${queueName}:model`;
export const cancelKey = (queueName: string, jobId: string): string => `ditcache:${queueName}:cancel:${jobId}`;

/** A worker's failure reason for a job it stopped because it was cancelled. */
export const CANCELLED = 'cancelled';
