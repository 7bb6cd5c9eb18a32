// The `ditcache` command line.
import { Command, InvalidArgumentError, Option } from 'commander';

import { saveSafetensors, type Tensor } from '@ditcache/cuda-runtime';
import type { ComputeDtype } from '@ditcache/diffusion';
import type { CliFamily, CliTransformer } from '@ditcache/diffusion/cli';

import { adapterOption, registerAdapters } from './adapters-command.js';
import { registerBench } from './bench/command.js';
import { registerEncodePrompt } from './encode-prompt.js';
import { UsageError } from './errors.js';
import { generate, loadInputs, type GenerateFlags } from './generate.js';
import { componentClassOf } from './model-folder.js';
import { checkOutputs, ensureParent, writeTextAtomically } from './outputs.js';
import { dtypeOption, loadOptions, weightDtypeOption } from './load-options.js';
import { familyFor, loadFamilies } from './plugins.js';
import { cliVersion } from './version.js';

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
