// Reading the files of a transformers tokenizer folder that are not tokenizer.json (vocab.json,
// merges.txt, tokenizer_config.json), with errors that name the file.
import { readFileSync } from 'node:fs';

import { TokenizerError } from '../errors.js';

export type Json = Record<string, unknown>;

export function readJson(path: string): Json {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf-8'));
  } catch (e) {
    throw new TokenizerError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new TokenizerError(`${path}: not a JSON object`);
  return parsed as Json;
}

/** A special token's text: transformers writes a string or an AddedToken object with `content`. */
export function tokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as Json).content === 'string') return (value as Json).content as string;
  return undefined;
}

/** The merge lines of a merges.txt ("a b"), without its "#version" header. */
export function readMerges(path: string): string[] {
  return readFileSync(path, 'utf-8')
    .split('\n')
    .map((line) => line.replace(/\r$/, ''))
    .filter((line, i) => line.length > 0 && !(i === 0 && line.startsWith('#version')));
}
