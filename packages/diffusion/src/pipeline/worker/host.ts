// The worker side of RemotePipeline: loads one pipeline, then runs generate requests one at a
// time, posting progress, honouring aborts between steps and transformer calls, and applying
// cache settings with the same one-line API the main thread would use.
import { parentPort, workerData } from 'node:worker_threads';

import { disableCache, enableCache, summary } from '@ditcache/core';
import { memoryStats } from '@ditcache/cuda-runtime';

import type { DiffusionPipeline, DiffusionPipelineClass, DiffusionRequest } from '../diffusion-pipeline.js';
import { decode, disposeTensors, encode, errorToWire, type FromWorker, type StepCache, type ToWorker } from './wire.js';

export interface HostSpec {
  /** Module (package name or file URL) exporting the pipeline class. */
  module: string;
  exportName: string;
  /** Argument of the class's static fromPretrained. */
  modelDir: string;
  loadOptions?: unknown;
}

/** Any family's pipeline, driven with a decoded request and the host's progress callback. */
type HostedPipeline = DiffusionPipeline<Record<string, unknown> & DiffusionRequest, unknown>;

class AbortedError extends Error {
  constructor() {
    super('generation aborted');
    this.name = 'AbortError';
  }
}

const port = parentPort!;
// A cache config that failed to apply; the next generate request reports it.
let pendingCacheError: Error | null = null;
const send = (m: FromWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(m, transfer);

async function main(spec: HostSpec): Promise<void> {
  const mod = (await import(spec.module)) as Record<string, DiffusionPipelineClass<HostedPipeline> | undefined>;
  const Pipeline = mod[spec.exportName];
  if (!Pipeline || typeof Pipeline.fromPretrained !== 'function') {
    throw new TypeError(`${spec.module} has no pipeline class ${spec.exportName} with fromPretrained()`);
  }
  const pipe = Pipeline.fromPretrained(spec.modelDir, spec.loadOptions);
  // A class typed against another version of the interface (or none) fails here, named, not mid-run.
  const lacks = (['generate', 'onTransformerCall', 'dispose'] as const).filter((m) => typeof (pipe as Partial<HostedPipeline>)[m] !== 'function');
  if (lacks.length) {
    (pipe as Partial<HostedPipeline>).dispose?.();
    throw new TypeError(`${spec.module}: ${spec.exportName}.fromPretrained() returned no DiffusionPipeline (it has no ${lacks.join(', ')})`);
  }
  let cached = false;
  send({ type: 'ready' });

  port.on('message', (m: ToWorker) => {
    switch (m.type) {
      case 'enableCache':
      case 'disableCache':
        // A config that does not fit this model is reported with the next generate request.
        try {
          if (m.type === 'enableCache') enableCache(pipe, m.config as never);
          else disableCache(pipe);
          cached = m.type === 'enableCache';
          pendingCacheError = null;
        } catch (e) {
          pendingCacheError = e as Error;
        }
        return;
      case 'memoryStats':
        send({ type: 'memoryStats', id: m.id, stats: memoryStats() });
        return;
      case 'close':
        pipe.dispose();
        port.close();
        return;
      case 'generate':
        run(pipe, m, cached);
        return;
    }
  });
}

/** What a cached run has cached so far, sent with each step's progress so that a service can show it live. */
function stepCache(pipe: HostedPipeline): StepCache {
  const stats = summary(pipe, { print: false });
  return { cachedSteps: stats.cachedSteps, residualDiffs: { ...stats.contexts[0]?.residualDiffs } };
}

function run(pipe: HostedPipeline, m: Extract<ToWorker, { type: 'generate' }>, cached: boolean): void {
  const aborted = new Int32Array(m.abort);
  const checkAbort = (): void => {
    if (Atomics.load(aborted, 0) !== 0) throw new AbortedError();
  };
  const request = decode(m.request) as Record<string, unknown>;
  const off = pipe.onTransformerCall(checkAbort);
  // The reply goes out only after everything this run held is freed: the runtime's counters
  // are process-wide, so a caller checking them on receipt must see the final state.
  let reply: { message: FromWorker; transfer: ArrayBuffer[] };
  try {
    if (pendingCacheError) throw pendingCacheError;
    checkAbort();
    const result = pipe.generate({
      ...request,
      callback: (s) => {
        send({ type: 'progress', id: m.id, step: s.step, numSteps: s.numSteps, timestep: s.timestep, cache: cached ? stepCache(pipe) : undefined });
        checkAbort();
      },
    });
    const transfer: ArrayBuffer[] = [];
    const wire = encode(result, transfer);
    disposeTensors(result);
    const stats = cached ? summary(pipe, { print: false }) : undefined;
    reply = { message: { type: 'done', id: m.id, result: wire, cacheSummary: stats }, transfer };
  } catch (e) {
    reply = { message: { type: 'failed', id: m.id, ...errorToWire(e) }, transfer: [] };
  } finally {
    off();
    disposeTensors(request);
  }
  send(reply.message, reply.transfer);
}

main(workerData as HostSpec).catch((e: unknown) => send({ type: 'failed', id: null, ...errorToWire(e) }));
