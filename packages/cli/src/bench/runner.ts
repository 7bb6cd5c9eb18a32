// Runs a pipeline of any family the CLI can run (through its CliFamily plugin, as `generate`
// does) over prompts x cache configs, one "cell" (config, prompt) at a time, and keeps each
// cell's image or video and its record on disk so that an interrupted benchmark resumes where it
// stopped: a cell whose record matches the current request is not run again.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { disableCache, enableCache, summary, type CacheSummary } from '@ditcache/core';
import { encodePng, savePngFrames, toImage8, type ComputeDtype } from '@ditcache/diffusion';
import type { CliFamily, CliGenerateResult, CliGenerateSettings } from '@ditcache/diffusion/cli';

import { writeTextAtomically } from '../outputs.js';
import { familyForPipeline, loadFamilies } from '../plugins.js';
import { UNCACHED, type BenchConfig } from './configs.js';
import { asPromptsError, promptFingerprint, promptInputs, type BenchPrompts } from './prompts.js';

// Where the prompts file is read: re-exported for the callers that import it from the runner.
export { readBenchPrompts, type BenchPrompts } from './prompts.js';

export interface BenchSettings {
  readonly steps: number;
  readonly height: number;
  readonly width: number;
  /** Prompt i starts from the noise of seed + i (unless the prompts file gives latents_in). */
  readonly seed: number;
  /** Generations per cell; the fastest is kept. */
  readonly repeats: number;
  /** What the pipeline computes in (diffusers' torch_dtype; default float32). */
  readonly dtype?: ComputeDtype;
  /** Guidance scale (`generate --guidance`; default: the pipeline's). */
  readonly guidance?: number;
  /** The settings the family's own flags fill, by setting name (`frames`, `fps`, `guidance2`, `trueCfgScale`, ...). */
  readonly family?: Readonly<Record<string, string | number>>;
}

/** What one cell measured; stored as `<out>/<config>/prompt-<i>.json` beside its image or video. */
export interface CellRecord {
  readonly config: string;
  readonly cache: Readonly<Record<string, unknown>> | null;
  readonly prompt: number;
  readonly settings: BenchSettings;
  readonly model: string;
  /** The digest of the prompt's tensors (promptFingerprint): a changed prompts file reruns its cells. */
  readonly inputs?: string;
  /** Wall time of generate(), VAE decoding included (the fastest of the repeats). */
  readonly seconds: number;
  /** The pipeline steps where a cache context cached (the conditional branch under CFG). */
  readonly cachedSteps: readonly number[];
  /** Pipeline step -> the relative L1 diff compared with the threshold. */
  readonly residualDiffs: Readonly<Record<string, number>>;
  /** Under CFG with separate branches: the unconditional branch's cached steps. */
  readonly cfgCachedSteps?: readonly number[];
  readonly computedBlocks: number;
  readonly totalBlocks: number;
  readonly flopsSkippedFraction: number;
  /** Under a policy that skips attention calls (pab, fastercache): the calls of its attention sites and how many it skipped. */
  readonly attention?: { readonly calls: number; readonly skipped: number };
  /** The cache summary of the run, where its config asked for it to be kept (BenchConfig.keepSummary). */
  readonly summary?: CacheSummary;
  /** A video cell: its frames (written as PNGs in `prompt-<i>_frames/`) and its animation's extension. */
  readonly frames?: number;
  readonly format?: string;
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
  /** The family that runs the model (default: the installed plugin that runs its folder, as generate finds it). */
  readonly family?: CliFamily;
  onProgress?(p: BenchProgress): void;
}

/**
 * Where a cell's files go: its picture (`format`: '.png' for an image, the animation's extension
 * for a video), its record, and a video's frames as PNGs.
 */
export function cellPaths(out: string, config: string, prompt: number, format = '.png'): { image: string; record: string; frames: string } {
  const stem = join(out, config, `prompt-${prompt}`);
  return { image: `${stem}${format}`, record: `${stem}.json`, frames: `${stem}_frames` };
}

/** The PNG frames of a video cell, in order. */
export function cellFrames(out: string, record: CellRecord): string[] {
  const dir = cellPaths(out, record.config, record.prompt).frames;
  return readdirSync(dir)
    .filter((name) => name.endsWith('.png'))
    .sort()
    .map((name) => join(dir, name));
}

/** The settings with their dtype spelled out (records from before the dtype setting ran in float32), keys in one order. */
function withDtype(settings: BenchSettings): BenchSettings {
  const spelled: Record<string, unknown> = { ...settings, dtype: settings.dtype ?? 'float32' };
  return Object.fromEntries(
    Object.keys(spelled)
      .sort()
      .map((k) => [k, spelled[k]]),
  ) as unknown as BenchSettings;
}

/** What a finished cell must have been made for: the model, the prompt's tensors and the settings. */
interface CellRequest {
  readonly model: string;
  readonly inputs: string;
  readonly settings: BenchSettings;
}

/** The stored record of a cell, when it was made for the same request and config, with its files on disk. */
function finishedCell(out: string, made: CellRequest, config: BenchConfig | null, prompt: number): CellRecord | undefined {
  const { record: recordPath } = cellPaths(out, config?.name ?? UNCACHED, prompt);
  if (!existsSync(recordPath)) return undefined;
  try {
    const record = JSON.parse(readFileSync(recordPath, 'utf-8')) as CellRecord;
    const paths = cellPaths(out, record.config, prompt, record.format);
    const same =
      record.model === made.model &&
      record.inputs === made.inputs &&
      JSON.stringify(record.cache) === JSON.stringify(config?.cache ?? null) &&
      JSON.stringify(withDtype(record.settings)) === JSON.stringify(made.settings);
    const complete = existsSync(paths.image) && (record.frames === undefined || cellFrames(out, record).length === record.frames);
    const kept = !config?.keepSummary || record.summary !== undefined;
    return same && complete && kept ? record : undefined;
  } catch {
    return undefined;
  }
}

/** The settings `request()`, `writeOutput()` and `checkModel()` of the family get. */
export function generateSettings(settings: BenchSettings): CliGenerateSettings {
  const { steps, height, width, guidance, seed } = settings;
  return { ...settings.family, steps, height, width, guidance, seed };
}

/**
 * The cached steps and diffs by pipeline step: the steps where a context cached (a Wan 2.2
 * expert's context counts its own steps from 0; HiDream's two block lists cache the same step
 * each on its own), and the first context's diff of each step.
 */
function cachedStepsOf(stats: CacheSummary | undefined): Pick<CellRecord, 'cachedSteps' | 'residualDiffs' | 'cfgCachedSteps'> {
  const contexts = stats?.contexts ?? [];
  const pipelineStep = (c: (typeof contexts)[number], step: number) => c.pipelineSteps[step] ?? step;
  const steps = (pick: (c: (typeof contexts)[number]) => readonly number[]) =>
    [...new Set(contexts.flatMap((c) => pick(c).map((s) => pipelineStep(c, s))))].sort((a, b) => a - b);
  const diffs: Record<string, number> = {};
  for (const c of contexts) {
    for (const [step, diff] of Object.entries(c.residualDiffs)) diffs[String(pipelineStep(c, Number(step)))] ??= diff;
  }
  const cfgCachedSteps = steps((c) => c.cfgCachedSteps);
  return { cachedSteps: steps((c) => c.cachedSteps), residualDiffs: diffs, ...(cfgCachedSteps.length ? { cfgCachedSteps } : {}) };
}

/** The attention calls of every context and site kind, where the policy acts on attention sites. */
function attentionOf(stats: CacheSummary | undefined): Pick<CellRecord, 'attention'> {
  const kinds = (stats?.contexts ?? []).flatMap((c) => Object.values(c.attention?.kinds ?? {}));
  if (kinds.length === 0) return {};
  return { attention: { calls: kinds.reduce((n, k) => n + k.calls, 0), skipped: kinds.reduce((n, k) => n + k.skipped, 0) } };
}

function disposeResult(result: CliGenerateResult | undefined): void {
  for (const t of [result?.latents, result?.image, result?.video]) t?.dispose();
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
  const count = prompts.labels.length;
  const rows: (BenchConfig | null)[] = [null, ...run.configs];
  const cells = rows.length * count;
  const records = new Map<string, CellRecord[]>();
  const pending: { config: BenchConfig | null; prompt: number }[] = [];
  for (const config of rows) records.set(config?.name ?? UNCACHED, []);
  const fingerprints = Array.from({ length: count }, (_, prompt) => promptFingerprint(prompts, prompt));
  // Prompt by prompt, every config in turn: a burst of load from other jobs then slows all
  // configs alike instead of one config's whole row.
  for (let prompt = 0; prompt < count; ++prompt) {
    for (const config of rows) {
      const done = finishedCell(out, { model: run.model, inputs: fingerprints[prompt], settings }, config, prompt);
      if (done) records.get(config?.name ?? UNCACHED)!.push(done);
      else pending.push({ config, prompt });
    }
  }
  // Progress counts the denoising steps of every repeat.
  const cellSteps = settings.steps * settings.repeats;
  let done = cells - pending.length;
  run.onProgress?.({ done, cells, config: '', prompt: 0, step: 0, steps: cellSteps });
  if (pending.length === 0) return records;

  const family = run.family ?? familyForPipeline(await loadFamilies([]), run.model);
  const generateWith = generateSettings(settings);
  family.checkModel?.(run.model, generateWith);
  // The family's complaints about the file (a missing tensor, --frames not 4k + 1) before the model loads.
  const requestOf = (prompt: number, steps: number) => {
    const inputs = promptInputs(prompts, prompt);
    try {
      return { inputs, request: family.request(inputs, prompts.file ?? '--prompts', { ...generateWith, steps, seed: settings.seed + prompt }) };
    } catch (e) {
      for (const t of Object.values(inputs)) t.dispose();
      throw asPromptsError(e);
    }
  };
  const first = requestOf(0, settings.steps);
  for (const t of Object.values(first.inputs)) t.dispose();
  const pipe = await family.spawn(run.model, { dtype: settings.dtype, weightDtype: 'float32' });
  try {
    const generate = async (prompt: number, steps: number, onStep?: (step: number) => void): Promise<CliGenerateResult> => {
      const { inputs, request } = requestOf(prompt, steps);
      try {
        return await pipe.generate(request, { onProgress: (p) => onStep?.(p.step) });
      } finally {
        for (const t of Object.values(inputs)) t.dispose();
      }
    };
    // One untimed generation first: the first call pages the weights in and warms the thread pool.
    disposeResult(await generate(0, 2));

    for (const { config, prompt } of pending) {
      const name = config?.name ?? UNCACHED;
      if (config) enableCache(pipe, config.cache);
      try {
        // The fastest of the repeats: the run least disturbed by other work on the machine. Every
        // repeat computes the same image.
        let seconds = Infinity;
        let result: CliGenerateResult | undefined;
        for (let repeat = 0; repeat < settings.repeats; ++repeat) {
          disposeResult(result);
          const t0 = performance.now();
          const before = repeat * settings.steps;
          result = await generate(prompt, settings.steps, (step) =>
            run.onProgress?.({ done, cells, config: name, prompt, step: before + step + 1, steps: cellSteps }),
          );
          seconds = Math.min(seconds, (performance.now() - t0) / 1000);
        }
        const stats = config ? summary(pipe, { print: false }) : undefined;
        try {
          const written = await writeCell(out, name, prompt, result!, family, generateWith);
          const record: CellRecord = {
            config: name,
            cache: config?.cache ?? null,
            prompt,
            settings,
            model: run.model,
            inputs: fingerprints[prompt],
            seconds,
            ...cachedStepsOf(stats),
            computedBlocks: stats?.computedBlocks ?? 1,
            totalBlocks: stats?.totalBlocks ?? 1,
            flopsSkippedFraction: stats?.flopsSkippedFraction ?? 0,
            ...attentionOf(stats),
            ...(config?.keepSummary && stats ? { summary: stats } : {}),
            ...written,
          };
          // The record goes last: a cell counts as finished only once its picture is on disk.
          writeTextAtomically(cellPaths(out, name, prompt).record, `${JSON.stringify(record, null, 2)}\n`);
          records.get(name)!.push(record);
        } finally {
          disposeResult(result);
        }
      } finally {
        if (config) disableCache(pipe);
      }
      done += 1;
      run.onProgress?.({ done, cells, config: name, prompt, step: 0, steps: cellSteps });
    }
  } finally {
    await pipe.close();
  }
  for (const list of records.values()) list.sort((a, b) => a.prompt - b.prompt);
  return records;
}

/**
 * Writes a cell's picture: an image as PNG; a video as the family writes it for `generate`
 * (its first output format) with every frame as a PNG beside it, which the metrics read.
 */
async function writeCell(
  out: string,
  config: string,
  prompt: number,
  result: CliGenerateResult,
  family: CliFamily,
  settings: CliGenerateSettings,
): Promise<Pick<CellRecord, 'frames' | 'format'>> {
  mkdirSync(join(out, config), { recursive: true });
  if (result.video) {
    const format = family.outputFormats[0];
    const paths = cellPaths(out, config, prompt, format);
    // The frames of an earlier run of this cell (other frames, say) must not mix with these.
    rmSync(paths.frames, { recursive: true, force: true });
    await family.writeOutput(result, paths.image, settings);
    // A family whose writeOutput leaves no frames beside the animation: the bench writes them.
    if (!existsSync(paths.frames)) await savePngFrames(result.video, paths.frames);
    return { frames: result.video.shape[1], format };
  }
  if (!result.image) throw new Error(`the ${family.label} pipeline returned neither an image nor a video`);
  writeFileSync(cellPaths(out, config, prompt).image, await encodePng(toImage8(result.image)));
  return {};
}
