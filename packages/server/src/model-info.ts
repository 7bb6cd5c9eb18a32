// What the HTTP layer must know of a model to validate requests before they are queued: the
// family, the size images must be a multiple of, and the file it writes. In Redis mode the API
// process has no model: workers publish this record and the API reads it.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { familyOptions } from '@ditcache/cli';
import type { CliFamily } from '@ditcache/diffusion/cli';

export interface ModelInfo {
  family: string;
  /** Width and height must be multiples of it: the VAE's downscaling times the transformer's 2x2 patches. */
  sizeMultiple: number;
  /** The extension of the files the family writes, e.g. '.png', '.webp'. */
  outputFormat: string;
  /** The family makes videos whose length a request may set (`frames`, as generate's --frames). */
  takesFrames: boolean;
}

/** The size multiple where the model does not say it: 8x VAEs with 2x2 patches, the common case. */
export const DEFAULT_SIZE_MULTIPLE = 16;

/**
 * 2 x the VAE's downscaling, from its config: diffusers' AutoencoderKL downscales 2x per block
 * but the last (FLUX.1, HiDream, Chroma); the other VAEs (Wan's, Qwen's, ...) name no blocks and
 * downscale 8x.
 */
function sizeMultiple(modelDir: string): number {
  const path = join(modelDir, 'vae', 'config.json');
  if (!existsSync(path)) return DEFAULT_SIZE_MULTIPLE;
  const blocks = (JSON.parse(readFileSync(path, 'utf-8')) as { block_out_channels?: unknown }).block_out_channels;
  return Array.isArray(blocks) && blocks.length > 0 ? 2 ** blocks.length : DEFAULT_SIZE_MULTIPLE;
}

export function modelInfo(family: CliFamily, modelDir: string): ModelInfo {
  const takesFrames = familyOptions(family).some((o) => o.setting === 'frames');
  return { family: family.label, sizeMultiple: sizeMultiple(modelDir), outputFormat: family.outputFormats[0], takesFrames };
}
