// Which images a metrics run compares: two files, or two folders paired by file name, and the
// sibling folders a reference folder is scored against; unreadable paths are MetricsErrors.
import type { Dirent } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { isImageFile } from './decode.js';
import { MetricsError } from './errors.js';

/** Two files to compare, and the name their scores are reported under. */
export interface ImagePair {
  readonly name: string;
  readonly path1: string;
  readonly path2: string;
}

async function kindOf(path: string): Promise<'file' | 'directory'> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new MetricsError(code === 'ENOENT' ? `no such file or directory: ${path}` : `cannot read ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (info.isDirectory()) return 'directory';
  if (info.isFile()) return 'file';
  throw new MetricsError(`not a file or directory: ${path}`);
}

export async function isDirectory(path: string): Promise<boolean> {
  return (await kindOf(path)) === 'directory';
}

/** Orders "img_2.png" before "img_10.png", as people number their files. */
const naturalOrder = new Intl.Collator('en', { numeric: true }).compare;

/**
 * The image files directly inside `dir` (by extension; hidden files and other files are
 * skipped), in natural order. An empty result is an error: comparing nothing is never meant.
 */
export async function listImages(dir: string): Promise<string[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    throw new MetricsError(`cannot read directory ${dir}: ${(error as Error).message}`, { cause: error });
  }
  const names = entries
    .filter((entry) => (entry.isFile() || entry.isSymbolicLink()) && !entry.name.startsWith('.') && isImageFile(entry.name))
    .map((entry) => entry.name)
    .sort(naturalOrder);
  if (names.length === 0) throw new MetricsError(`no image files in directory ${dir}`);
  return names;
}

/** Lists at most a few names, so that an error about 10,000 files stays one readable line. */
function someNames(dir: string, names: string[]): string {
  const shown = names.slice(0, 5).map((n) => join(dir, n));
  return names.length > 5 ? `${shown.join(', ')} and ${names.length - 5} more` : shown.join(', ');
}

/**
 * Pairs the images of two directories by file name. A file without a partner is an error
 * that names the missing files: silently comparing a subset would make two runs with
 * different failures look comparable.
 */
export async function pairDirectories(dir1: string, dir2: string): Promise<ImagePair[]> {
  const [names1, names2] = await Promise.all([listImages(dir1), listImages(dir2)]);
  const set1 = new Set(names1);
  const set2 = new Set(names2);
  const missingIn2 = names1.filter((n) => !set2.has(n));
  const missingIn1 = names2.filter((n) => !set1.has(n));
  if (missingIn2.length > 0 || missingIn1.length > 0) {
    const parts: string[] = [];
    if (missingIn2.length > 0) parts.push(`${someNames(dir1, missingIn2)} ha${missingIn2.length === 1 ? 's' : 've'} no partner in ${dir2}`);
    if (missingIn1.length > 0) parts.push(`${someNames(dir2, missingIn1)} ha${missingIn1.length === 1 ? 's' : 've'} no partner in ${dir1}`);
    throw new MetricsError(`missing partner files: ${parts.join('; ')}`);
  }
  return names1.map((name) => ({ name, path1: join(dir1, name), path2: join(dir2, name) }));
}

/**
 * The pairs for two paths: two files give one pair, two directories give their files
 * matched by name. A file against a directory is an error.
 */
export async function resolvePairs(path1: string, path2: string): Promise<ImagePair[]> {
  const [kind1, kind2] = await Promise.all([kindOf(path1), kindOf(path2)]);
  if (kind1 === 'directory' && kind2 === 'directory') return pairDirectories(path1, path2);
  if (kind1 === 'file' && kind2 === 'file') {
    const name1 = basename(path1);
    const name2 = basename(path2);
    return [{ name: name1 === name2 ? name1 : `${name1} vs ${name2}`, path1, path2 }];
  }
  throw new MetricsError(`cannot compare a ${kind1} with a ${kind2}: ${path1} and ${path2} must both be files or both be directories`);
}

/** The image files of one path: the file itself, or the images inside a directory. */
export async function resolveImageSet(path: string): Promise<{ name: string; path: string }[]> {
  if ((await kindOf(path)) === 'file') return [{ name: basename(path), path }];
  return (await listImages(path)).map((name) => ({ name, path: join(path, name) }));
}

/**
 * The sibling directories of a reference directory (1-vs-many mode): every directory in
 * `parent` (default: the reference's parent) except the reference itself and hidden ones.
 */
export async function siblingDirectories(referenceDir: string, parent: string): Promise<string[]> {
  const referenceInfo = await stat(referenceDir);
  let entries: Dirent[];
  try {
    entries = await readdir(parent, { withFileTypes: true });
  } catch (error) {
    throw new MetricsError(`cannot read directory ${parent}: ${(error as Error).message}`, { cause: error });
  }
  const result: string[] = [];
  for (const entry of entries.sort((x, y) => naturalOrder(x.name, y.name))) {
    if (entry.name.startsWith('.')) continue;
    const path = join(parent, entry.name);
    const info = await stat(path).catch(() => null);
    if (!info?.isDirectory()) continue;
    if (info.ino === referenceInfo.ino && info.dev === referenceInfo.dev) continue;
    result.push(path);
  }
  if (result.length === 0) throw new MetricsError(`no directories besides the reference ${referenceDir} in ${parent}`);
  return result;
}
