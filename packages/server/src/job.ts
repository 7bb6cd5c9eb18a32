// What a job is, the same in the in-process queue and on Redis: the HTTP layer, the web page and
// the metrics read jobs only through these shapes, so either queue serves them unchanged.
import type { CacheConfigInput } from '@ditcache/core';

/** One validated generation request: what a worker needs, nothing that names a file or a plugin. */
export interface GenerationSpec {
  prompt: string;
  negativePrompt?: string;
  width?: number;
  height?: number;
  steps?: number;
  guidance?: number;
  /** Video length, for families that make videos (checked by the family as generate's --frames). */
  frames?: number;
  /** The seed of the first image; image i uses seed + i. */
  seed: number;
  /** Images to make, one after the other. */
  n: number;
  /** A preset's name, 'none', or a config; undefined: the server's default cache. */
  cache?: string | CacheConfigInput;
}

export const JOB_STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];

/** Where a running job is: image `image` of `images`, step `step` (0-based, done) of `numSteps`. */
export interface JobProgress {
  image: number;
  images: number;
  step: number;
  numSteps: number;
  /** Cached steps so far over the job's images (0 without a cache). */
  cachedSteps: number;
  /** The current image's residual diffs so far by step, on a cached run. */
  residualDiffs?: Record<string, number>;
  /** The current image's threshold, for plots. */
  threshold?: number;
}

export interface GeneratedImage {
  /** The file the model's family writes (PNG for images, animated WebP for videos), base64. */
  b64_json: string;
  content_type: string;
  seed: number;
}

export interface JobResult {
  images: GeneratedImage[];
  /** Steps run and cached steps over every image. */
  steps: number;
  cachedSteps: number;
  /** Generation time, model load excluded. */
  seconds: number;
}

/** A job as GET /v1/jobs/:id shows it. */
export interface JobView {
  id: string;
  state: JobState;
  created_at: number;
  progress?: JobProgress;
  /** 0 to 1 over every image's steps. */
  fraction: number;
  result?: JobResult;
  error?: string;
  /** Runs started (more than one after a worker died or a retryable failure). */
  attempts?: number;
}

/** What a watcher of a job is told: each step, then the end (the final view). */
export type JobEvent = { type: 'progress'; progress: JobProgress } | { type: 'end'; view: JobView };

/** Counts a queue reports for /metrics. */
export interface QueueStats {
  depth: number;
  byState: Record<JobState, number>;
  workers: number;
}

/** What the HTTP layer needs of a queue (in-process or Redis). */
export interface JobQueue {
  /** Queues a job; its id. */
  submit(spec: GenerationSpec): Promise<string>;
  view(id: string): Promise<JobView | undefined>;
  /** Calls `listener` for each later event of the job; returns the function that stops it. */
  watch(id: string, listener: (e: JobEvent) => void): Promise<() => void>;
  /** Cancels a queued or running job (a running one stops at its next step); the view after, undefined if there is no such job. */
  cancel(id: string): Promise<JobView | undefined>;
  stats(): Promise<QueueStats>;
  /** Called with each job that ends, once, in this process (for metrics). */
  onFinished(listener: (view: JobView) => void): void;
  close(): Promise<void>;
}

/** 0 to 1 over every image's steps. */
export function progressFraction(p: JobProgress | undefined): number {
  if (!p || p.numSteps === 0) return 0;
  return (p.image * p.numSteps + p.step + 1) / (p.images * p.numSteps);
}

export function isFinal(state: JobState): boolean {
  return state === 'succeeded' || state === 'failed' || state === 'cancelled';
}
