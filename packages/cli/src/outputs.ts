// Output files: never overwrite something the user has unless asked, and write atomically.
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

import { UsageError } from './errors.js';

/** Fails before any work when an output would replace an existing file without --force. */
export function checkOutputs(paths: (string | undefined)[], force: boolean): void {
  for (const p of paths) {
    if (p && existsSync(p) && !force) throw new UsageError(`${p} exists; pass --force to overwrite it`);
  }
}

export function ensureParent(path: string): void {
  mkdirSync(dirname(path), { recursive: true });
}

export function writeTextAtomically(path: string, text: string): void {
  ensureParent(path);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}
