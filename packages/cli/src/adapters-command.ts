// `ditcache adapters`: the model families the CLI can run, and where each comes from.
import { Option, type Command } from 'commander';

import { familyOptions } from './family-options.js';
import { loadFamilies, type FailedPlugin, type LoadedPlugin } from './plugins.js';

/** --adapter NAME|PATH, repeatable, for every command that runs a family. */
export function adapterOption(): Option {
  return new Option('--adapter <name|path>', "also load the CLI family of this adapter package (a folder, or an installed package's name); repeatable")
    .argParser((value: string, previous: string[]) => [...previous, value])
    .default([]);
}

/** One plugin as `adapters --json` reports it. */
function record(p: LoadedPlugin | FailedPlugin): Record<string, unknown> {
  const where = { name: p.name, version: p.version, dir: p.dir, module: p.module, explicit: p.explicit };
  if ('error' in p) return { ...where, error: p.error };
  const { label, pipelineClasses, transformerClasses, outputFormats } = p.family;
  const options = familyOptions(p.family);
  // `flags`: as older versions reported them (the settings the options fill), for their readers.
  const flags = p.family.options ? options.map((o) => o.setting) : (p.family.flags ?? []);
  return { ...where, label, pipelineClasses, transformerClasses, options, flags, outputFormats };
}

function describe(p: LoadedPlugin | FailedPlugin): string {
  const origin = `${p.explicit ? 'loaded with --adapter from' : 'found in'} ${p.dir}`;
  if ('error' in p) return `${p.name} ${p.version}: FAILED to load\n  ${p.error}\n  ${origin}`;
  const f = p.family;
  return `${f.label}: ${p.name} ${p.version}\n  pipelines ${f.pipelineClasses.join(', ')}; transformers ${f.transformerClasses.join(', ')}; writes ${f.outputFormats.join(', ')}\n  ${origin}`;
}

/** Adds the `adapters` command to the program. */
export function registerAdapters(program: Command): void {
  program
    .command('adapters')
    .description(
      'list the model families the CLI can run: adapter packages installed beside it that declare "ditcache": { "cli": ... }, and those given with --adapter',
    )
    .addOption(adapterOption())
    .option('--json', 'print a JSON array, one object per adapter package', false)
    .action(async (flags: { adapter: string[]; json: boolean }) => {
      const { loaded, failed } = await loadFamilies(flags.adapter);
      const all = [...loaded, ...failed];
      if (flags.json) process.stdout.write(`${JSON.stringify(all.map(record), null, 2)}\n`);
      else process.stdout.write(all.length ? `${all.map(describe).join('\n')}\n` : 'no adapter packages found\n');
    });
}
