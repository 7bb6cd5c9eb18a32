// Timing helpers shared by the runtime's benchmarks: the sides take turns in short bursts so
// that load from other work on the machine falls on both alike; each burst starts with an
// untimed call, and a pause between bursts lets the other side's BLAS threads, which spin for
// a while after a call, go to sleep before the next side runs.
import { performance } from 'node:perf_hooks';

import * as rt from '../src/index.js';

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** A float32 tensor of uniform values in [-0.5, 0.5), cast to `dtype`. */
export function random(shape: number[], dtype: rt.DType = 'float32'): rt.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; ++i) d[i] = Math.random() - 0.5;
  const t = rt.tensor(d, shape);
  if (dtype === 'float32') return t;
  const c = t.cast(dtype);
  t.dispose();
  return c;
}

export function timeOnce(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return (performance.now() - t0) / 1000;
}

const SETTLE_MS = 400;

/** Median seconds of each runner over `rounds` turns of `burst` calls each (the first of a burst is a warm-up). */
export async function interleaved(rounds: number, burst: number, runners: (() => Promise<number> | number)[]): Promise<number[]> {
  const times: number[][] = runners.map(() => []);
  for (let i = 0; i < rounds; ++i) {
    for (const [j, r] of runners.entries()) {
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      await r();
      for (let k = 0; k < burst; ++k) times[j].push(await r());
    }
  }
  return times.map(median);
}
