// A pipeline that runs in a worker thread, so that generating never blocks the caller's event
// loop: requests and results cross as typed arrays, progress arrives as events, an AbortSignal
// stops the work between steps (and transformer calls), and the one-line cache API applies.
import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';

import { CACHE_DELEGATE, type CacheConfigInput, type CacheDelegate, type CacheSummary } from '@ditcache/core';
import type { MemoryStats } from '@ditcache/cuda-runtime';

import type { HostSpec } from './host.js';
import { decode, encode, errorFromWire, type FromWorker, type StepCache, type ToWorker } from './wire.js';

export interface Progress {
  step: number;
  numSteps: number;
  timestep: number;
  /** On a cached pipeline: cached steps so far and the residual diffs measured so far. */
  cache?: StepCache;
}

export interface RemoteGenerateOptions {
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
  onProgress?: (p: Progress) => void;
  cleanup(): void;
}

/**
 * Runs `spec.exportName` from `spec.module` in its own worker thread. Events: 'progress'
 * (Progress). Results are tensors on the calling thread, owned by the caller.
 */
export class RemotePipeline<Request, Result> extends EventEmitter {
  readonly [CACHE_DELEGATE]: CacheDelegate;
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private closed = false;
  private cacheConfig: CacheConfigInput | string | undefined;
  private lastSummary: CacheSummary | undefined;

  private constructor(spec: HostSpec) {
    super();
    this.worker = new Worker(new URL('./host.js', import.meta.url), { workerData: spec });
    this.worker.on('message', (m: FromWorker) => this.receive(m));
    this.worker.on('error', (e) => this.failAll(e));
    this.worker.on('exit', (code) => {
      if (!this.closed) this.failAll(new Error(`the pipeline worker exited unexpectedly (code ${code})`));
    });
    this[CACHE_DELEGATE] = {
      enableCache: (config) => {
        this.cacheConfig = config ?? {};
        this.lastSummary = undefined;
        this.post({ type: 'enableCache', config });
      },
      disableCache: () => {
        const was = this.cacheConfig !== undefined;
        this.cacheConfig = undefined;
        this.lastSummary = undefined;
        this.post({ type: 'disableCache' });
        return was;
      },
      cacheConfig: () => this.cacheConfig,
      cacheSummary: () => this.lastSummary,
    };
  }

  /** Starts the worker and loads the pipeline there; rejects with the loader's error. */
  static async open<Request, Result>(spec: HostSpec): Promise<RemotePipeline<Request, Result>> {
    const remote = new RemotePipeline<Request, Result>(spec);
    await new Promise<void>((resolve, reject) => {
      const onMessage = (m: FromWorker) => {
        if (m.type === 'ready') resolve();
        else if (m.type === 'failed' && m.id === null) reject(errorFromWire(m));
        else return;
        remote.worker.off('message', onMessage);
      };
      remote.worker.on('message', onMessage);
      remote.worker.once('error', reject);
    }).catch(async (e: Error) => {
      remote.closed = true;
      await remote.worker.terminate();
      throw e;
    });
    return remote;
  }

  /**
   * Generates in the worker. Tensors in `request` are copied there (the caller keeps its own);
   * the result's tensors are new and the caller's to dispose. Aborting rejects with an
   * AbortError and frees everything the run held in the worker.
   */
  generate(request: Request, opts: RemoteGenerateOptions = {}): Promise<Result> {
    if (this.closed) return Promise.reject(new Error('generate: the pipeline was closed'));
    if (opts.signal?.aborted) return Promise.reject(abortError(opts.signal));
    const id = this.nextId++;
    const abort = new SharedArrayBuffer(4);
    const onAbort = (): void => {
      Atomics.store(new Int32Array(abort), 0, 1);
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    return new Promise<Result>((resolve, reject) => {
      this.pending.set(id, {
        resolve: resolve as (v: unknown) => void,
        reject: (e) => reject(e.name === 'AbortError' && opts.signal?.aborted ? abortError(opts.signal) : e),
        onProgress: opts.onProgress,
        cleanup: () => opts.signal?.removeEventListener('abort', onAbort),
      });
      const transfer: ArrayBuffer[] = [];
      // Copies: the caller's tensors stay valid (encode reads them into fresh arrays).
      this.post({ type: 'generate', id, request: encode(request, transfer), abort }, transfer);
    });
  }

  /** The worker's live-tensor counters (to check that aborted runs leave nothing behind). */
  memoryStats(): Promise<MemoryStats> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, cleanup: () => undefined });
      this.post({ type: 'memoryStats', id });
    });
  }

  /** Frees the model and stops the worker; pending requests reject. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.post({ type: 'close' });
    this.failAll(new Error('the pipeline was closed'));
    await new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
  }

  private post(m: ToWorker, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(m, transfer);
  }

  private receive(m: FromWorker): void {
    if (m.type === 'ready') return;
    if (m.type === 'failed' && m.id === null) {
      this.failAll(errorFromWire(m));
      return;
    }
    const p = this.pending.get(m.id as number);
    if (!p) return;
    switch (m.type) {
      case 'progress': {
        const progress = { step: m.step, numSteps: m.numSteps, timestep: m.timestep, cache: m.cache };
        p.onProgress?.(progress);
        this.emit('progress', progress);
        return;
      }
      case 'done':
        if (m.cacheSummary) this.lastSummary = m.cacheSummary as CacheSummary;
        this.settle(m.id, () => p.resolve(decode(m.result)));
        return;
      case 'memoryStats':
        this.settle(m.id, () => p.resolve(m.stats));
        return;
      case 'failed':
        this.settle(m.id as number, () => p.reject(errorFromWire(m)));
        return;
    }
  }

  private settle(id: number, finish: () => void): void {
    const p = this.pending.get(id)!;
    this.pending.delete(id);
    p.cleanup();
    finish();
  }

  private failAll(error: Error): void {
    for (const [id, p] of [...this.pending]) this.settle(id, () => p.reject(error));
  }
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new DOMException('generation aborted', 'AbortError');
}
