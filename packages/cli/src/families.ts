// What the CLI knows of each model family: its classes, how --inputs maps to its pipeline's
// request, and how to run one transformer call.
import type { Tensor } from '@ditcache/cuda-runtime';
import type { RemotePipeline } from '@ditcache/diffusion';

import { UsageError } from './errors.js';

export interface GenerateSettings {
  height?: number;
  width?: number;
  steps?: number;
  guidance?: number;
  trueCfgScale?: number;
  seed?: number;
  /** HiDream: diffusers' default_sample_size, the latent side of the area images are rescaled to. */
  defaultSampleSize?: number;
}

export interface Family {
  /** For messages, e.g. 'FLUX.1'. */
  readonly label: string;
  readonly pipelineClasses: readonly string[];
  readonly transformerClasses: readonly string[];
  spawn(dir: string): Promise<RemotePipeline<object, GenerateResult>>;
  /** The pipeline request from the tensors of the --inputs file and the flags. */
  request(inputs: Record<string, Tensor>, file: string, settings: GenerateSettings): object;
  /** One transformer call on the inputs named as in the goldens' transformer_forward files; returns `sample`. */
  forward(transformerDir: string, inputs: Record<string, Tensor>, file: string): Tensor;
}

export interface GenerateResult {
  latents: Tensor;
  image: Tensor | null;
}

/** The tensors `names` of --inputs, in order; a missing one is a usage error naming the file's keys. */
export function pick(inputs: Record<string, Tensor>, file: string, names: readonly string[]): Tensor[] {
  return names.map((n) => {
    const t = inputs[n];
    if (!t) throw new UsageError(`--inputs ${file} has no tensor '${n}' (it has: ${Object.keys(inputs).sort().join(', ') || 'none'})`);
    return t;
  });
}
