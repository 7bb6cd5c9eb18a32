import { readFileSync } from 'node:fs';

import { expect } from 'vitest';

import type { Tensor } from '@ditcache/cuda-runtime';

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

/** ||actual - expected||_2 / ||expected||_2, accumulated in float64. */
export function relativeL2(actual: Tensor, expected: Tensor): number {
  expect([...actual.shape]).toEqual([...expected.shape]);
  return relativeL2Values(actual.toFloat32Array(), expected.toFloat32Array());
}

export function relativeL2Values(a: Float32Array, e: Float32Array): number {
  expect(a.length).toBe(e.length);
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < a.length; ++i) {
    diff += (a[i] - e[i]) ** 2;
    norm += e[i] ** 2;
  }
  return Math.sqrt(diff) / Math.sqrt(norm);
}
