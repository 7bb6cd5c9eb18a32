// The actions of `ditcache serve` and `ditcache worker` (declared in @ditcache/cli, which
// imports this package when one of them runs): start, say where, stop cleanly on a signal.
import type { ComputeDtype } from '@ditcache/diffusion';

import { startRedisWorker } from './redis-worker.js';
import { createServer } from './server.js';

/** The flags the CLI parsed (see packages/cli/src/serve-command.ts). */
interface CommandFlags {
  model?: string;
  adapter: string[];
  cache?: string;
  dtype: ComputeDtype;
  weightDtype: 'float32' | 'stored';
  port: number;
  host: string;
  apiKey: string[];
  redis?: string;
  workers: number;
  rateLimit: number;
  lockDuration: number;
}

/** Resolves on the first SIGINT or SIGTERM. */
function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

export async function runServe(flags: CommandFlags): Promise<void> {
  if (!flags.model && !flags.redis)
    throw Object.assign(new Error('--model is required without --redis (with it, `ditcache worker` loads the model)'), { name: 'UsageError' });
  const service = await createServer({
    model: flags.redis ? undefined : flags.model,
    adapter: flags.adapter,
    cache: flags.cache,
    dtype: flags.dtype,
    weightDtype: flags.weightDtype,
    redis: flags.redis,
    workers: flags.workers,
    apiKeys: flags.apiKey,
    rateLimitPerMinute: flags.rateLimit,
  });
  const address = await service.listen(flags.port, flags.host);
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  process.stderr.write(
    `ditcache serve: listening on http://${host}:${address.port}/ (${flags.redis ? `jobs on ${flags.redis}` : `${flags.workers} worker(s)`})\n`,
  );
  await untilSignal();
  await service.close();
}

export async function runWorker(flags: CommandFlags): Promise<void> {
  if (!flags.model) throw Object.assign(new Error('--model is required: the folder this worker runs'), { name: 'UsageError' });
  const worker = await startRedisWorker({
    model: flags.model,
    adapter: flags.adapter,
    cache: flags.cache,
    dtype: flags.dtype,
    weightDtype: flags.weightDtype,
    redis: flags.redis as string,
    lockDurationMs: flags.lockDuration,
    log: (line) => process.stdout.write(`ditcache worker: ${line}\n`),
  });
  process.stderr.write(`ditcache worker: ${worker.runner.info.family} from ${flags.model}, taking jobs from ${flags.redis}\n`);
  await untilSignal();
  await worker.close();
}
