// Runs a FLUX pipeline over prompts x cache configs, one "cell" (config, prompt) at a time, and
// keeps each cell's image and record on disk so that an interrupted benchmark resumes where it
// stopped: a cell whose record matches the current request is not run again.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { FluxPipeline } from '@ditcache/adapter-flux';
import { disableCache, enableCache, summary } from '@ditcache/core';
import { openSafetensors, type Tensor } from '@ditcache/cuda-runtime';
import { encodePng, toImage8, type ComputeDtype } from '@ditcache/diffusion';

import { UsageError } from '../errors.js';
import { writeTextAtomically } from '../outputs.js';
import { UNCACHED, type BenchConfig } from './configs.js';

/** Prompt embeddings of a benchmark: `prompt_embeds` (P, T, D) and `pooled_prompt_embeds` (P, D). */
export interface BenchPrompts {
  readonly promptEmbeds: Tensor;
  readonly pooledPromptEmbeds: Tensor;
  /** The prompts' text (from the file's `prompts` metadata), or "prompt i". */
  readonly labels: readonly string[];
  /** Settings the file recommends (`height`, `width`, `num_inference_steps` metadata). */
  readonly height?: number;
  readonly width?: number;
  readonly steps?: number;
}

/** Reads a prompts file: the demo's `demo-prompts.safetensors` is one. */
export function readBenchPrompts(path: string): BenchPrompts & Disposable {
  if (!existsSync(path)) throw new UsageError(`--prompts: no such file ${path}`);
  const tensors: Record<string, Tensor> = {};
  let metadata: Record<string, string>;
  try {
    using file = openSafetensors(path);
    metadata = file.metadata;
    for (const name of ['prompt_embeds', 'pooled_prompt_embeds']) if (file.has(name)) tensors[name] = file.get(name);
  } catch (e) {
    Object.values(tensors).forEach((t) => t.dispose());
    throw new UsageError(`--prompts: ${(e as Error).message}`);
  }
  const dispose = () => Object.values(tensors).forEach((t) => t.dispose());
  const { prompt_embeds: promptEmbeds, pooled_prompt_embeds: pooledPromptEmbeds } = tensors;
  if (
    !promptEmbeds ||
    !pooledPromptEmbeds ||
    promptEmbeds.rank !== 3 ||
    pooledPromptEmbeds.rank !== 2 ||
    promptEmbeds.shape[0] !== pooledPromptEmbeds.shape[0]
  ) {
    dispose();
    throw new UsageError(`--prompts: ${path} needs prompt_embeds (P, tokens, dim) and pooled_prompt_embeds (P, dim) with the same P`);
  }
  const count = promptEmbeds.shape[0];
  const texts = metadata.prompts === undefined ? undefined : (JSON.parse(metadata.prompts) as unknown);
  const labels = Array.isArray(texts) && texts.length === count ? texts.map(String) : Array.from({ length: count }, (_, i) => `prompt ${i}`);
  const num = (key: string) => (metadata[key] === undefined ? undefined : Number(metadata[key]));
  return {
    promptEmbeds,
    pooledPromptEmbeds,
    labels,
    height: num('height'),
    width: num('width'),
    steps: num('num_inference_steps'),
    [Symbol.dispose]: dispose,
  };
}

export interface BenchSettings {
  readonly steps: number;
  readonly height: number;
  readonly width: number;
  /** Prompt i starts from the noise of seed + i. */
  readonly seed: number;
  /** Generations per cell; the fastest is kept. */
  readonly repeats: number;
  /** What the pipeline computes in (diffusers' torch_dtype; default float32). */
  readonly dtype?: ComputeDtype;
}

/** What one cell measured; stored as `<out>/<config>/prompt-<i>.json` beside its image. */
export interface CellRecord {
  readonly config: string;
  readonly cache: Readonly<Record<string, unknown>> | null;
  readonly prompt: number;
  readonly settings: BenchSettings;
  readonly model: string;
  /** Wall time of generate(), VAE decoding included (the fastest of the repeats). */
  readonly seconds: number;
  readonly cachedSteps: readonly number[];
  /** Denoising step -> the relative L1 diff compared with the threshold. */
  readonly residualDiffs: Readonly<Record<string, number>>;
  readonly computedBlocks: number;
  readonly totalBlocks: number;
  readonly flopsSkippedFraction: number;
}

export interface BenchProgress {
  /** Cells finished so far (run or resumed) and in all. */
  readonly done: number;
  readonly cells: number;
  readonly config: string;
  readonly prompt: number;
  /** Denoising steps finished in the current cell, and in all its repeats. */
  readonly step: number;
  readonly steps: number;
}

export interface BenchRun {
  readonly model: string;
  readonly prompts: BenchPrompts;
  /** Run in this order after the uncached baseline. */
  readonly configs: readonly BenchConfig[];
  readonly out: string;
  readonly settings: BenchSettings;
  onProgress?(p: BenchProgress): void;
}

export function cellPaths(out: string, config: string, prompt: number): { image: string; record: string } {
  return { image: join(out, config, `prompt-${prompt}.png`), record: join(out, config, `prompt-${prompt}.json`) };
}

/** The settings with their dtype spelled out (records from before the dtype setting ran in float32). */
function withDtype(settings: BenchSettings): BenchSettings {
  return { ...settings, dtype: settings.dtype ?? 'float32' };
}

/** The stored record of a cell, when it was made for the same model, config and settings. */
function finishedCell(out: string, model: string, config: BenchConfig | null, prompt: number, settings: BenchSettings): CellRecord | undefined {
  const paths = cellPaths(out, config?.name ?? UNCACHED, prompt);
  if (!existsSync(paths.record) || !existsSync(paths.image)) return undefined;
  try {
    const record = JSON.parse(readFileSync(paths.record, 'utf-8')) as CellRecord;
    const same =
      record.model === model &&
      JSON.stringify(record.cache) === JSON.stringify(config?.cache ?? null) &&
      JSON.stringify(withDtype(record.settings)) === JSON.stringify(settings);
    return same ? record : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Runs every cell not already on disk, prompt by prompt, the uncached baseline first. Returns the
 * records of all cells (config name -> one per prompt, in prompt order).
 */
export async function runBench(run: BenchRun): Promise<Map<string, CellRecord[]>> {
  const { out, prompts } = run;
  const settings = withDtype(run.settings);
  if (!Number.isInteger(settings.repeats) || settings.repeats < 1)
    throw new RangeError(`runBench: repeats must be a positive integer, got ${settings.repeats}`);
  const count = prompts.promptEmbeds.shape[0];
  const rows: (BenchConfig | null)[] = [null, ...run.configs];
  const cells = rows.length * count;
  const records = new Map<string, CellRecord[]>();
  const pending: { config: BenchConfig | null; prompt: number }[] = [];
  for (const config of rows) records.set(config?.name ?? UNCACHED, []);
  // Prompt by prompt, every config in turn: a burst of load from other jobs then slows all
  // configs alike instead of one config's whole row.
  for (let prompt = 0; prompt < count; ++prompt) {
    for (const config of rows) {
      const done = finishedCell(out, run.model, config, prompt, settings);
      if (done) records.get(config?.name ?? UNCACHED)!.push(done);
      else pending.push({ config, prompt });
    }
  }
  // Progress counts the denoising steps of every repeat.
  const cellSteps = settings.steps * settings.repeats;
  let done = cells - pending.length;
  run.onProgress?.({ done, cells, config: '', prompt: 0, step: 0, steps: cellSteps });
  if (pending.length === 0) return records;

  using pipe = FluxPipeline.fromPretrained(run.model, { dtype: settings.dtype });
  const request = (prompt: number, numInferenceSteps: number, callback?: (s: { step: number }) => void) => {
    const promptEmbeds = prompts.promptEmbeds.narrow(0, prompt, 1);
    const pooledPromptEmbeds = prompts.pooledPromptEmbeds.narrow(0, prompt, 1);
    try {
      return pipe.generate({
        promptEmbeds,
        pooledPromptEmbeds,
        seed: settings.seed + prompt,
        height: settings.height,
        width: settings.width,
        numInferenceSteps,
        callback,
      });
    } finally {
      promptEmbeds.dispose();
      pooledPromptEmbeds.dispose();
    }
  };
  // One untimed generation first: the first call pages the weights in and warms the thread pool.
  const warm = request(0, 2);
  warm.latents.dispose();
  warm.image?.dispose();

  for (const { config, prompt } of pending) {
    const name = config?.name ?? UNCACHED;
    if (config) enableCache(pipe, config.cache);
    try {
      // The fastest of the repeats: the run least disturbed by other work on the machine. Every
      // repeat computes the same image.
      let seconds = Infinity;
      let result: ReturnType<typeof request> | undefined;
      for (let repeat = 0; repeat < settings.repeats; ++repeat) {
        if (result) {
          result.latents.dispose();
          result.image?.dispose();
        }
        const t0 = performance.now();
        const before = repeat * settings.steps;
        result = request(prompt, settings.steps, ({ step }) =>
          run.onProgress?.({ done, cells, config: name, prompt, step: before + step + 1, steps: cellSteps }),
        );
        seconds = Math.min(seconds, (performance.now() - t0) / 1000);
      }
      const stats = config ? summary(pipe, { print: false }) : undefined;
      const context = stats?.contexts[0];
      const png = await encodePng(toImage8(result!.image!));
      result!.latents.dispose();
      result!.image?.dispose();
      const record: CellRecord = {
        config: name,
        cache: config?.cache ?? null,
        prompt,
        settings,
        model: run.model,
        seconds,
        cachedSteps: context?.cachedSteps ?? [],
        residualDiffs: context?.residualDiffs ?? {},
        computedBlocks: stats?.computedBlocks ?? 1,
        totalBlocks: stats?.totalBlocks ?? 1,
        flopsSkippedFraction: stats?.flopsSkippedFraction ?? 0,
      };
      const paths = cellPaths(out, name, prompt);
      mkdirSync(join(out, name), { recursive: true });
      writeFileSync(paths.image, png);
      // The record goes last: a cell counts as finished only once its image is on disk.
      writeTextAtomically(paths.record, `${JSON.stringify(record, null, 2)}\n`);
      records.get(name)!.push(record);
    } finally {
      if (config) disableCache(pipe);
    }
    done += 1;
    run.onProgress?.({ done, cells, config: name, prompt, step: 0, steps: cellSteps });
  }
  for (const list of records.values()) list.sort((a, b) => a.prompt - b.prompt);
  return records;
}
