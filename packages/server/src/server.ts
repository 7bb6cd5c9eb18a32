// createServer: the service as a node:http server (or its request handler, to mount in an app's
// own server), on an in-process queue with the model loaded here, or on Redis with the model
// loaded by `ditcache worker` processes.
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import { CACHE_PRESETS } from '@ditcache/core';

import { ApiKeys, RateLimiter } from './access.js';
import { readJsonBody } from './body.js';
import { HttpError, errorType } from './http-error.js';
import { isFinal, type GenerationSpec, type JobQueue, type JobView } from './job.js';
import { LocalQueue } from './local-queue.js';
import { JobMetrics } from './metrics.js';
import { DEFAULT_SIZE_MULTIPLE, type ModelInfo } from './model-info.js';
import { ModelRunner, type ModelOptions } from './model-runner.js';
import { RedisQueue } from './redis-queue.js';
import { DEFAULT_LIMITS, parseGenerationRequest, type RequestLimits } from './request-schema.js';
import { streamJobEvents } from './sse.js';

export interface ServerOptions extends Partial<ModelOptions> {
  /** Queue jobs on this Redis (redis://[user:password@]host:port[/db]) for `ditcache worker`s; no model loads here. */
  redis?: string;
  /** Without Redis: pipelines (worker threads) running jobs in parallel (default 1). */
  workers?: number;
  /** Keys required on every route but /healthz (none: open). */
  apiKeys?: readonly string[];
  /** Jobs a key (or an address, without keys) may submit per minute (default 60). */
  rateLimitPerMinute?: number;
  /** The largest request body (default 64 KiB). */
  maxBodyBytes?: number;
  limits?: Partial<RequestLimits>;
  /** How long finished jobs and their results are kept (default 3600 s). */
  resultTtlSeconds?: number;
  /** The BullMQ queue's name, when several services share one Redis (default 'ditcache'). */
  queueName?: string;
}

export interface DitcacheServer {
  /** Not yet listening: call listen(), or mount `handle` in another server instead. */
  readonly server: Server;
  /** The request handler, for an app's own node:http server (or a framework's raw handler). */
  readonly handle: (req: IncomingMessage, res: ServerResponse) => void;
  readonly queue: JobQueue;
  listen(port?: number, host?: string): Promise<AddressInfo>;
  /** Stops listening, cancels running jobs (in-process) and closes the pipelines or Redis connections. */
  close(): Promise<void>;
}

const WEB_PAGE = new URL('../web/index.html', import.meta.url);
const JOB_PATH = /^\/v1\/jobs\/([A-Za-z0-9-]{1,64})(\/events)?$/;

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(text);
}

function sendError(res: ServerResponse, e: unknown): void {
  const known = e instanceof HttpError;
  const status = known ? e.status : 500;
  if (!known) process.stderr.write(`ditcache serve: ${(e as Error).stack ?? e}\n`);
  if (res.headersSent) {
    res.end();
    return;
  }
  const message = known ? e.message : 'internal error';
  sendJson(res, status, { error: { message, type: errorType(status), param: known ? (e.param ?? null) : null } }, known ? e.headers : {});
}

/** A family's complaint about a request (a UsageError, a cache config error) is the client's fault: 400. */
function asClientError(e: unknown): unknown {
  const name = (e as Error).name;
  return name === 'UsageError' || name === 'CacheConfigError' ? new HttpError(400, (e as Error).message.split('\n').join(' ')) : e;
}

/** The answer of POST /v1/images/generations, in the OpenAI Images API's shape. */
function imagesResponse(view: JobView): unknown {
  const result = view.result!;
  return {
    created: view.created_at,
    data: result.images.map((i) => ({ b64_json: i.b64_json, content_type: i.content_type, seed: i.seed })),
    ditcache: { job: view.id, steps: result.steps, cached_steps: result.cachedSteps, seconds: result.seconds },
  };
}

/** Waits for a job's end; the client leaving first cancels it. */
async function settled(queue: JobQueue, id: string, res: ServerResponse): Promise<JobView> {
  const onGone = (): void => {
    if (!res.writableFinished) void queue.cancel(id);
  };
  res.once('close', onGone);
  let stop = (): void => {};
  try {
    return await new Promise<JobView>((resolve, reject) => {
      queue
        .watch(id, (e) => e.type === 'end' && resolve(e.view))
        .then(async (unwatch) => {
          stop = unwatch;
          // It may have ended before the watch began.
          const now = await queue.view(id);
          if (now && isFinal(now.state)) resolve(now);
        })
        .catch(reject);
    });
  } finally {
    stop();
    res.off('close', onGone);
  }
}

/** Loads the model here (without Redis) or connects to Redis, and builds the service. */
export async function createServer(options: ServerOptions): Promise<DitcacheServer> {
  let queue: JobQueue;
  let runners: ModelRunner[] = [];
  let modelInfo: () => Promise<ModelInfo | undefined>;
  const resultTtlMs = (options.resultTtlSeconds ?? 3600) * 1000;
  if (options.redis) {
    const redis = await RedisQueue.connect(options.redis, { queueName: options.queueName, resultTtlMs });
    queue = redis;
    modelInfo = () => redis.modelInfo();
  } else {
    if (!options.model) throw new HttpError(500, 'createServer: give a model folder, or a Redis URL for workers that load it');
    const model = { ...options, model: options.model };
    runners = await Promise.all(Array.from({ length: options.workers ?? 1 }, () => ModelRunner.open(model)));
    queue = new LocalQueue(runners, { resultTtlMs });
    modelInfo = async () => runners[0].info;
  }
  const keys = new ApiKeys(options.apiKeys ?? []);
  const limiter = new RateLimiter(options.rateLimitPerMinute ?? 60);
  const metrics = new JobMetrics();
  queue.onFinished((view) => metrics.record(view));
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const maxBodyBytes = options.maxBodyBytes ?? 64 * 1024;
  const webPage = readFileSync(WEB_PAGE);

  /** A request's body as a job spec, checked against the model where it is loaded here. */
  async function jobSpec(req: IncomingMessage, client: string): Promise<GenerationSpec> {
    limiter.take(client);
    const body = await readJsonBody(req, maxBodyBytes);
    // Before any worker has said what its model is (Redis), frames are left to the worker's check.
    const info = await modelInfo();
    const spec = parseGenerationRequest(body, { sizeMultiple: info?.sizeMultiple ?? DEFAULT_SIZE_MULTIPLE, takesFrames: info?.takesFrames ?? true }, limits);
    try {
      runners[0]?.check(spec);
    } catch (e) {
      throw asClientError(e);
    }
    return spec;
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    const path = url.pathname;
    if (path === '/healthz' && method === 'GET') return sendJson(res, 200, { ok: true });
    const key = keys.check(req);
    const client = key ?? req.socket.remoteAddress ?? 'unknown';
    const allow = (methods: string[]): void => {
      if (!methods.includes(method)) throw new HttpError(405, `${path} takes ${methods.join(', ')}`, undefined, { Allow: methods.join(', ') });
    };
    if (path === '/') {
      allow(['GET']);
      res.writeHead(200, {
        'Content-Type': 'text/html; charset=utf-8',
        'Content-Security-Policy': "default-src 'self'; img-src 'self' data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
        'X-Content-Type-Options': 'nosniff',
      });
      return void res.end(webPage);
    }
    if (path === '/metrics') {
      allow(['GET']);
      res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' });
      return void res.end(metrics.text(await queue.stats()));
    }
    if (path === '/v1/models') {
      allow(['GET']);
      const info = await modelInfo();
      return sendJson(res, 200, {
        object: 'list',
        data: info ? [{ id: info.family, object: 'model', owned_by: 'ditcache', size_multiple: info.sizeMultiple }] : [],
      });
    }
    if (path === '/v1/presets') {
      allow(['GET']);
      return sendJson(res, 200, { presets: CACHE_PRESETS });
    }
    if (path === '/v1/images/generations') {
      allow(['POST']);
      const id = await queue.submit(await jobSpec(req, client));
      const view = await settled(queue, id, res);
      if (view.state === 'succeeded') return sendJson(res, 200, imagesResponse(view));
      throw new HttpError(view.state === 'cancelled' ? 409 : 500, `the job ${view.state}${view.error ? `: ${view.error}` : ''}`);
    }
    if (path === '/v1/jobs') {
      allow(['POST']);
      const id = await queue.submit(await jobSpec(req, client));
      return sendJson(res, 202, await queue.view(id), { Location: `/v1/jobs/${id}` });
    }
    const job = JOB_PATH.exec(path);
    if (job) {
      const [, id, events] = job;
      allow(events ? ['GET'] : ['GET', 'DELETE']);
      if (events && (await streamJobEvents(queue, id, res))) return;
      const view = method === 'DELETE' ? await queue.cancel(id) : await queue.view(id);
      if (!view) throw new HttpError(404, `no job ${id} (finished jobs are kept ${resultTtlMs / 1000} s)`);
      return sendJson(res, method === 'DELETE' ? 202 : 200, view);
    }
    throw new HttpError(
      404,
      `no route ${path}; routes: /, /healthz, /metrics, /v1/models, /v1/presets, /v1/images/generations, /v1/jobs, /v1/jobs/:id, /v1/jobs/:id/events`,
    );
  }

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    route(req, res).catch((e: unknown) => {
      // A refused upload: close the connection once the answer is out, so the rest of the body costs nothing.
      if (!req.complete) {
        res.setHeader('Connection', 'close');
        res.once('finish', () => req.destroy());
      }
      sendError(res, e);
    });
  };
  const server = createHttpServer(handle);
  return {
    server,
    handle,
    queue,
    listen: (port = 8080, host = '127.0.0.1') =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => resolve(server.address() as AddressInfo));
      }),
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await queue.close();
    },
  };
}
