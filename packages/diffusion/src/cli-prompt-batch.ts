// How a family's CliFamily.encodePrompt turns its text encoders' encoding of a batch into what
// `ditcache encode-prompt` writes, the same for every family: the prompts as one batch, then a
// negative prompt for each of them (diffusers' `batch_size * [negative_prompt]`) with the same
// loaded encoders, named negative_<name>, and notes that say which prompt they are about.
import { stack, type Tensor } from '@ditcache/cuda-runtime';

import type { CliEncodedPrompt } from './cli-family.js';

/** One batch of prompts through a family's text encoders. */
export interface CliPromptBatch {
  /** The tensors `generate --inputs` reads, each holding one row per prompt of the batch (the caller disposes them). */
  tensors: Record<string, Tensor>;
  /** What happened to each prompt of the batch (such as how many tokens truncation dropped): notes[i] is prompt i's. */
  notes: readonly (readonly string[])[];
}

/**
 * `prompts` encoded as one batch by `encodeBatch` (on encoders the family loaded once), then, when
 * given, `negativePrompt` once per prompt, written as negative_<name>. With several prompts each
 * note begins with the prompt it is about ("prompt 2 of 3: "); the negative's begin "negative prompt: ".
 */
export function encodePromptBatches(
  prompts: readonly string[],
  negativePrompt: string | undefined,
  encodeBatch: (batch: readonly string[]) => CliPromptBatch,
): CliEncodedPrompt {
  if (prompts.length === 0) throw new TypeError('encodePrompt: give at least one prompt');
  const positive = encodeBatch(prompts);
  const tensors = { ...positive.tensors };
  const notes = positive.notes.flatMap((own, i) => own.map((note) => (prompts.length > 1 ? `prompt ${i + 1} of ${prompts.length}: ${note}` : note)));
  if (negativePrompt === undefined) return { tensors, notes };
  let negative: CliPromptBatch;
  try {
    negative = encodeBatch(prompts.map(() => negativePrompt));
  } catch (e) {
    for (const t of Object.values(tensors)) t.dispose();
    throw e;
  }
  for (const [name, t] of Object.entries(negative.tensors)) tensors[`negative_${name}`] = t;
  // Every row of the negative batch is the same prompt, so its first row's notes are all of them.
  notes.push(...(negative.notes[0] ?? []).map((note) => `negative prompt: ${note}`));
  return { tensors, notes };
}

/**
 * A tensor the whole batch shares (FLUX's and Chroma's text_ids, (tokens, 3)) as `encode-prompt`
 * writes it: as it is for one prompt, one copy per prompt stacked first for several, so that
 * every tensor of a prompts file holds one row per prompt. Takes `shared` (disposed here).
 */
export function sharedPerPrompt(shared: Tensor, prompts: number): Tensor {
  if (prompts === 1) return shared;
  try {
    return stack(
      Array.from({ length: prompts }, () => shared),
      0,
    );
  } finally {
    shared.dispose();
  }
}
