// One model loaded in a worker thread, running jobs one at a time as `ditcache generate` runs
// them: the CLI's family plugins build the request and write the file, so a job's image has the
// same bytes as the CLI's (less the text chunks the CLI adds), and any family the CLI runs works.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { UsageError, checkCacheFitsModel, familyForPipeline, loadFamilies, loadOptions, resolveCacheSpec } from '@ditcache/cli';
import { cachePreset, disableCache, enableCache, parseCacheConfig, resolveConfig, summary, type CacheConfigInput } from '@ditcache/core';
import type { ComputeDtype, RemotePipeline } from '@ditcache/diffusion';
import type { CliFamily, CliGenerateResult, CliGenerateSettings } from '@ditcache/diffusion/cli';

import type { GeneratedImage, GenerationSpec, JobProgress, JobResult } from './job.js';
import { modelInfo, type ModelInfo } from './model-info.js';

/** How a process loads its model: the flags `serve` and `worker` share. */
export interface ModelOptions {
  model: string;
  /** Adapter packages to load beside the installed ones (names or folders; the operator's, never a request's). */
  adapter?: readonly string[];
  /** The cache of requests that name none: a preset, a file, or JSON / YAML text (as `generate --cache`). */
  cache?: string;
  dtype?: ComputeDtype;
  weightDtype?: 'float32' | 'stored';
}

export interface RunOptions {
  signal?: AbortSignal;
  onProgress?: (p: JobProgress) => void;
}

const CONTENT_TYPES: Record<string, string> = { '.png': 'image/png', '.webp': 'image/webp', '.gif': 'image/gif' };

export class ModelRunner {
  private constructor(
    readonly family: CliFamily,
    readonly modelDir: string,
    readonly info: ModelInfo,
    private readonly pipe: RemotePipeline<object, CliGenerateResult>,
    private readonly defaultCache: CacheConfigInput | string | undefined,
  ) {}

  /** Finds the model's family, checks the default cache against it, and loads the pipeline in a worker thread. */
  static async open(o: ModelOptions): Promise<ModelRunner> {
    const family = familyForPipeline(await loadFamilies(o.adapter ?? []), o.model);
    const defaultCache = o.cache === undefined ? undefined : resolveCacheSpec(o.cache);
    const chains = family.cacheChains?.(o.model);
    if (defaultCache !== undefined && chains) checkCacheFitsModel(defaultCache, chains);
    const pipe = await family.spawn(o.model, loadOptions({ dtype: o.dtype ?? 'float32', weightDtype: o.weightDtype ?? 'float32' }));
    return new ModelRunner(family, o.model, modelInfo(family, o.model), pipe, defaultCache);
  }

  /** A request's cache config: its own, or the server's default; undefined for none. */
  private cacheOf(spec: GenerationSpec): CacheConfigInput | string | undefined {
    if (spec.cache === undefined) return this.defaultCache;
    if (spec.cache === 'none') return undefined;
    return typeof spec.cache === 'string' ? cachePreset(spec.cache) : spec.cache;
  }

  /** The family's settings of image `index` of a job. */
  private settings(spec: GenerationSpec, index: number): CliGenerateSettings {
    const { prompt, negativePrompt, width, height, steps, guidance, frames } = spec;
    return { prompt, negativePrompt, width, height, steps, guidance, frames, seed: spec.seed + index };
  }

  /** Throws the UsageError (or cache config error) the job would fail with, before it is queued. */
  check(spec: GenerationSpec): void {
    if (spec.frames !== undefined && !this.info.takesFrames) throw new UsageError(`frames: ${this.family.label} makes images; frames is for video models`);
    const settings = this.settings(spec, 0);
    this.family.checkModel?.(this.modelDir, settings);
    this.family.request({}, undefined, settings);
    const cache = this.cacheOf(spec);
    const chains = this.family.cacheChains?.(this.modelDir);
    if (cache !== undefined && chains) checkCacheFitsModel(cache, chains);
  }

  /** Runs a job's images one after the other; an abort stops it at the next step. */
  async run(spec: GenerationSpec, o: RunOptions = {}): Promise<JobResult> {
    this.check(spec);
    const cache = this.cacheOf(spec);
    if (cache === undefined) disableCache(this.pipe);
    else enableCache(this.pipe, cache);
    const threshold = cache === undefined ? undefined : resolveConfig(parseCacheConfig(cache).base).residualDiffThreshold;
    const images: GeneratedImage[] = [];
    let steps = 0;
    let cachedSteps = 0;
    const t0 = performance.now();
    for (let index = 0; index < spec.n; ++index) {
      const settings = this.settings(spec, index);
      const result = await this.pipe.generate(this.family.request({}, undefined, settings), {
        signal: o.signal,
        onProgress: (p) =>
          o.onProgress?.({
            image: index,
            images: spec.n,
            step: p.step,
            numSteps: p.numSteps,
            cachedSteps: cachedSteps + (p.cache?.cachedSteps ?? 0),
            residualDiffs: p.cache?.residualDiffs,
            threshold,
          }),
      });
      try {
        images.push({ ...(await this.encode(result, settings)), seed: settings.seed as number });
        steps += result.timesteps?.length ?? settings.steps ?? 0;
        if (cache !== undefined) cachedSteps += summary(this.pipe, { print: false }).cachedSteps;
      } finally {
        for (const t of [result.latents, result.image, result.video]) t?.dispose();
      }
    }
    return { images, steps, cachedSteps, seconds: (performance.now() - t0) / 1000 };
  }

  /** The file the family writes for a result, as base64 with its content type. */
  private async encode(result: CliGenerateResult, settings: CliGenerateSettings): Promise<Omit<GeneratedImage, 'seed'>> {
    // A folder per file, gone at once: a family may write files beside the one it is given.
    const dir = mkdtempSync(join(tmpdir(), 'ditcache-server-'));
    try {
      const path = join(dir, `output${this.info.outputFormat}`);
      await this.family.writeOutput(result, path, settings);
      return { b64_json: readFileSync(path).toString('base64'), content_type: CONTENT_TYPES[this.info.outputFormat] ?? 'application/octet-stream' };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  async close(): Promise<void> {
    await this.pipe.close();
  }
}
