// Which model family a folder holds, from its model_index.json or its transformer's config.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { UsageError } from './errors.js';

function classNameIn(path: string): string | undefined {
  if (!existsSync(path)) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf-8'));
  } catch (e) {
    throw new UsageError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  const name = (json as { _class_name?: unknown })._class_name;
  return typeof name === 'string' ? name : undefined;
}

function requireFolder(dir: string): void {
  if (!existsSync(dir)) throw new UsageError(`--model: no such folder ${dir}`);
  if (!statSync(dir).isDirectory()) throw new UsageError(`--model: ${dir} is not a folder`);
}

/** The pipeline class of a pipeline folder (model_index.json, else what its transformer implies). */
export function pipelineClassOf(dir: string, transformerToPipeline: Record<string, string>): string {
  requireFolder(dir);
  const indexed = classNameIn(join(dir, 'model_index.json'));
  if (indexed) return indexed;
  const transformer = classNameIn(join(dir, 'transformer', 'config.json'));
  if (transformer && transformerToPipeline[transformer]) return transformerToPipeline[transformer];
  throw new UsageError(`--model: ${dir} has neither a model_index.json nor a transformer/config.json of a known model class`);
}

/** The model class of a component folder (its config.json). */
export function componentClassOf(dir: string): string {
  requireFolder(dir);
  const name = classNameIn(join(dir, 'config.json'));
  if (!name) throw new UsageError(`--model: ${dir} has no config.json with a _class_name (give a transformer/ folder)`);
  return name;
}
