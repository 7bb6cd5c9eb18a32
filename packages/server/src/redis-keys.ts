// The names the API process and the workers share on Redis besides BullMQ's own: the model's
// record (so the API validates sizes without loading the model) and a job's cancel mark.
import { createIORedisClient, type RedisClient } from 'bullmq';
import { Redis } from 'ioredis';

export const DEFAULT_QUEUE_NAME = 'ditcache';

/**
 * A connection for one BullMQ object (queue, worker, events) to a redis[s]:// URL: ioredis, the
 * driver BullMQ is built and tested on, through BullMQ's adapter; BullMQ duplicates it for
 * blocking reads. Requests wait through reconnects rather than fail (BullMQ's workers need it).
 * The caller closes it after the object that uses it.
 */
export function redisConnection(url: string): RedisClient {
  if (!/^rediss?:\/\//.test(url)) throw new Error(`--redis ${url}: expected redis://[user:password@]host:port[/db]`);
  return createIORedisClient(new Redis(url, { maxRetriesPerRequest: null })) as unknown as RedisClient;
}

export const modelInfoKey = (queueName: string): string => `ditcache:${queueName}:model`;
export const cancelKey = (queueName: string, jobId: string): string => `ditcache:${queueName}:cancel:${jobId}`;

/** A worker's failure reason for a job it stopped because it was cancelled. */
export const CANCELLED = 'cancelled';
