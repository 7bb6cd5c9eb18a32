// JSON configs that sit beside the weights (scheduler_config.json, model_index.json), read and
// checked with @ditcache/cuda-runtime's typedConfig, as WeightFolder checks a component's config.json.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { ConfigError } from '@ditcache/cuda-runtime';

export { ConfigError, typedConfig } from '@ditcache/cuda-runtime';

/** The JSON object in `path`. */
export function readJsonObject(path: string): Record<string, unknown> {
  if (!existsSync(path)) throw new ConfigError(`${path}: no such file`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf-8'));
  } catch (e) {
    throw new ConfigError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError(`${path}: not a JSON object`);
  return parsed as Record<string, unknown>;
}

/** Which of the sub-folders `names` the folder `dir` lacks (none when all are there). */
export function missingFolders(dir: string, names: readonly string[]): string[] {
  return names.filter((name) => !existsSync(join(dir, name)) || !statSync(join(dir, name)).isDirectory());
}

/** A ConfigError unless `dir` has every folder of `names`, naming those it lacks and what `purpose` needs. */
export function requireFolders(dir: string, names: readonly string[], purpose: string): void {
  const missing = missingFolders(dir, names);
  if (missing.length === 0) return;
  const list = (folders: readonly string[]) => folders.map((m) => `${m}/`).join(', ');
  throw new ConfigError(`${dir}: no ${list(missing)} folder (${purpose} needs ${list(names)})`);
}

/**
 * Checks a diffusers pipeline folder before anything loads: it exists; its model_index.json,
 * when there is one, names `pipelineClass` and lists each of `components` ([folder, class]) with
 * that class; and each component folder is there. Returns model_index.json (or null without one).
 */
export function checkPipelineFolder(dir: string, pipelineClass: string, components: readonly (readonly [string, string])[]): Record<string, unknown> | null {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ConfigError(`${dir}: no such pipeline folder`);
  const indexPath = join(dir, 'model_index.json');
  const index = existsSync(indexPath) ? readJsonObject(indexPath) : null;
  if (index) {
    if (index._class_name !== pipelineClass) {
      throw new ConfigError(
        `${indexPath} describes ${typeof index._class_name === 'string' ? `a ${index._class_name}` : 'no _class_name'}, not a ${pipelineClass}`,
      );
    }
    for (const [name, cls] of components) {
      const entry = index[name];
      if (!Array.isArray(entry) || entry[1] !== cls)
        throw new ConfigError(`${indexPath}: '${name}' should be [library, "${cls}"], got ${JSON.stringify(entry)}`);
    }
  }
  for (const [name] of components) {
    if (!existsSync(join(dir, name))) {
      throw new ConfigError(`${dir}: no ${name}/ folder (a ${pipelineClass} folder has ${components.map(([n]) => `${n}/`).join(', ')})`);
    }
  }
  return index;
}
