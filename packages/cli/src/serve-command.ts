// `ditcache serve` and `ditcache worker`: the HTTP service and its Redis workers live in
// @ditcache/server, which depends on this package; the commands are declared here and import it
// when they run, so the CLI works without it and no dependency cycle forms.
import { Option, type Command } from 'commander';

import { adapterOption } from './adapters-command.js';
import { UsageError } from './errors.js';
import { dtypeOption, weightDtypeOption } from './load-options.js';
import { nonNegativeInt, positiveInt } from './parsers.js';

/** What the server package gives the two commands (its flags as parsed here). */
interface ServerCommands {
  runServe(flags: Record<string, unknown>): Promise<void>;
  runWorker(flags: Record<string, unknown>): Promise<void>;
}

/** @ditcache/server, or a usage error saying how to install it. */
async function serverPackage(): Promise<ServerCommands> {
  // A name in a variable: TypeScript must not resolve it when the CLI builds (the server builds after it).
  const name = '@ditcache/server';
  try {
    return (await import(name)) as ServerCommands;
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' && String((e as Error).message).includes(name)) {
      throw new UsageError(`ditcache serve and ditcache worker need ${name}: npm install ${name}`);
    }
    throw e;
  }
}

/** The flags that say which model a process loads and how. */
function modelOptions(command: Command, modelHelp: string): Command {
  return command
    .option('--model <dir>', modelHelp)
    .addOption(adapterOption())
    .option('--cache <spec>', 'the default cache of requests that name none: a preset (quality, balanced, fast, cache-dit), a JSON / YAML file, or JSON text')
    .addOption(dtypeOption())
    .addOption(weightDtypeOption());
}

export function registerServe(program: Command): void {
  modelOptions(
    program.command('serve').description('an HTTP service: OpenAI-compatible image generation, async jobs with progress events, a web page'),
    'a diffusers-format model folder (without --redis: required; with it, workers load the model)',
  )
    .option('--port <n>', 'TCP port (0: any free one)', nonNegativeInt('--port'), 8080)
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .addOption(
      new Option('--api-key <key>', 'require this key (Authorization: Bearer KEY) on every route but /healthz; repeatable')
        .env('DITCACHE_API_KEY')
        .argParser(collect)
        .default([]),
    )
    .option('--redis <url>', 'queue jobs on Redis (BullMQ) for `ditcache worker` processes instead of running them here')
    .option('--workers <n>', 'without --redis: pipelines running jobs in parallel, each in its own worker thread', positiveInt('--workers'), 1)
    .option('--rate-limit <n>', 'jobs a key (or an address, without --api-key) may submit per minute', positiveInt('--rate-limit'), 60)
    .action(async (flags: Record<string, unknown>) => (await serverPackage()).runServe(flags));

  modelOptions(
    program.command('worker').description('takes the jobs of `ditcache serve --redis URL` from Redis and runs them'),
    'a diffusers-format model folder',
  )
    .requiredOption('--redis <url>', 'the Redis the service queues jobs on')
    .option(
      '--lock-duration <ms>',
      "how long a job stays taken without a sign of life: a dead worker's job is retried after it",
      positiveInt('--lock-duration'),
      30_000,
    )
    .action(async (flags: Record<string, unknown>) => (await serverPackage()).runWorker(flags));
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
