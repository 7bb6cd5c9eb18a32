// The load benchmark of the Redis deployment (not a test: it measures): a Redis of its own, N
// `ditcache worker` processes and one `ditcache serve --redis`, as users run them; J jobs
// submitted at once, each followed to its end through its event stream. It checks that none is
// lost or run twice, and prints the throughput and the latency percentiles for the README.
// npm run bench -w @ditcache/server -- [--jobs 200] [--workers 2] [--size 32] [--steps 28] [--cache none]
import { spawn, type ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

// Run from .cache/bench-build/bench/: the repository is five levels up.
const ROOT = fileURLToPath(new URL('../../../../../', import.meta.url));
const CLI = `${ROOT}packages/cli/dist/cli.js`;
const MODEL = `${ROOT}models/flux-shapes`;

const { values } = parseArgs({
  options: {
    jobs: { type: 'string', default: '200' },
    workers: { type: 'string', default: '2' },
    size: { type: 'string', default: '32' },
    steps: { type: 'string', default: '28' },
    cache: { type: 'string', default: 'none' },
  },
});
const JOBS = Number(values.jobs);
const WORKERS = Number(values.workers);

interface Started {
  child: ChildProcess;
  output: () => string;
  waitFor: (pattern: RegExp) => Promise<RegExpMatchArray>;
}

const started: ChildProcess[] = [];

function start(command: string, args: string[]): Started {
  const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  started.push(child);
  let text = '';
  const append = (b: Buffer) => {
    text += b.toString();
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  const waitFor = (pattern: RegExp) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const poll = setInterval(() => {
        const m = pattern.exec(text);
        if (m) resolve(m);
        else if (child.exitCode !== null) reject(new Error(`${command} ${args.join(' ')} exited:\n${text}`));
        else return;
        clearInterval(poll);
      }, 50);
    });
  return { child, output: () => text, waitFor };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Stops the services before the Redis they use, each with SIGTERM. */
async function stopAll(): Promise<void> {
  for (const child of started.reverse()) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    await new Promise((resolve) => {
      child.once('exit', resolve);
      child.kill('SIGTERM');
    });
  }
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];

async function main(): Promise<void> {
  const redisPort = await freePort();
  const redis = start('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  await redis.waitFor(/Ready to accept connections/);
  const url = `redis://127.0.0.1:${redisPort}`;
  const workers = Array.from({ length: WORKERS }, () => start(process.execPath, [CLI, 'worker', '--model', MODEL, '--redis', url]));
  const api = start(process.execPath, [CLI, 'serve', '--redis', url, '--port', '0', '--rate-limit', String(JOBS * 2)]);
  const [, base] = await api.waitFor(/listening on (http:\/\/\S+?)\/ /);
  await Promise.all(workers.map((w) => w.waitFor(/taking jobs from/)));

  const size = `${values.size}x${values.size}`;
  const t0 = performance.now();
  const latencies = await Promise.all(
    Array.from({ length: JOBS }, async (_, i) => {
      const submitted = performance.now();
      const body = { prompt: `shape ${i % 8}: a red circle on a blue background`, seed: i, steps: Number(values.steps), size, cache: values.cache };
      const res = await fetch(`${base}/v1/jobs`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      if (res.status !== 202) throw new Error(`job ${i}: ${res.status} ${await res.text()}`);
      const { id } = (await res.json()) as { id: string };
      const events = await (await fetch(`${base}/v1/jobs/${id}/events`)).text();
      const ended = performance.now();
      const job = (await (await fetch(`${base}/v1/jobs/${id}`)).json()) as { state: string; result?: { images: unknown[] } };
      if (!/^event: succeeded$/m.test(events) || job.state !== 'succeeded' || job.result?.images.length !== 1)
        throw new Error(`job ${i} (${id}) was lost: ${job.state}`);
      return { id, seconds: (ended - submitted) / 1000 };
    }),
  );
  const wall = (performance.now() - t0) / 1000;

  const completions = workers.flatMap((w) => [...w.output().matchAll(/completed (\S+)/g)].map((m) => m[1]));
  const twice = completions.length - new Set(completions).size;
  const missing = latencies.filter((l) => !completions.includes(l.id)).length;
  const sorted = latencies.map((l) => l.seconds).sort((a, b) => a - b);
  const perWorker = workers.map((w) => [...w.output().matchAll(/completed /g)].length);
  const machine = `${cpus().length}x ${cpus()[0]?.model.trim()}`;
  console.log(`${JOBS} jobs (${size}, ${values.steps} steps, cache ${values.cache}), ${WORKERS} workers, on ${machine}`);
  console.log(`succeeded ${latencies.length}, lost 0, completed twice ${twice}, missing completions ${missing}, per worker ${perWorker.join(' / ')}`);
  console.log(
    `| ${JOBS} | ${WORKERS} | ${size} | ${values.steps} | ${values.cache} | ${wall.toFixed(1)} | ${(JOBS / wall).toFixed(2)} | ${percentile(sorted, 50).toFixed(2)} | ${percentile(sorted, 95).toFixed(2)} | ${sorted.at(-1)?.toFixed(2)} |`,
  );
  if (twice || missing) process.exitCode = 1;
}

try {
  await main();
} finally {
  await stopAll();
}
