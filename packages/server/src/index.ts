// @ditcache/server: ditcache as an HTTP service (OpenAI-compatible images, async jobs with
// progress events, a web page), on an in-process queue or on Redis with workers anywhere.
export { createServer, type DitcacheServer, type ServerOptions } from './server.js';
export { startRedisWorker, type RedisWorker, type RedisWorkerOptions } from './redis-worker.js';
export { ModelRunner, type ModelOptions, type RunOptions } from './model-runner.js';
export { DEFAULT_LIMITS, parseGenerationRequest, type RequestLimits } from './request-schema.js';
export type { GeneratedImage, GenerationSpec, JobEvent, JobProgress, JobQueue, JobResult, JobState, JobView, QueueStats } from './job.js';
export { runServe, runWorker } from './commands.js';
