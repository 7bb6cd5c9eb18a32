import { readFileSync } from 'node:fs';

/** This package's reference data (tools/make_references.py wrote it; goldens/README.md describes it). */
export const goldens = new URL('./goldens/', import.meta.url).pathname;

export const SETS = ['sd3-tiny', 'sd35-tiny'] as const;

export interface Trace {
  config: Record<string, number>;
  taylorseer_order: number | null;
  enable_encoder_calibrator: boolean | null;
  margin: number;
  stats: { cached_steps: number[]; residual_diffs: Record<string, number> }[];
  cache_dit_with_encoder_calibrator?: string | null;
}

export interface Meta {
  height: number;
  width: number;
  num_inference_steps: number;
  guidance_scale: number;
  cache_traces: Record<string, Trace>;
}

export function metaOf(set: string): Meta {
  return JSON.parse(readFileSync(`${goldens}/${set}/meta.json`, 'utf-8')) as Meta;
}

export { relativeL2, relativeL2Values } from '@ditcache/cuda-runtime';
