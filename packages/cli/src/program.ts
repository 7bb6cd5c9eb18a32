// The `ditcache` command line.
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { performance } from 'node:perf_hooks';

import { Command, InvalidArgumentError, Option } from 'commander';

import { enableCache, summary, type ContextStats } from '@ditcache/core';
import { loadSafetensors, saveSafetensors, type Tensor } from '@ditcache/cuda-runtime';
import type { ComputeDtype } from '@ditcache/diffusion';
import { FAMILY_FLAGS, type CliFamily, type CliGenerateResult, type CliGenerateSettings, type CliTransformer } from '@ditcache/diffusion/cli';

import { adapterOption, registerAdapters } from './adapters-command.js';
import { registerBench } from './bench/command.js';
import { registerEncodePrompt } from './encode-prompt.js';
import { checkCacheFitsModel, resolveCacheSpec } from './cache-spec.js';
import { UsageError } from './errors.js';
import { componentClassOf } from './model-folder.js';
import { checkOutputs, ensureParent, numberedPaths, writeAtomically, writeTextAtomically } from './outputs.js';
import { dtypeOption, loadOptions, weightDtypeOption } from './load-options.js';
import { familyFor, familyForPipeline, loadFamilies } from './plugins.js';
import { stepProgress } from './progress.js';

/** Flags only some families take: naming one the family does not take is a usage error, not silently ignored. */
function refuseForeignFlags(family: CliFamily, settings: CliGenerateSettings): void {
  const flag = (n: string) => `--${n.replace(/[A-Z0-9]/g, (c) => `-${c.toLowerCase()}`)}`;
  for (const n of FAMILY_FLAGS) if (settings[n] !== undefined && !family.flags.includes(n)) throw new UsageError(`${flag(n)} does not apply to ${family.label}`);
}

// Decimal digits only: Number() would also take '', ' ', '1e3' and '0x10'.
const positiveInt = (flag: string) => (v: string): number => {
  const n = Number(v);
  if (!/^\s*\d+\s*$/.test(v) || !Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`${flag} must be a positive integer`);
  return n;
};
const nonNegativeInt = (flag: string) => (v: string): number => {
  const n = Number(v);
  if (!/^\s*\d+\s*$/.test(v) || !Number.isSafeInteger(n)) throw new InvalidArgumentError(`${flag} must be a non-negative integer (at most 2^53 - 1)`);
  return n;
};
const finite = (flag: string) => (v: string): number => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`${flag} must be a number`);
  return n;
};

function loadInputs(path: string): Record<string, Tensor> {
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
  };
}

interface GenerateFlags extends CliGenerateSettings {
  model: string;
  dtype: ComputeDtype;
  weightDtype: 'float32' | 'stored';
  adapter: string[];
  inputs?: string;
  cache?: string;
  output?: string;
  saveLatents?: string;
  stats?: string;
  force: boolean;
}

async function generate(flags: GenerateFlags): Promise<void> {
  const family = familyForPipeline(await loadFamilies(flags.adapter), flags.model);
  refuseForeignFlags(family, flags);
  family.checkModel?.(flags.model, flags);
  if (flags.output && !family.outputFormats.includes(extname(flags.output).toLowerCase())) {
    throw new UsageError(`--output ${flags.output}: ${family.label} writes ${family.outputFormats.join(' or ')} files`);
  }
  const cache = flags.cache === undefined ? undefined : resolveCacheSpec(flags.cache);
  const chains = cache === undefined ? undefined : family.cacheChains?.(flags.model);
  if (cache !== undefined && chains) checkCacheFitsModel(cache, chains);
  const inputs: Record<string, Tensor> = flags.inputs === undefined ? {} : loadInputs(flags.inputs);
  const request = family.request(inputs, flags.inputs, flags);
  if (!flags.output && !flags.saveLatents && !flags.stats) {
    throw new UsageError('nothing to write: give --output FILE (the image or video), --save-latents FILE (the final latents) or --stats FILE (the cache statistics)');
  }
  // P prompts make P images: --output becomes P numbered files, each checked now.
  const batch = family.batchSize?.(request) ?? 1;
  const outputs = flags.output === undefined ? [] : numberedPaths(flags.output, batch);
  checkOutputs([...outputs.map((p) => ['--output', p] as const), ['--save-latents', flags.saveLatents], ['--stats', flags.stats]], flags.force);
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
    if (flags.output) await writeOutputs(family, result, flags, outputs);
    if (flags.saveLatents) {
      ensureParent(flags.saveLatents);
      saveSafetensors(flags.saveLatents, { latents_out: result.latents });
    }
    const stats = cache === undefined ? undefined : summary(pipe, { print: false });
    if (flags.stats) writeTextAtomically(flags.stats, `${JSON.stringify((stats?.contexts ?? []).map(statsRecord), null, 2)}\n`);
    process.stderr.write(`generated in ${seconds.toFixed(2)} s${stats ? `, ${stats.cachedSteps} cached steps, ${stats.computedBlocks}/${stats.totalBlocks} blocks computed` : ''}\n`);
    if (stats) process.stderr.write(`${stats.markdown}\n`);
    for (const t of [result.latents, result.image, result.video]) t?.dispose();
  } finally {
    bar.stop();
    process.off('SIGINT', onSigint);
    for (const t of Object.values(inputs)) t.dispose();
    await pipe.close();
  }
}

/** Image (video) `index` of a result, as a result of batch 1 (views: the caller disposes them). */
function resultItem(result: CliGenerateResult, index: number): CliGenerateResult {
  return {
    latents: result.latents.narrow(0, index, 1),
    image: result.image ? result.image.narrow(0, index, 1) : result.image,
    video: result.video ? result.video.narrow(0, index, 1) : result.video,
  };
}

/** Writes each image (video) of the result to its --output file through the family, atomically. */
async function writeOutputs(family: CliFamily, result: CliGenerateResult, flags: GenerateFlags, planned: string[]): Promise<void> {
  const count = (result.image ?? result.video ?? result.latents).shape[0];
  let paths = planned;
  if (count !== planned.length) {
    // A family without batchSize(): the numbered files are known only now.
    paths = numberedPaths(flags.output as string, count);
    checkOutputs(paths.map((p) => ['--output', p] as const), flags.force);
    process.stderr.write(`ditcache: the pipeline made ${count} ${result.video ? 'videos' : 'images'}; --output writes ${paths.join(', ')}\n`);
  }
  for (let i = 0; i < count; ++i) {
    const item = count === 1 ? result : resultItem(result, i);
    try {
      await writeAtomically(paths[i], (tmp) => family.writeOutput(item, tmp, flags), flags.force);
    } finally {
      if (item !== result) for (const t of [item.latents, item.image, item.video]) t?.dispose();
    }
  }
}

interface ForwardFlags {
  model: string;
  adapter: string[];
  inputs: string;
  out?: string;
  dtype: ComputeDtype;
  weightDtype: 'float32' | 'stored';
  repeat: number;
  timings?: string;
  force: boolean;
}

/**
 * The family's transformer for `forward`; a family with only the older `forward()` gets a
 * wrapper, and the flags it cannot serve (load options, repeated calls) are refused.
 */
function forwardTransformer(family: CliFamily, flags: ForwardFlags): CliTransformer {
  if (family.loadTransformer) return family.loadTransformer(flags.model, loadOptions(flags));
  const legacy = family.forward;
  if (!legacy) throw new UsageError(`the ${family.label} CLI plugin has no loadTransformer(): it cannot run ditcache forward`);
  const unsupported = [
    ...(flags.dtype !== 'float32' ? ['--dtype'] : []),
    ...(flags.weightDtype !== 'float32' ? ['--weight-dtype'] : []),
    ...(flags.repeat !== 1 ? ['--repeat'] : []),
    ...(flags.timings !== undefined ? ['--timings'] : []),
  ];
  if (unsupported.length) {
    throw new UsageError(`${unsupported.join(', ')}: the ${family.label} CLI plugin implements only the older forward(), without load options or repeated calls (it needs loadTransformer())`);
  }
  return { forward: (inputs, file) => legacy(flags.model, inputs, file), [Symbol.dispose]: () => {} };
}

async function forward(flags: ForwardFlags): Promise<void> {
  if (flags.out === undefined && flags.timings === undefined) throw new UsageError('--out or --timings is required: where to write `sample`, or the call times');
  const families = await loadFamilies(flags.adapter);
  const family = familyFor(families, 'transformerClasses', componentClassOf(flags.model));
  checkOutputs([['--out', flags.out], ['--timings', flags.timings]], flags.force);
  const inputs = loadInputs(flags.inputs);
  try {
    using transformer = forwardTransformer(family, flags);
    // Each call timed on its own, the load excluded; the last call's sample is written.
    const seconds: number[] = [];
    let sample: Tensor | undefined;
    for (let call = 0; call < flags.repeat; ++call) {
      sample?.dispose();
      const t0 = performance.now();
      sample = transformer.forward(inputs, flags.inputs);
      seconds.push((performance.now() - t0) / 1000);
    }
    if (flags.out) {
      ensureParent(flags.out);
      saveSafetensors(flags.out, { sample: sample! });
    }
    sample!.dispose();
    if (flags.timings) writeTextAtomically(flags.timings, `${JSON.stringify({ seconds })}\n`);
  } finally {
    for (const t of Object.values(inputs)) t.dispose();
  }
}

/** This package's version, from its package.json (one level above src/ and dist/). */
function cliVersion(): string {
  return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf-8')) as { version: string }).version;
}

export function buildProgram(): Command {
  const program = new Command('ditcache')
    .description('Diffusion transformers in Node.js, accelerated by caching')
    .version(cliVersion(), '-V, --version', 'print the version of @ditcache/cli')
    .showHelpAfterError('(run with --help for usage)');

  program
    .command('generate')
    .description('run a pipeline, with or without caching')
    .requiredOption('--model <dir>', 'a diffusers-format model folder')
    .addOption(adapterOption())
    .option('--inputs <file>', 'safetensors with prompt embeddings and / or latents_in, as in the goldens\' pipeline.safetensors')
    .option('--prompt <text>', 'FLUX.1, Wan: the prompt, encoded by the folder\'s text encoders (then --inputs may hold only latents_in)')
    .option('--negative-prompt <text>', 'FLUX.1: the negative prompt of true CFG (with --true-cfg-scale above 1); Wan: of CFG (default "")')
    .option('--max-sequence-length <n>', 'FLUX.1, Wan: T5 / UMT5 tokens of the prompt (default 512; FLUX.1: at most 512)', positiveInt('--max-sequence-length'))
    .option('--height <px>', 'image height', positiveInt('--height'))
    .option('--width <px>', 'image width', positiveInt('--width'))
    .option('--steps <n>', 'denoising steps', positiveInt('--steps'))
    .option('--guidance <g>', 'guidance scale', finite('--guidance'))
    .option('--true-cfg-scale <s>', 'true classifier-free guidance with --negative-prompt or the negative embeddings of --inputs', finite('--true-cfg-scale'))
    .option('--seed <n>', 'seed of the initial noise when --inputs has no latents_in', nonNegativeInt('--seed'))
    .option('--frames <n>', 'Wan: video frames, 4k + 1', positiveInt('--frames'))
    .option('--guidance-2 <g>', 'Wan 2.2: guidance scale of the low-noise expert (transformer_2)', finite('--guidance-2'))
    .option('--fps <n>', 'Wan: frames per second of the animation', positiveInt('--fps'))
    .option('--default-sample-size <n>', 'HiDream: the latent side of the area images are rescaled to (diffusers\' default_sample_size, 128)', positiveInt('--default-sample-size'))
    .addOption(dtypeOption())
    .addOption(weightDtypeOption())
    .option('--cache <spec>', 'a preset (quality, balanced, fast, cache-dit), a JSON / YAML file, or JSON text')
    .option('--output <file>', 'write the image (.png) or the video (.webp / .gif animation, PNG frames beside it)')
    .option('--save-latents <file>', 'write the final latents as latents_out (safetensors)')
    .option('--stats <file>', 'write the cache statistics (JSON, one object per cache context)')
    .option('--force', 'overwrite existing output files', false)
    .action(async (flags: GenerateFlags) => generate(flags));

  program
    .command('forward')
    .description('transformer calls on given inputs; writes `sample` and / or the time of each call')
    .requiredOption('--model <dir>', 'a transformer folder (config.json + safetensors)')
    .addOption(adapterOption())
    .requiredOption('--inputs <file>', 'safetensors with the inputs, named as in the goldens\' transformer_forward.safetensors')
    .option('--out <file>', 'where to write `sample` (of the last call)')
    .addOption(dtypeOption())
    .addOption(weightDtypeOption())
    .option('--repeat <n>', 'calls of the loaded transformer (default 1)', positiveInt('--repeat'), 1)
    .option('--timings <file>', 'write {"seconds": [one per call]} (JSON; the load excluded)')
    .addOption(new Option('--force', 'overwrite existing --out / --timings files').default(false))
    .action(async (flags: ForwardFlags) => forward(flags));

  registerAdapters(program);
  registerBench(program);
  registerEncodePrompt(program);

  return program;
}

/** Runs the CLI; resolves to the exit status. Errors become one line on stderr. */
export async function runCli(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  // Each command, not only the program: a subcommand's bad flag would otherwise exit with 1 on its own.
  for (const command of [program, ...program.commands]) command.exitOverride();
  try {
    await program.parseAsync([...argv]);
    return 0;
  } catch (e) {
    // `code` is commander's string, or another error's own (an AbortError's DOMException code is the number 20).
    const err = e as Error & { code?: unknown; exitCode?: number };
    // Bad flags commander found (a missing or unknown option, a value its parser refused) are usage errors too; --help exits 0.
    if (typeof err.code === 'string' && err.code.startsWith('commander.')) return err.exitCode === 0 ? 0 : 2;
    if (err.name === 'AbortError') {
      process.stderr.write('ditcache: interrupted\n');
      return 130;
    }
    // A cache config that does not fit the model (found when caching is enabled) is a usage error too, listing the valid keys on the same line.
    if (err.name === 'CacheConfigError') {
      process.stderr.write(`ditcache: --cache: ${err.message.split('\n').join(' ')}\n`);
      return 2;
    }
    process.stderr.write(`ditcache: ${err.message.split('\n')[0]}\n`);
    // By name rather than instanceof: a plugin may bring its own copy of the class.
    return err.name === 'UsageError' ? 2 : 1;
  }
}
