// What the CLI knows of each model family: its classes, how --inputs maps to its pipeline's
// request, and how to run one transformer call.
import type { Tensor } from '@ditcache/cuda-runtime';
import { savePng, type RemotePipeline } from '@ditcache/diffusion';

import { UsageError } from './errors.js';

export interface GenerateSettings {
  /** FLUX.1: the prompt and the negative prompt as text, encoded by the folder's text encoders. */
  prompt?: string;
  negativePrompt?: string;
  /** FLUX.1: T5 tokens of a text prompt (default 512). */
  maxSequenceLength?: number;
  height?: number;
  width?: number;
  steps?: number;
  guidance?: number;
  trueCfgScale?: number;
  seed?: number;
  /** HiDream: diffusers' default_sample_size, the latent side of the area images are rescaled to. */
  defaultSampleSize?: number;
  /** Wan: video frames (4k + 1), the second expert's guidance, animation speed. */
  frames?: number;
  guidance2?: number;
  fps?: number;
}

export interface Family {
  /** For messages, e.g. 'FLUX.1'. */
  readonly label: string;
  readonly pipelineClasses: readonly string[];
  readonly transformerClasses: readonly string[];
  spawn(dir: string): Promise<RemotePipeline<object, GenerateResult>>;
  /** Checks before any work that the model folder can serve these flags (e.g. has text encoders for --prompt). */
  checkModel?(modelDir: string, settings: GenerateSettings): void;
  /** The pipeline request from the tensors of the --inputs file (none when `file` is undefined) and the flags. */
  request(inputs: Record<string, Tensor>, file: string | undefined, settings: GenerateSettings): object;
  /** File extensions --output may have (checked before any work). */
  readonly outputFormats: readonly string[];
  /** Writes the picture (or video) of a result to `path`, in the formats the family produces. */
  writeOutput(result: GenerateResult, path: string, settings: GenerateSettings): Promise<void>;
  /** One transformer call on the inputs named as in the goldens' transformer_forward files; returns `sample`. */
  forward(transformerDir: string, inputs: Record<string, Tensor>, file: string): Tensor;
}

export interface GenerateResult {
  latents: Tensor;
  /** Image families. */
  image?: Tensor | null;
  /** Video families. */
  video?: Tensor | null;
}

/** Flags that only some families take: naming one elsewhere is a usage error, not silently ignored. */
export function refuseFlags(label: string, s: GenerateSettings, names: (keyof GenerateSettings)[]): void {
  const flag = (n: string) => `--${n.replace(/[A-Z0-9]/g, (c) => `-${c.toLowerCase()}`)}`;
  for (const n of names) if (s[n] !== undefined) throw new UsageError(`${flag(n)} does not apply to ${label}`);
}

/** Writes an image result as PNG. */
export async function writeImage(result: GenerateResult, path: string): Promise<void> {
  if (!result.image) throw new Error('the pipeline returned no image');
  await savePng(result.image, path);
}

/** The tensors `names` of --inputs, in order; a missing one is a usage error naming the file's keys. */
export function pick(inputs: Record<string, Tensor>, file: string | undefined, names: readonly string[]): Tensor[] {
  if (file === undefined) throw new UsageError(`--inputs is required: a safetensors file with ${names.join(', ')}`);
  return names.map((n) => {
    const t = inputs[n];
    if (!t) throw new UsageError(`--inputs ${file} has no tensor '${n}' (it has: ${Object.keys(inputs).sort().join(', ') || 'none'})`);
    return t;
  });
}
