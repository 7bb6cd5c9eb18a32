// Model families come to the CLI as plugins: an adapter package whose package.json says
// `"ditcache": { "cli": "./dist/cli-family.js" }` names a module whose default export is a
// CliFamily (@ditcache/diffusion/cli). The CLI finds such packages in the node_modules folders it
// resolves its own dependencies from, so an adapter installed beside it (the built-in three, or
// a third party's) is found without configuration; --adapter NAME|PATH loads one explicitly.
import { existsSync, readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import type { CliFamily } from '@ditcache/diffusion/cli';

import { UsageError } from './errors.js';
import { optionConflict, optionDeclarationProblems } from './family-options.js';
import { pipelineClassOf } from './model-folder.js';

/** An adapter package that declares a CLI family. */
export interface AdapterPlugin {
  readonly name: string;
  readonly version: string;
  /** The package folder (its real path). */
  readonly dir: string;
  /** The module its `ditcache.cli` field names, as an absolute path. */
  readonly module: string;
  /** Loaded with --adapter rather than found beside the CLI. */
  readonly explicit: boolean;
}

export interface LoadedPlugin extends AdapterPlugin {
  readonly family: CliFamily;
}

export interface FailedPlugin extends AdapterPlugin {
  /** Why its family could not be loaded. */
  readonly error: string;
}

/** The families a command can use: explicit plugins first (they win a model class both claim), then those found beside the CLI. */
export interface Families {
  readonly loaded: readonly LoadedPlugin[];
  /** Plugins found beside the CLI that failed to load; an explicit one that fails is an error instead. */
  readonly failed: readonly FailedPlugin[];
}

/** This package's folder (src/ under tests, dist/ when built: both one level down). */
const cliPackageDir = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The node_modules folders Node.js searches for a package required from `dir`, nearest first. */
function nodeModulesChain(dir: string): string[] {
  const chain: string[] = [];
  for (let d = resolve(dir); ; d = dirname(d)) {
    if (basename(d) !== 'node_modules') chain.push(join(d, 'node_modules'));
    if (dirname(d) === d) return chain;
  }
}

/** The package folders in one node_modules folder, scoped ones included. */
function packageDirs(nodeModules: string): string[] {
  const list = (dir: string) => {
    try {
      return readdirSync(dir).filter((name) => !name.startsWith('.'));
    } catch {
      return [];
    }
  };
  return list(nodeModules).flatMap((name) =>
    name.startsWith('@') ? list(join(nodeModules, name)).map((sub) => join(nodeModules, name, sub)) : [join(nodeModules, name)],
  );
}

/** The plugin a package folder declares, or undefined when it has no `ditcache.cli` field (or no readable package.json). */
function pluginAt(dir: string, explicit: boolean): AdapterPlugin | undefined {
  let manifest: { name?: unknown; version?: unknown; ditcache?: { cli?: unknown } };
  try {
    manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf-8')) as typeof manifest;
  } catch {
    return undefined;
  }
  const cli = manifest.ditcache?.cli;
  if (typeof cli !== 'string') return undefined;
  const real = realpathSync(dir);
  return { name: String(manifest.name ?? basename(real)), version: String(manifest.version ?? ''), dir: real, module: resolve(real, cli), explicit };
}

/** The plugins installed beside the CLI: the packages with a `ditcache.cli` field in its node_modules chain, the nearest of each name. */
export function findInstalledPlugins(): AdapterPlugin[] {
  const found = new Map<string, AdapterPlugin>();
  for (const nodeModules of nodeModulesChain(cliPackageDir)) {
    for (const dir of packageDirs(nodeModules)) {
      const plugin = pluginAt(dir, false);
      if (plugin && !found.has(plugin.name)) found.set(plugin.name, plugin);
    }
  }
  return [...found.values()];
}

/**
 * The plugin --adapter `spec` names: a package folder (absolute, or relative to `cwd`), else an
 * installed package of that name (looked up from `cwd`, then beside the CLI).
 */
export function resolvePluginSpec(spec: string, cwd = process.cwd()): AdapterPlugin {
  const asPath = resolve(cwd, spec);
  const isFolder = existsSync(asPath) && statSync(asPath).isDirectory();
  if (!isFolder && /^[./~]/.test(spec)) throw new UsageError(`--adapter ${spec}: no such folder ${asPath}`);
  const dir = isFolder
    ? asPath
    : [...nodeModulesChain(cwd), ...nodeModulesChain(cliPackageDir)]
        .map((nodeModules) => join(nodeModules, spec))
        .find((d) => existsSync(join(d, 'package.json')));
  if (dir === undefined) throw new UsageError(`--adapter ${spec}: neither a folder nor a package installed here or beside the CLI`);
  if (!existsSync(join(dir, 'package.json'))) throw new UsageError(`--adapter ${spec}: ${dir} has no package.json`);
  const plugin = pluginAt(dir, true);
  if (!plugin) throw new UsageError(`--adapter ${spec}: ${join(dir, 'package.json')} has no "ditcache": { "cli": "<module>" } field naming its CLI family`);
  return plugin;
}

/** What is wrong with a plugin's default export as a CliFamily, or nothing. */
function familyProblems(value: unknown): string[] {
  if (value === null || typeof value !== 'object') return ['is missing: the module needs a default export describing the family'];
  const f = value as Record<string, unknown>;
  const problems: string[] = [];
  if (typeof f.label !== 'string') problems.push('has no label (a string)');
  for (const key of ['pipelineClasses', 'transformerClasses', 'outputFormats']) {
    const v = f[key];
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) problems.push(`has no ${key} (an array of strings)`);
  }
  // The generate flags it declares (or the older list of flag names).
  problems.push(...optionDeclarationProblems(f));
  for (const key of ['spawn', 'request', 'writeOutput']) if (typeof f[key] !== 'function') problems.push(`has no ${key}() method`);
  // `forward` is the older form of `loadTransformer`; a family needs one of them.
  if (typeof f.loadTransformer !== 'function' && typeof f.forward !== 'function') problems.push('has no loadTransformer() method');
  for (const key of ['checkModel', 'cacheChains', 'batchSize', 'encodePrompt', 'loadTransformer', 'forward'])
    if (f[key] !== undefined && typeof f[key] !== 'function') problems.push(`has a ${key} that is not a function`);
  return problems;
}

/** Imports a plugin's module and checks that its default export is a CliFamily. */
export async function loadPlugin(plugin: AdapterPlugin): Promise<LoadedPlugin> {
  if (!existsSync(plugin.module)) throw new Error(`${plugin.name}: its "ditcache.cli" module ${plugin.module} does not exist (is the package built?)`);
  const mod = (await import(pathToFileURL(plugin.module).href)) as { default?: unknown };
  const problems = familyProblems(mod.default);
  if (problems.length) throw new Error(`${plugin.name}: the CLI family of ${plugin.module} ${problems.join('; ')}`);
  return { ...plugin, family: mod.default as CliFamily };
}

/** Loads a plugin whose generate options fit those of the plugins `loaded` before it (the first declaration of a flag wins). */
async function loadFitting(plugin: AdapterPlugin, loaded: readonly LoadedPlugin[]): Promise<LoadedPlugin> {
  const found = await loadPlugin(plugin);
  const conflict = optionConflict(found, loaded);
  if (conflict) throw new Error(conflict);
  return found;
}

/**
 * The explicit plugins (`specs`, from --adapter) and those installed beside the CLI, loaded. A
 * plugin whose generate options conflict with those of a plugin loaded before it is not used:
 * an error for an explicit one, a failed plugin for an installed one.
 */
export async function loadFamilies(specs: readonly string[]): Promise<Families> {
  const explicit = specs.map((spec) => resolvePluginSpec(spec));
  const installed = findInstalledPlugins().filter((p) => !explicit.some((e) => e.dir === p.dir || e.name === p.name));
  const loaded: LoadedPlugin[] = [];
  const failed: FailedPlugin[] = [];
  for (const [i, plugin] of explicit.entries()) {
    if (loaded.some((p) => p.dir === plugin.dir)) continue;
    try {
      loaded.push(await loadFitting(plugin, loaded));
    } catch (e) {
      throw new UsageError(`--adapter ${specs[i]}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  for (const plugin of installed) {
    try {
      loaded.push(await loadFitting(plugin, loaded));
    } catch (e) {
      failed.push({ ...plugin, error: (e as Error).message.split('\n')[0] });
    }
  }
  return { loaded, failed };
}

/** The family that runs folders of model class `cls`; otherwise a usage error that says what is there and how to add more. */
export function familyFor(families: Families, classes: 'pipelineClasses' | 'transformerClasses', cls: string): CliFamily {
  const plugin = families.loaded.find((p) => p.family[classes].includes(cls));
  if (plugin) return plugin.family;
  const supported = families.loaded.flatMap((p) => p.family[classes]).join(', ') || 'none';
  const failed = families.failed.length ? `; adapters that failed to load: ${families.failed.map((p) => `${p.name} (${p.error})`).join('; ')}` : '';
  throw new UsageError(
    `--model: ${cls} is not supported (supported: ${supported}); install an adapter package that declares "ditcache": { "cli": ... } beside the CLI, or load one with --adapter NAME|PATH${failed}`,
  );
}

/** The family that runs the pipeline folder `modelDir` (known by model_index.json, or by its transformer's class). */
export function familyForPipeline(families: Families, modelDir: string): CliFamily {
  // Reversed, so that the first family claiming a transformer class (an explicit one) names the pipeline.
  const transformerToPipeline = Object.fromEntries(
    families.loaded.flatMap(({ family }) => family.transformerClasses.map((t) => [t, family.pipelineClasses[0]])).reverse(),
  );
  return familyFor(families, 'pipelineClasses', pipelineClassOf(modelDir, transformerToPipeline));
}

/** The families a program was built for, and the --adapter values they were loaded with. */
export interface ProgramFamilies {
  readonly specs: readonly string[];
  readonly families: Families;
}

/** The families of a command line: those the program was built for when it names the same --adapter values, else loaded now. */
export async function familiesFor(loaded: ProgramFamilies | undefined, adapters: readonly string[]): Promise<Families> {
  const same = loaded !== undefined && loaded.specs.length === adapters.length && loaded.specs.every((s, i) => s === adapters[i]);
  return same ? loaded.families : loadFamilies(adapters);
}
