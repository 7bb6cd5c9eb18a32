// `ditcache tune`: the command line of tune(), with progress and a line per config on stderr.
import type { Command } from 'commander';

import type { ComputeDtype } from '@ditcache/diffusion';

import { adapterOption } from '../adapters-command.js';
import { withoutTextOptions } from '../bench/settings.js';
import { addFamilyOptions, familyFlagsGiven } from '../family-options.js';
import { dtypeOption } from '../load-options.js';
import { finite, nonNegativeInt, positiveInt } from '../parsers.js';
import { familiesFor, type ProgramFamilies } from '../plugins.js';
import { psnrText } from './outputs.js';
import { tune } from './tune.js';

interface TuneFlags {
  model: string;
  prompts: string;
  targetPsnr: number;
  policies?: string[];
  out: string;
  steps?: number;
  height?: number;
  width?: number;
  guidance?: number;
  adapter: string[];
  seed: number;
  holdoutSeed?: number;
  repeats: number;
  evaluations: number;
  dtype: ComputeDtype;
}

/** `--policies dbcache,scm` or repeated flags. */
const policyList = (value: string, previous: string[] | undefined): string[] => [
  ...(previous ?? []),
  ...value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
];

/** Adds the `tune` command to the program, with the options of the families `loaded` holds (as bench has them). */
export function registerTune(program: Command, loaded?: ProgramFamilies): void {
  const command = program
    .command('tune')
    .description('find the fastest cache config whose PSNR vs uncached keeps a target; checks it on held-out seeds, writes best.yaml (resumable)')
    .requiredOption('--model <dir>', 'a diffusers-format pipeline folder of a family the CLI runs (as bench)')
    .addOption(adapterOption())
    .requiredOption('--prompts <file>', "safetensors with the tensors the family's --inputs takes, one row per prompt (as bench), without latents_in")
    .requiredOption('--target-psnr <dB>', 'the mean PSNR against the uncached images the pick must keep on the tuning prompts', finite('--target-psnr'))
    .option('--policies <names>', 'cache policies to search, comma-separated (default: every registered policy with tuning hints)', policyList)
    .option('--out <dir>', 'where cells, best.yaml, results.md / .json and the plots go; finished cells there are not run again', 'tune-out')
    .option('--steps <n>', "denoising steps (default: the prompts file's, else the model folder's, else 28)", positiveInt('--steps'))
    .option('--height <px>', "image height (default: the prompts file's)", positiveInt('--height'))
    .option('--width <px>', "image width (default: the prompts file's)", positiveInt('--width'))
    .option('--guidance <g>', "guidance scale (default: the prompts file's, the model folder's, else the pipeline's)", finite('--guidance'))
    .option('--seed <n>', 'tuning prompt i starts from the noise of seed + i', nonNegativeInt('--seed'), 0)
    .option('--holdout-seed <n>', 'held-out prompt i starts from the noise of holdout-seed + i (default: seed + 1000)', nonNegativeInt('--holdout-seed'))
    .option('--repeats <n>', 'generations per cell; the fastest is kept (steadier timings on a busy machine)', positiveInt('--repeats'), 1)
    .option('--evaluations <n>', 'configs evaluated per policy variant at most, both ends of its knob included (default 8)', positiveInt('--evaluations'), 8)
    .addOption(dtypeOption());
  const familyFlags = addFamilyOptions(command, loaded?.families.loaded.map((p) => withoutTextOptions(p.family)) ?? []);
  command.action(async (flags: TuneFlags & Record<string, unknown>) => {
    const given = familyFlagsGiven(flags, familyFlags);
    const result = await tune({
      model: flags.model,
      prompts: flags.prompts,
      targetPsnr: flags.targetPsnr,
      policies: flags.policies,
      out: flags.out,
      steps: flags.steps,
      height: flags.height,
      width: flags.width,
      guidance: flags.guidance,
      adapter: flags.adapter,
      families: await familiesFor(loaded, flags.adapter),
      familyFlags: given,
      seed: flags.seed,
      holdoutSeed: flags.holdoutSeed,
      repeats: flags.repeats,
      evaluationsPerVariant: flags.evaluations,
      dtype: flags.dtype,
      log: (line) => process.stderr.write(`${line}\n`),
    });
    const { pick, heldOut, files } = result;
    const { timed, heldOut: held } = heldOut[0];
    process.stdout.write(
      `pick: ${pick.name}: ${psnrText(pick.measured)} at ${timed.speedup.toFixed(2)}x on the tuning prompts, ` +
        `${psnrText(held)} at ${held.speedup.toFixed(2)}x held out\n` +
        `wrote ${files.best}, ${files.table}, ${files.json} and ${Object.values(files.plots).join(', ')}\n`,
    );
  });
}
