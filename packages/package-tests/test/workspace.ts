// The repository's packages as npm sees them, and npm run the way a user's shell would run it.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';

export const repo = new URL('../../../', import.meta.url).pathname;

export interface Manifest {
  name: string;
  version: string;
  private?: boolean;
  main?: string;
  types?: string;
  bin?: Record<string, string>;
  exports?: Record<string, string | Record<string, string>>;
  files?: string[];
  os?: string[];
  cpu?: string[];
  libc?: string[];
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  ditcache?: { cli?: string };
}

export interface Workspace {
  /** Folder relative to the repository root, e.g. packages/core. */
  dir: string;
  manifest: Manifest;
}

/** Every workspace of the root package.json (`dir/*` patterns). */
export function workspaces(root = repo): Workspace[] {
  const { workspaces: patterns } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf-8')) as { workspaces: string[] };
  return patterns.flatMap((pattern) => {
    const parent = pattern.replace(/\/\*$/, '');
    return readdirSync(join(root, parent))
      .map((entry) => `${parent}/${entry}`)
      .filter((dir) => existsSync(join(root, dir, 'package.json')))
      .map((dir) => ({ dir, manifest: JSON.parse(readFileSync(join(root, dir, 'package.json'), 'utf-8')) as Manifest }));
  });
}

/** The packages a release publishes. */
export function publicPackages(): Workspace[] {
  return workspaces().filter((w) => !w.manifest.private);
}

/** npm's own entry point, run with this Node.js (no `npm` on the PATH needed). */
function npmCli(): string {
  const candidates = [process.env.npm_execpath, join(dirname(process.execPath), 'npm')]
    .filter((p): p is string => !!p && existsSync(p))
    .map((p) => realpathSync(p));
  const cli = candidates.find((p) => p.endsWith('npm-cli.js'));
  if (!cli) throw new Error(`cannot find npm-cli.js (looked at ${candidates.join(', ') || 'npm_execpath and the npm beside node'})`);
  return cli;
}

/** The environment without the npm_* variables a parent npm exports, so that a child npm reads only its own configuration. */
export function cleanEnv(overrides: Record<string, string> = {}): Record<string, string> {
  const env = Object.fromEntries(
    Object.entries(process.env).filter((e): e is [string, string] => !e[0].toLowerCase().startsWith('npm_') && e[1] !== undefined),
  );
  return { ...env, ...overrides };
}

/** Runs npm; a failure throws with its output. */
export function npm(args: string[], options: { cwd: string; env?: Record<string, string>; allowFailure?: boolean }): SpawnSyncReturns<string> {
  const r = spawnSync(process.execPath, [npmCli(), ...args], { cwd: options.cwd, env: options.env ?? cleanEnv(), encoding: 'utf-8', timeout: 300_000 });
  if (!options.allowFailure && r.status !== 0)
    throw new Error(`npm ${args.join(' ')} (in ${options.cwd}) failed with status ${r.status}:\n${r.stdout}\n${r.stderr}`);
  return r;
}

export interface PackedFile {
  path: string;
  size: number;
}

export interface Packed {
  name: string;
  version: string;
  /** The tarball's file name in the destination folder. */
  filename: string;
  /** Bytes of the compressed tarball. */
  size: number;
  files: PackedFile[];
}

/** Packs workspaces (by package name) into `destination`, running their prepack / postpack scripts as a release would. */
export function pack(names: readonly string[], destination: string, env?: Record<string, string>): Packed[] {
  const r = npm(['pack', '--json', '--pack-destination', destination, ...names.flatMap((n) => ['-w', n])], { cwd: repo, env });
  return JSON.parse(r.stdout) as Packed[];
}
