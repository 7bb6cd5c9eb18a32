import { expect } from 'vitest';

import { tensor, type Tensor } from '../src/index.js';
import { closeness, Rng, type Nd } from './reference.js';

/**
 * Every run draws fresh random inputs; a failure names the seed so that the same inputs come
 * back with DITCACHE_TEST_SEED=<seed>.
 */
export const BASE_SEED = Number(process.env.DITCACHE_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** A generator for one test file or case, derived from the run's seed and a name. */
export function rngFor(name: string): Rng {
  let h = BASE_SEED ^ 0x9e3779b9;
  for (let i = 0; i < name.length; ++i) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return new Rng(h >>> 0);
}

/** A float32 tensor holding exactly the values of a reference array. */
export function fromNd(x: Nd): Tensor {
  return tensor(x.f32(), x.shape);
}

/** Asserts shape and |actual - expected| <= atol + rtol * |expected| elementwise. */
export function expectClose(actual: Tensor, expected: Nd, rtol: number, atol = rtol): void {
  expect([...actual.shape]).toEqual(expected.shape);
  const { worst, at } = closeness(actual.toFloat32Array(), expected.data, rtol, atol);
  if (worst > 1) {
    const a = actual.toFloat32Array()[at],
      e = expected.data[at];
    expect.fail(
      `element ${at}: got ${a}, expected ${e} (error ${worst.toFixed(2)}x the bound rtol=${rtol}, atol=${atol}; ` +
        `inputs from DITCACHE_TEST_SEED=${BASE_SEED})`,
    );
  }
}
