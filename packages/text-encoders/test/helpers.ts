import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

export const data = new URL('./data/', import.meta.url).pathname;

export interface PromptRecord {
  text: string;
  clip_normalized: string;
  t5_normalized: string;
  clip_ids: number[];
  t5_ids: number[];
  t5_spm_ids: number[];
  clip_ids_77: number[];
  t5_ids_16: number[];
  t5_ids_512?: number[];
}

export const prompts = (JSON.parse(readFileSync(join(data, 'tokens.json'), 'utf-8')) as { prompts: PromptRecord[] }).prompts;

/**
 * `use` of a temporary copy of a data folder with its `*.gz` files unpacked (the T5
 * tokenizer.json, whose nmt_nfkc charsmap is large, is stored gzipped); the copy is removed after.
 */
export function unpacked<T>(name: string, use: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), `text-encoders-${name}-`));
  try {
    for (const file of readdirSync(join(data, name))) {
      if (file.endsWith('.gz')) writeFileSync(join(dir, file.slice(0, -3)), gunzipSync(readFileSync(join(data, name, file))));
      else copyFileSync(join(data, name, file), join(dir, file));
    }
    return use(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** ||actual - expected|| / ||expected|| over float32 values, accumulated in float64. */
export function relativeError(actual: Float32Array, expected: Float32Array): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} vs ${expected.length}`);
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < actual.length; i++) {
    diff += (actual[i] - expected[i]) ** 2;
    norm += expected[i] ** 2;
  }
  return Math.sqrt(diff / norm);
}
