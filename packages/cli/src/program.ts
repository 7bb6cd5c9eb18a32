// The `ditcache` command line.
import { Command, Option } from 'commander';

import { saveSafetensors, type Tensor } from '@ditcache/cuda-runtime';
import type { ComputeDtype } from '@ditcache/diffusion';
import type { CliFamily, CliTransformer } from '@ditcache/diffusion/cli';

import { adapterOption, registerAdapters } from './adapters-command.js';
import { registerBench } from './bench/command.js';
import { registerEncodePrompt } from './encode-prompt.js';
import { UsageError } from './errors.js';
import { addFamilyOptions, familyFlagsGiven } from './family-options.js';
import { generate, loadInputs, type GenerateFlags } from './generate.js';
import { componentClassOf } from './model-folder.js';
import { checkOutputs, ensureParent, writeTextAtomically } from './outputs.js';
import { dtypeOption, loadOptions, weightDtypeOption } from './load-options.js';
import { finite, nonNegativeInt, positiveInt } from './parsers.js';
import { familiesFor, familyFor, loadFamilies, type Families, type ProgramFamilies } from './plugins.js';
import { registerServe } from './serve-command.js';
import { registerTune } from './tune/command.js';
import { cliVersion } from './version.js';

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
    throw new UsageError(
      `${unsupported.join(', ')}: the ${family.label} CLI plugin implements only the older forward(), without load options or repeated calls (it needs loadTransformer())`,
    );
  }
  return { forward: (inputs, file) => legacy(flags.model, inputs, file), [Symbol.dispose]: () => {} };
}

async function forward(flags: ForwardFlags): Promise<void> {
  if (flags.out === undefined && flags.timings === undefined)
    throw new UsageError('--out or --timings is required: where to write `sample`, or the call times');
  const families = await loadFamilies(flags.adapter);
  const family = familyFor(families, 'transformerClasses', componentClassOf(flags.model));
  checkOutputs(
    [
      ['--out', flags.out],
      ['--timings', flags.timings],
    ],
    flags.force,
  );
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

export type { ProgramFamilies } from './plugins.js';

/** What --output may be, per family (grouped by formats), for its help: ' (FLUX.1, HiDream-I1: .png; Wan: .webp, .gif)'. */
function outputFormatsHelp(families: Families | undefined): string {
  const groups = new Map<string, string[]>();
  for (const { family } of families?.loaded ?? []) {
    const formats = family.outputFormats.join(', ');
    groups.set(formats, [...(groups.get(formats) ?? []), family.label]);
  }
  return groups.size ? ` (${[...groups].map(([formats, labels]) => `${labels.join(', ')}: ${formats}`).join('; ')})` : '';
}

/**
 * The `ditcache` program. `generate` takes the options the families of `loaded` declare
 * (runCli loads the families first, with the --adapter values of the command line); without
 * them it takes only the flags every family takes, and loads the families when it runs.
 */
export function buildProgram(loaded?: ProgramFamilies): Command {
  const program = new Command('ditcache')
    .description('Diffusion transformers in Node.js, accelerated by caching')
    .version(cliVersion(), '-V, --version', 'print the version of @ditcache/cli')
    .showHelpAfterError('(run with --help for usage)');

  const generateCommand = program
    .command('generate')
    .description('run a pipeline, with or without caching')
    .requiredOption('--model <dir>', 'a diffusers-format model folder')
    .addOption(adapterOption())
    .option('--inputs <file>', "safetensors with prompt embeddings and / or latents_in, as in the goldens' pipeline.safetensors")
    .option('--height <px>', 'image height', positiveInt('--height'))
    .option('--width <px>', 'image width', positiveInt('--width'))
    .option('--steps <n>', 'denoising steps', positiveInt('--steps'))
    .option('--guidance <g>', 'guidance scale', finite('--guidance'))
    .option('--seed <n>', 'seed of the initial noise when --inputs has no latents_in', nonNegativeInt('--seed'))
    .addOption(dtypeOption())
    .addOption(weightDtypeOption())
    .option('--cache <spec>', 'a preset (quality, balanced, fast, cache-dit), a JSON / YAML file, or JSON text')
    .option('--output <file>', `write the image or the video, in a format of the model's family${outputFormatsHelp(loaded?.families)}`)
    .option('--save-latents <file>', 'write the final latents as latents_out (safetensors)')
    .option('--stats <file>', 'write the cache statistics (JSON, one object per cache context)')
    .option(
      '--magcache-calibration <file>',
      "compute every step while recording the model's MagCache magnitude ratios, and write a --cache config using them (JSON)",
    )
    .option('--force', 'overwrite existing output files', false);
  // The families' own flags, as they declare them; the family that runs refuses the others'.
  const familyOptions = addFamilyOptions(generateCommand, loaded?.families.loaded.map((p) => p.family) ?? []);
  generateCommand.action(async (parsed: GenerateFlags & Record<string, unknown>) => {
    const given = familyFlagsGiven(parsed, familyOptions);
    await generate(parsed, await familiesFor(loaded, parsed.adapter), given);
  });

  program
    .command('forward')
    .description('transformer calls on given inputs; writes `sample` and / or the time of each call')
    .requiredOption('--model <dir>', 'a transformer folder (config.json + safetensors)')
    .addOption(adapterOption())
    .requiredOption('--inputs <file>', "safetensors with the inputs, named as in the goldens' transformer_forward.safetensors")
    .option('--out <file>', 'where to write `sample` (of the last call)')
    .addOption(dtypeOption())
    .addOption(weightDtypeOption())
    .option('--repeat <n>', 'calls of the loaded transformer (default 1)', positiveInt('--repeat'), 1)
    .option('--timings <file>', 'write {"seconds": [one per call]} (JSON; the load excluded)')
    .addOption(new Option('--force', 'overwrite existing --out / --timings files').default(false))
    .action(async (flags: ForwardFlags) => forward(flags));

  registerAdapters(program);
  registerBench(program, loaded);
  registerEncodePrompt(program);
  registerTune(program, loaded);
  registerServe(program);

  return program;
}

/** The commands that take the families' own flags (--frames, --guidance-2, ...). */
const FAMILY_FLAG_COMMANDS = ['generate', 'bench', 'tune'];

/**
 * The --adapter values of a command line that runs `generate`, `bench` or `tune` (or asks for its
 * help), read before commander parses it: their options come from the families these load.
 * Undefined for the other commands, which load families when they run, if at all.
 */
export function generateAdapterSpecs(args: readonly string[]): string[] | undefined {
  // The program's own flags take no value, so its first word is the command.
  const words = args.filter((a) => !a.startsWith('-'));
  const command = words[0] === 'help' ? words[1] : words[0];
  if (!FAMILY_FLAG_COMMANDS.includes(command)) return undefined;
  const specs: string[] = [];
  for (let i = args.indexOf(words[0]) + 1; i < args.length && args[i] !== '--'; ++i) {
    if (args[i] === '--adapter' && i + 1 < args.length) specs.push(args[++i]);
    else if (args[i].startsWith('--adapter=')) specs.push(args[i].slice('--adapter='.length));
  }
  return specs;
}

/** Runs the CLI; resolves to the exit status. Errors become one line on stderr. */
export async function runCli(argv: readonly string[]): Promise<number> {
  try {
    const specs = generateAdapterSpecs(argv.slice(2));
    const program = buildProgram(specs === undefined ? undefined : { specs, families: await loadFamilies(specs) });
    // Each command, not only the program: a subcommand's bad flag would otherwise exit with 1 on its own.
    for (const command of [program, ...program.commands]) command.exitOverride();
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
