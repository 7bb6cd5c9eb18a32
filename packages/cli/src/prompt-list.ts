// The prompts `ditcache encode-prompt` encodes: its repeated --prompt flags or the lines of
// --prompts-file, so that one run makes a bench / tune prompts file of many prompts. One way or
// the other, never both and never none, so that no prompt is silently left out.
import { existsSync, readFileSync } from 'node:fs';

import { UsageError } from './errors.js';

/**
 * Every --prompt given (in order; one string from an API caller is one prompt), or the lines of
 * --prompts-file with blank ones left out.
 */
export function readPromptList(prompts: string | readonly string[] | undefined, promptsFile: string | undefined): string[] {
  if (prompts !== undefined && promptsFile !== undefined) {
    throw new UsageError('--prompt and --prompts-file exclude each other: give the prompts as --prompt flags or as the lines of a file');
  }
  if (promptsFile === undefined) {
    if (prompts === undefined) throw new UsageError('--prompt or --prompts-file is required: the prompts to encode');
    return typeof prompts === 'string' ? [prompts] : [...prompts];
  }
  if (!existsSync(promptsFile)) throw new UsageError(`--prompts-file: no such file ${promptsFile}`);
  const lines = readFileSync(promptsFile, 'utf-8')
    .split(/\r?\n/)
    .filter((line) => line.trim() !== '');
  if (lines.length === 0) throw new UsageError(`--prompts-file: ${promptsFile} holds no prompt (one per line; blank lines are ignored)`);
  return lines;
}
