// The names the API process and the workers share on Redis besides BullMQ's own: the model's
// record (so the API validates sizes without loading the model) and a job's cancel mark.
import { createBunRedisClient, type RedisClient } from 'bullmq';

import { RespConnection } from './resp-connection.js';

export const DEFAULT_QUEUE_NAME = 'ditcache';

/**
 * A connection for one BullMQ object (queue, worker, events) to a redis[s]:// URL, through
 * BullMQ's adapter over our RESP connection; BullMQ duplicates it for blocking reads. The caller
 * closes it (quit) after the object that uses it.
 */
export function redisConnection(url: string): RedisClient {
  if (!/^rediss?:\/\//.test(url)) throw new Error(`--redis ${url}: expected redis://[user:password@]host:port[/db]`);
  return createBunRedisClient(new RespConnection(url) as never) as RedisClient;
}

export const modelInfoKey = (queueName: string): string => `ditcache:${queueName}:model`;
export const cancelKey = (queueName: string, jobId: string): string => `ditcache:${queueName}:cancel:${jobId}`;

/** A worker's failure reason for a job it stopped because it was cancelled. */
export const CANCELLED = 'cancelled';
