// `ditcache generate`: checks the flags, the inputs and the outputs before any work, runs the
// family's pipeline in a worker (Ctrl-C stops it at the next step), and writes the results.
import { readFileSync, writeFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { cachePreset, enableCache, magCacheCalibration, magCacheConfigFromCalibration, summary, type CacheSummary, type ContextStats } from '@ditcache/core';
import { loadSafetensors, saveSafetensors, type Tensor } from '@ditcache/cuda-runtime';
import { PIPELINE_DEFAULTS_FILE, readPipelineDefaults, type ComputeDtype, type PipelineDefaults } from '@ditcache/diffusion';
import type { CliFamily, CliGenerateResult, CliGenerateSettings } from '@ditcache/diffusion/cli';

import { checkCacheFitsModel, resolveCacheSpec } from './cache-spec.js';
import { UsageError } from './errors.js';
import { familyOptions, familySettings, optionFilling } from './family-options.js';
import { loadOptions } from './load-options.js';
import { checkOutputs, ensureParent, numberedPaths, writeAtomically, writeTextAtomically } from './outputs.js';
import { familyForPipeline, type Families } from './plugins.js';
import { addPngText } from './png-text.js';
import { stepProgress } from './progress.js';
import { cliVersion } from './version.js';

/** The tensors of the --inputs file; one that does not load is a usage error. */
export function loadInputs(path: string): Record<string, Tensor> {
  try {
    return loadSafetensors(path);
  } catch (e) {
    throw new UsageError(`--inputs: ${(e as Error).message}`);
  }
}

/**
 * A context's name in diffusers' (and cache-dit's) attribute names, e.g. 'transformer2.blocks'
 * -> 'transformer_2.blocks', 'transformer.doubleStreamBlocks' -> 'transformer.double_stream_blocks'.
 */
export function diffusersName(name: string): string {
  return name.replace(/([a-z])([A-Z0-9])/g, (_, a: string, b: string) => `${a}_${b.toLowerCase()}`);
}

/** The --stats record of one cache context. */
function statsRecord(c: ContextStats): Record<string, unknown> {
  return {
    name: diffusersName(c.name),
    firstPipelineStep: c.firstPipelineStep ?? null,
    cachedSteps: c.cachedSteps,
    residualDiffs: c.residualDiffs,
    cfgCachedSteps: c.cfgCachedSteps,
    cfgResidualDiffs: c.cfgResidualDiffs,
    computedBlocks: c.computedBlocks,
    totalBlocks: c.totalBlocks,
    ...prunedBlocksRecord(c),
    // Under a policy that skips attention calls (pab, fastercache): per site kind, calls and skipped calls.
    ...(c.attention ? { attentionCalls: c.attention.kinds } : {}),
  };
}

/** Under a policy that prunes single blocks (dbprune), each step's pruned blocks, per branch as cache-dit names them. */
function prunedBlocksRecord(c: ContextStats): Record<string, unknown> {
  const of = (role: 'main' | 'cfg') => c.branches.find((b) => b.role === role)?.prunedBlocks;
  if (of('main') === undefined && of('cfg') === undefined) return {};
  return { prunedBlocks: of('main') ?? {}, cfgPrunedBlocks: of('cfg') ?? {} };
}

export interface GenerateFlags extends CliGenerateSettings {
  model: string;
  dtype: ComputeDtype;
  weightDtype: 'float32' | 'stored';
  adapter: string[];
  inputs?: string;
  cache?: string;
  /** Where to write the MagCache config that a calibration run (this one) gives. */
  magcacheCalibration?: string;
  output?: string;
  saveLatents?: string;
  stats?: string;
  force: boolean;
}

/**
 * The settings the folder's ditcache.json gives where no flag does (flags win), each with the
 * flag it stands for: the family settings only where the family has an option filling them, the
 * maximum sequence length only for a text prompt, the one thing it applies to.
 */
function folderSettings(family: CliFamily, flags: CliGenerateSettings, defaults: PipelineDefaults): [setting: string, flag: string, value: number][] {
  const out: [string, string, number][] = [];
  const take = (setting: keyof CliGenerateSettings, flag: string | undefined, value: number | undefined, applies = true): void => {
    if (applies && flag !== undefined && value !== undefined && flags[setting] === undefined) out.push([setting, flag, value]);
  };
  take('height', '--height', defaults.height);
  take('width', '--width', defaults.width);
  take('steps', '--steps', defaults.numInferenceSteps);
  take('guidance', '--guidance', defaults.guidanceScale);
  const familyFlag = (setting: keyof CliGenerateSettings) => optionFilling(family, setting)?.flag;
  take('maxSequenceLength', familyFlag('maxSequenceLength'), defaults.maxSequenceLength, flags.prompt !== undefined || flags.negativePrompt !== undefined);
  take('frames', familyFlag('frames'), defaults.numFrames);
  take('fps', familyFlag('fps'), defaults.fps);
  return out;
}

/** `settings` with what the folder's ditcache.json recommends where they leave a setting out (flags win), said on stderr. */
export function withFolderSettings<T extends CliGenerateSettings>(family: CliFamily, settings: T, model: string): T {
  const fromFolder = folderSettings(family, settings, readPipelineDefaults(model));
  if (fromFolder.length) {
    const listed = fromFolder.map(([, flag, value]) => `${flag} ${value}`).join(' ');
    process.stderr.write(`ditcache: ${join(model, PIPELINE_DEFAULTS_FILE)} gives ${listed}\n`);
  }
  return { ...settings, ...Object.fromEntries(fromFolder.map(([setting, , value]) => [setting, value])) };
}

/**
 * Runs `generate`: `given` holds the flags every family takes, `familyFlags` the values of the
 * families' own flags (by flag), which become the settings the running family's options fill;
 * a flag it does not declare is a usage error.
 */
export async function generate(given: GenerateFlags, families: Families, familyFlags: ReadonlyMap<string, string | number> = new Map()): Promise<void> {
  const family = familyForPipeline(families, given.model);
  const flags = withFolderSettings(family, { ...given, ...familySettings(family, familyFlags) }, given.model);
  family.checkModel?.(flags.model, flags);
  if (flags.output && !family.outputFormats.includes(extname(flags.output).toLowerCase())) {
    throw new UsageError(`--output ${flags.output}: ${family.label} writes ${family.outputFormats.join(' or ')} files`);
  }
  if (flags.magcacheCalibration !== undefined && flags.cache !== undefined) {
    throw new UsageError('--magcache-calibration runs its own cache config (MagCache calibrating, every step computed): leave out --cache');
  }
  const cacheSpec = flags.magcacheCalibration === undefined ? flags.cache : MAGCACHE_CALIBRATION;
  const cache = cacheSpec === undefined ? undefined : resolveCacheSpec(cacheSpec);
  const chains = cache === undefined ? undefined : family.cacheChains?.(flags.model);
  if (cache !== undefined && chains) checkCacheFitsModel(cache, chains);
  const inputs: Record<string, Tensor> = flags.inputs === undefined ? {} : loadInputs(flags.inputs);
  const request = family.request(inputs, flags.inputs, flags);
  if (!flags.output && !flags.saveLatents && !flags.stats && !flags.magcacheCalibration) {
    throw new UsageError(
      'nothing to write: give --output FILE (the image or video), --save-latents FILE (the final latents), --stats FILE (the cache statistics) or --magcache-calibration FILE (MagCache ratios)',
    );
  }
  // P prompts make P images: --output becomes P numbered files, each checked now.
  const batch = family.batchSize?.(request) ?? 1;
  const outputs = flags.output === undefined ? [] : numberedPaths(flags.output, batch);
  checkOutputs(
    [
      ...outputs.map((p) => ['--output', p] as const),
      ['--save-latents', flags.saveLatents],
      ['--stats', flags.stats],
      ['--magcache-calibration', flags.magcacheCalibration],
    ],
    flags.force,
  );
  if (outputs.length > 1) process.stderr.write(`ditcache: --inputs holds ${batch} prompts; --output writes ${outputs.join(', ')}\n`);

  const pipe = await family.spawn(flags.model, loadOptions(flags));
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once('SIGINT', onSigint);
  const bar = stepProgress(`${family.label}${cache === undefined ? '' : ' (cached)'}`);
  try {
    if (cache !== undefined) enableCache(pipe, cache);
    const t0 = performance.now();
    const result = await pipe.generate(request, { signal: controller.signal, onProgress: (p) => bar.update(p.step + 1, p.numSteps) });
    bar.stop();
    const seconds = (performance.now() - t0) / 1000;
    const seed = result.seed;
    if (seed !== undefined) process.stderr.write(seed === null ? 'ditcache: the initial noise is latents_in of --inputs\n' : `ditcache: seed ${seed}\n`);
    if (flags.output) await writeOutputs(family, result, flags, outputs, (index, count) => imageText(family, flags, cache, result, index, count));
    if (flags.saveLatents) {
      ensureParent(flags.saveLatents);
      saveSafetensors(flags.saveLatents, { latents_out: result.latents });
    }
    const stats = cache === undefined ? undefined : summary(pipe, { print: false });
    if (flags.stats) writeTextAtomically(flags.stats, `${JSON.stringify((stats?.contexts ?? []).map(statsRecord), null, 2)}\n`);
    if (flags.magcacheCalibration && stats) writeMagCacheCalibration(flags.magcacheCalibration, stats);
    process.stderr.write(
      `generated in ${seconds.toFixed(2)} s${stats ? `, ${stats.cachedSteps} cached steps, ${stats.computedBlocks}/${stats.totalBlocks} blocks computed` : ''}\n`,
    );
    if (stats) process.stderr.write(`${stats.markdown}\n`);
    for (const t of [result.latents, result.image, result.video]) t?.dispose();
  } finally {
    bar.stop();
    process.off('SIGINT', onSigint);
    for (const t of Object.values(inputs)) t.dispose();
    await pipe.close();
  }
}

/** The cache config of a --magcache-calibration run: MagCache recording the ratios, skipping nothing. */
const MAGCACHE_CALIBRATION = JSON.stringify({ policy: 'magcache', calibrate: true });

/** Writes the config that uses the ratios a calibration run recorded, loadable with --cache FILE. */
function writeMagCacheCalibration(path: string, stats: CacheSummary): void {
  const config = magCacheConfigFromCalibration(magCacheCalibration(stats));
  writeTextAtomically(path, `${JSON.stringify(config, null, 2)}\n`);
  process.stderr.write(`ditcache: MagCache ratios written to ${path}; run with --cache ${path} to use them\n`);
}

/** Image (video) `index` of a result, as a result of batch 1 (views: the caller disposes them). */
function resultItem(result: CliGenerateResult, index: number): CliGenerateResult {
  return {
    latents: result.latents.narrow(0, index, 1),
    image: result.image ? result.image.narrow(0, index, 1) : result.image,
    video: result.video ? result.video.narrow(0, index, 1) : result.video,
  };
}

/** The family settings imageText names itself (videos carry no text: frames and fps are left out). */
const NAMED_TEXT = { prompt: 1, negativePrompt: 1, guidance2: 1, trueCfgScale: 1, maxSequenceLength: 1, defaultSampleSize: 1, frames: 1, fps: 1 };

/**
 * What a PNG says of how it was made, as text chunks: enough to make it again (the model, the
 * prompt or the --inputs file, the seed, steps, size, guidance, dtype and cache config).
 */
function imageText(
  family: CliFamily,
  flags: GenerateFlags,
  cache: ReturnType<typeof resolveCacheSpec> | undefined,
  result: CliGenerateResult,
  index: number,
  count: number,
): Record<string, string> {
  const image = result.image ?? result.video;
  const text: Record<string, string | number | undefined> = {
    Software: `ditcache ${cliVersion()}`,
    model: flags.model,
    family: family.label,
    prompt: flags.prompt,
    negative_prompt: flags.negativePrompt,
    inputs: flags.inputs,
    batch_index: count > 1 ? index : undefined,
    batch_size: count > 1 ? count : undefined,
    seed: result.seed === null ? 'latents_in' : (result.seed ?? flags.seed),
    steps: flags.steps ?? result.timesteps?.length,
    height: image ? image.shape[image.rank - 3] : flags.height,
    width: image ? image.shape[image.rank - 2] : flags.width,
    guidance: flags.guidance ?? 'default',
    guidance_2: flags.guidance2,
    true_cfg_scale: flags.trueCfgScale,
    max_sequence_length: flags.maxSequenceLength,
    default_sample_size: flags.defaultSampleSize,
    dtype: flags.dtype,
    weight_dtype: flags.weightDtype === 'stored' ? 'stored' : undefined,
    // A preset by its name; a file or inline text as the config it holds.
    cache: flags.cache === undefined ? 'none' : cachePreset(flags.cache) ? flags.cache : String(cache).trim(),
  };
  // Then the settings of options named above by no key (a plugin's own), under their names in snake_case.
  for (const { setting } of familyOptions(family)) {
    const key = diffusersName(setting);
    if (!(setting in NAMED_TEXT) && !(key in text)) text[key] = (flags as unknown as Record<string, unknown>)[setting] as string | number | undefined;
  }
  return Object.fromEntries(
    Object.entries(text)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => [k, String(v)]),
  );
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Adds the text chunks to a PNG file the family wrote (other formats are left as they are). */
function addTextToPng(path: string, text: Record<string, string>): void {
  const bytes = readFileSync(path);
  if (bytes.subarray(0, 8).equals(PNG_SIGNATURE)) writeFileSync(path, addPngText(bytes, text));
}

/** Writes each image (video) of the result to its --output file through the family, atomically, PNGs with `text(index, count)`. */
async function writeOutputs(
  family: CliFamily,
  result: CliGenerateResult,
  flags: GenerateFlags,
  planned: string[],
  text: (index: number, count: number) => Record<string, string>,
): Promise<void> {
  const count = (result.image ?? result.video ?? result.latents).shape[0];
  let paths = planned;
  if (count !== planned.length) {
    // A family without batchSize(): the numbered files are known only now.
    paths = numberedPaths(flags.output as string, count);
    checkOutputs(
      paths.map((p) => ['--output', p] as const),
      flags.force,
    );
    process.stderr.write(`ditcache: the pipeline made ${count} ${result.video ? 'videos' : 'images'}; --output writes ${paths.join(', ')}\n`);
  }
  for (let i = 0; i < count; ++i) {
    const item = count === 1 ? result : resultItem(result, i);
    try {
      await writeAtomically(
        paths[i],
        async (tmp) => {
          await family.writeOutput(item, tmp, flags);
          addTextToPng(tmp, text(i, count));
        },
        flags.force,
      );
    } finally {
      if (item !== result) for (const t of [item.latents, item.image, item.video]) t?.dispose();
    }
  }
}
