// The prompts of a benchmark: a safetensors file holding, for P prompts, the tensors a family's
// `generate --inputs` takes (prompt_embeds, pooled_prompt_embeds, prompt_attention_mask,
// negative_prompt_embeds, latents_in, ...), one row per prompt, so that every family runs from
// the same kind of file. Each prompt's row becomes one `--inputs` of batch 1 for the family.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';

import { openSafetensors, type Tensor } from '@ditcache/cuda-runtime';
import type { CliFamily } from '@ditcache/diffusion/cli';

import { UsageError } from '../errors.js';

/** The tensors and recommended settings of a prompts file. */
export interface BenchPrompts {
  /**
   * Every tensor of the file by the name `generate --inputs` reads it under, each holding the P
   * prompts along one axis (the first, where its size is P). Absent in a caller's own prompts
   * made of promptEmbeds and pooledPromptEmbeds (FLUX's), which then stand for these.
   */
  readonly tensors?: Readonly<Record<string, Tensor>>;
  /** FLUX's `prompt_embeds` (P, T, D) and `pooled_prompt_embeds` (P, D), when the file has them. */
  readonly promptEmbeds?: Tensor;
  readonly pooledPromptEmbeds?: Tensor;
  /** The prompts' text (from the file's `prompts` metadata), or "prompt i"; one per prompt. */
  readonly labels: readonly string[];
  /** Settings the file recommends (`height`, `width`, `num_inference_steps`, `guidance_scale`, `num_frames`, `fps` metadata). */
  readonly height?: number;
  readonly width?: number;
  readonly steps?: number;
  readonly guidance?: number;
  readonly frames?: number;
  readonly fps?: number;
  /** The file, for messages. */
  readonly file?: string;
}

/** A family's complaint about `--inputs`, said of the prompts file that stands for it. */
export function asPromptsError(e: unknown): Error {
  const err = e as Error;
  return err.name === 'UsageError' ? new UsageError(err.message.replace(/--inputs\b/g, '--prompts')) : err;
}

/**
 * Reads a prompts file (the demo's `demo-prompts.safetensors` is one). With `family`, the prompts
 * are those its request makes of the file (`batchSize`); without, the rows of `prompt_embeds`.
 */
export function readBenchPrompts(path: string, family?: CliFamily): BenchPrompts & Disposable {
  if (!existsSync(path)) throw new UsageError(`--prompts: no such file ${path}`);
  const tensors: Record<string, Tensor> = {};
  const dispose = () => Object.values(tensors).forEach((t) => t.dispose());
  let metadata: Record<string, string>;
  try {
    using file = openSafetensors(path);
    metadata = file.metadata;
    for (const name of file.keys()) tensors[name] = file.get(name);
  } catch (e) {
    dispose();
    throw new UsageError(`--prompts: ${(e as Error).message}`);
  }
  try {
    const count = promptCount(tensors, path, family);
    for (const [name, t] of Object.entries(tensors)) promptAxis(name, t, count, path);
    const texts = metadata.prompts === undefined ? undefined : (JSON.parse(metadata.prompts) as unknown);
    const labels = Array.isArray(texts) && texts.length === count ? texts.map(String) : Array.from({ length: count }, (_, i) => `prompt ${i}`);
    const num = (key: string) => {
      if (metadata[key] === undefined) return undefined;
      const value = Number(metadata[key]);
      if (!Number.isFinite(value) || value <= 0) throw new UsageError(`--prompts: ${path}'s ${key} metadata '${metadata[key]}' is not a positive number`);
      return value;
    };
    return {
      tensors,
      promptEmbeds: tensors.prompt_embeds,
      pooledPromptEmbeds: tensors.pooled_prompt_embeds,
      labels,
      height: num('height'),
      width: num('width'),
      steps: num('num_inference_steps'),
      guidance: num('guidance_scale'),
      frames: num('num_frames'),
      fps: num('fps'),
      file: path,
      [Symbol.dispose]: dispose,
    };
  } catch (e) {
    dispose();
    throw e;
  }
}

/** How many prompts the file holds: as many as the family's request makes images of, else the rows of prompt_embeds. */
function promptCount(tensors: Record<string, Tensor>, path: string, family: CliFamily | undefined): number {
  if (family) {
    try {
      return family.batchSize?.(family.request(tensors, path, {})) ?? 1;
    } catch (e) {
      throw asPromptsError(e);
    }
  }
  const embeds = tensors.prompt_embeds;
  if (!embeds || embeds.rank < 2) {
    throw new UsageError(
      `--prompts: ${path} needs prompt_embeds (P, tokens, dim), one row per prompt (it has: ${Object.keys(tensors).sort().join(', ') || 'none'})`,
    );
  }
  return embeds.shape[0];
}

/**
 * The axis of `t` that holds the prompts: the first where its size is `count`, else the only
 * other one (HiDream's Llama embeddings stack layers first); undefined for one prompt, which
 * needs no slicing. A tensor without such an axis, or with several, is a usage error.
 */
export function promptAxis(name: string, t: Tensor, count: number, path: string): number | undefined {
  if (t.rank === 0) throw new UsageError(`--prompts: ${path}'s tensor '${name}' is a scalar: give every tensor one row per prompt`);
  if (count === 1) return undefined;
  if (t.shape[0] === count) return 0;
  const axes = t.shape.flatMap((size, axis) => (size === count ? [axis] : []));
  if (axes.length === 1) return axes[0];
  const why = axes.length === 0 ? 'no axis' : `axes ${axes.join(' and ')} but not the first`;
  throw new UsageError(
    `--prompts: ${path} holds ${count} prompts, but its tensor '${name}' (${t.shape.join(', ')}) has ${why} of size ${count}: give every tensor one row per prompt`,
  );
}

/** Prompts `start` .. `start + length - 1` of every tensor (views; the caller disposes them). */
function promptRange(prompts: BenchPrompts, start: number, length: number): Record<string, Tensor> {
  const count = prompts.labels.length;
  if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 1 || start + length > count) {
    throw new RangeError(`prompts ${start}..${start + length - 1} of ${count}`);
  }
  return Object.fromEntries(
    Object.entries(promptTensors(prompts)).map(([name, t]) => {
      const axis = promptAxis(name, t, count, prompts.file ?? '--prompts');
      return [name, axis === undefined ? t.narrow(0, 0, t.shape[0]) : t.narrow(axis, start, length)];
    }),
  );
}

/** Prompt `index`'s tensors (views of batch 1; the caller disposes them), as one prompt's `--inputs`. */
export function promptInputs(prompts: BenchPrompts, index: number): Record<string, Tensor> {
  return promptRange(prompts, index, 1);
}

/** The first `count` prompts (views, disposed with the result), e.g. the demo's first few. */
export function firstPrompts(prompts: BenchPrompts, count: number): BenchPrompts & Disposable {
  const tensors = promptRange(prompts, 0, count);
  return {
    ...prompts,
    tensors,
    promptEmbeds: tensors.prompt_embeds,
    pooledPromptEmbeds: tensors.pooled_prompt_embeds,
    labels: prompts.labels.slice(0, count),
    [Symbol.dispose]: () => Object.values(tensors).forEach((t) => t.dispose()),
  };
}

/** The file's tensors, or FLUX's two embeddings of a caller's own prompts. */
export function promptTensors(prompts: BenchPrompts): Readonly<Record<string, Tensor>> {
  if (prompts.tensors) return prompts.tensors;
  const { promptEmbeds, pooledPromptEmbeds } = prompts;
  if (!promptEmbeds || !pooledPromptEmbeds) throw new TypeError('BenchPrompts: give tensors, or promptEmbeds and pooledPromptEmbeds');
  return { prompt_embeds: promptEmbeds, pooled_prompt_embeds: pooledPromptEmbeds };
}

/** A digest of one prompt's tensors (names, dtypes, shapes, values): a cell made from other inputs is not a finished cell of these. */
export function promptFingerprint(prompts: BenchPrompts, index: number): string {
  const inputs = promptInputs(prompts, index);
  try {
    const hash = createHash('sha256');
    for (const name of Object.keys(inputs).sort()) {
      const t = inputs[name];
      hash.update(`${name}:${t.dtype}:${t.shape.join(',')}:`).update(t.toBytes());
    }
    return hash.digest('hex');
  } finally {
    for (const t of Object.values(inputs)) t.dispose();
  }
}
