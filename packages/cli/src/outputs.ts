// Output files: checked before any work (a writable folder, not a folder itself, never replacing
// what the user has unless --force), and written atomically: under a temporary name in the same
// folder, renamed into place when complete, so a failed or interrupted run leaves nothing partial.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync, type Stats } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';

import { UsageError } from './errors.js';

/** An output a flag names: the flag (for messages) and the path, absent when the flag is not given. */
export type OutputFlag = readonly [flag: string, path: string | undefined];

function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

/** The folder `path` will be written in, or its nearest existing ancestor (the missing folders are created when writing). */
function nearestExistingFolder(flag: string, path: string): string {
  for (let d = dirname(resolve(path)); ; d = dirname(d)) {
    const s = statOrNull(d);
    if (s) {
      if (!s.isDirectory()) throw new UsageError(`${flag} ${path}: ${d} is not a folder`);
      return d;
    }
    if (dirname(d) === d) throw new UsageError(`${flag} ${path}: no folder to write it in`);
  }
}

/** Whether files can be created in `folder`: creates and removes a probe file (permissions alone miss read-only and virtual file systems, and root). */
function checkWritable(flag: string, path: string, folder: string): void {
  const probe = join(folder, `.ditcache-probe-${process.pid}-${Math.random().toString(36).slice(2)}`);
  try {
    writeFileSync(probe, '', { flag: 'wx' });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new UsageError(`${flag} ${path}: cannot create files in ${folder} (${err.code ?? err.message})`);
  }
  unlinkSync(probe);
}

/**
 * Fails with a usage error, before any work, when an output cannot be written: its folder (or the
 * nearest existing one above it) is not a writable folder, the path is a folder, it exists and
 * --force is not given, or two flags name the same file.
 */
export function checkOutputs(outputs: readonly OutputFlag[], force: boolean): void {
  const seen = new Map<string, string>();
  for (const [flag, path] of outputs) {
    if (!path) continue;
    const key = resolve(path);
    const other = seen.get(key);
    if (other) throw new UsageError(`${other} and ${flag} both name ${path}; give each output its own file`);
    seen.set(key, flag);
    const s = statOrNull(path);
    if (s?.isDirectory()) throw new UsageError(`${flag} ${path} is a folder; give a file name`);
    if (s && !force) throw new UsageError(`${flag} ${path} exists; pass --force to overwrite it`);
    checkWritable(flag, path, nearestExistingFolder(flag, path));
  }
}

/** The files of a batch of `count` written to `path`: the path itself for one, else NAME-0.EXT, NAME-1.EXT, ... */
export function numberedPaths(path: string, count: number): string[] {
  if (count === 1) return [path];
  const ext = extname(path),
    base = path.slice(0, path.length - ext.length);
  return Array.from({ length: count }, (_, i) => `${base}-${i}${ext}`);
}

export function ensureParent(path: string): void {
  mkdirSync(dirname(path), { recursive: true });
}

let temporaries = 0;

/**
 * Writes `path` atomically: `write` gets a temporary path in the same folder, with the same
 * extension (`.NAME.PID-N.tmp.EXT`); once it has finished, that file and whatever `write` put
 * beside it under the same temporary stem (a video's `STEM_frames/` folder, say) are renamed to
 * the final names, the main file last. If `write` fails, all of them are removed. A folder that
 * exists under a final name is replaced only with `force`.
 */
export async function writeAtomically(path: string, write: (tmp: string) => Promise<void> | void, force: boolean): Promise<void> {
  ensureParent(path);
  const folder = dirname(path),
    ext = extname(path),
    stem = basename(path, ext);
  const tmpStem = `.${stem}.${process.pid}-${temporaries++}.tmp`;
  const tmp = join(folder, `${tmpStem}${ext}`);
  const written = () => readdirSync(folder).filter((name) => name.startsWith(tmpStem));
  try {
    await write(tmp);
    const companions = written().filter((name) => name !== basename(tmp));
    for (const name of [...companions, basename(tmp)]) {
      const target = join(folder, `${stem}${name.slice(tmpStem.length)}`);
      if (statOrNull(join(folder, name))?.isDirectory() && existsSync(target)) {
        if (!force) throw new Error(`${target} exists; pass --force to replace it`);
        rmSync(target, { recursive: true, force: true });
      }
      renameSync(join(folder, name), target);
    }
  } catch (e) {
    for (const name of written()) rmSync(join(folder, name), { recursive: true, force: true });
    throw e;
  }
}

export function writeTextAtomically(path: string, text: string): void {
  ensureParent(path);
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}-${temporaries++}.tmp`);
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}
