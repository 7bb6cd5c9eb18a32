import { describe, expect, it } from 'vitest';

import { BlockAdapter, CacheDitTaylorSeer, disableCache, enableCache, ForwardPattern, NewtonTaylorSeer, summary, type ResidualStore } from '../src/index.js';
import { PlainTensorOps, type PlainTensor } from '../src/testing.js';
import { AdditiveBlock } from './toy-models.js';

const ops = new PlainTensorOps();
const WEIGHTS = [1, -0.5, 2];

/** A tensor trajectory y(step) = p(step) * WEIGHTS. */
const at = (p: (s: number) => number, step: number) => ops.tensor(WEIGHTS.map((w) => w * p(step)));

function forecast(store: ResidualStore<PlainTensor>, step: number): number[] {
  const f = store.predict(step);
  const values = Array.from(f.value.values());
  if (f.owned) ops.release(f.value);
  return values;
}

function expectTrajectory(store: ResidualStore<PlainTensor>, p: (s: number) => number, steps: number[], digits = 9) {
  for (const step of steps) forecast(store, step).forEach((v, i) => expect(v).toBeCloseTo(WEIGHTS[i] * p(step), digits));
}

const POLYNOMIALS: [number, (s: number) => number][] = [
  [1, (s) => 3 - 0.7 * s],
  [2, (s) => 1 + 0.5 * s - 0.25 * s * s],
  [3, (s) => 2 - s + 0.3 * s * s + 0.05 * s ** 3],
];

describe("TaylorSeer, 'newton' expansion (divided differences)", () => {
  it.each(POLYNOMIALS)('order %i is exact on polynomials of its degree, whatever the gaps between computed steps', (order, p) => {
    const store = new NewtonTaylorSeer(ops, order);
    const computed = [0, 1, 3, 4, 7];
    for (const step of computed.slice(0, order + 1)) store.update(step, at(p, step));
    expectTrajectory(store, p, [order + 1, 5, 6, 9]);
    for (const step of computed.slice(order + 1)) store.update(step, at(p, step));
    expectTrajectory(store, p, [8, 10, 12]);
    store.clear();
  });

  it('is exact on lower degrees too, and not on a higher one', () => {
    const [, quadratic] = POLYNOMIALS[1];
    const [, cubic] = POLYNOMIALS[2];
    const third = new NewtonTaylorSeer(ops, 3);
    [0, 2, 3, 5].forEach((s) => third.update(s, at(quadratic, s)));
    expectTrajectory(third, quadratic, [6, 8]);
    const second = new NewtonTaylorSeer(ops, 2);
    [0, 1, 2].forEach((s) => second.update(s, at(cubic, s)));
    expect(forecast(second, 4)[0]).not.toBeCloseTo(cubic(4), 3);
    third.clear();
    second.clear();
  });
});

describe("TaylorSeer, 'cache-dit' expansion (its Taylor series over backward differences)", () => {
  it('forms differences only from the third step after its first update, as a fresh cache-dit context does', () => {
    const [, linear] = POLYNOMIALS[0];
    const store = new CacheDitTaylorSeer(ops, 1);
    [0, 1, 2].forEach((s) => store.update(s, at(linear, s)));
    // No difference yet: step 3 reuses step 2 as it is.
    forecast(store, 3).forEach((v, i) => expect(v).toBe(WEIGHTS[i] * linear(2)));
    store.update(3, at(linear, 3));
    expectTrajectory(store, linear, [4, 5, 9]);
    store.update(6, at(linear, 6)); // a gap of 3 steps
    expectTrajectory(store, linear, [7, 10]);
    store.clear();
  });

  it.each([2, 3])('order %i is exact on linear trajectories but only approximates a quadratic', (order) => {
    const [, quadratic] = POLYNOMIALS[1];
    const store = new CacheDitTaylorSeer(ops, order);
    [0, 1, 2, 3, 4, 5].forEach((s) => store.update(s, at(quadratic, s)));
    const error = Math.abs(forecast(store, 7)[0] - quadratic(7));
    expect(error).toBeGreaterThan(0.1);
    store.clear();
    const [, linear] = POLYNOMIALS[0];
    [0, 1, 2, 3, 4, 5].forEach((s) => store.update(s, at(linear, s)));
    expectTrajectory(store, linear, [7, 8]);
    store.clear();
  });
});

describe('TaylorSeer in the engine', () => {
  const CASES = [1, 2, 3].flatMap((order) => (['residual', 'hidden_states'] as const).map((cacheType) => [order, cacheType] as const));
  it.each(CASES)(
    "order %i forecasting the %s with the 'newton' expansion reproduces the uncached output when the middle blocks' work is a polynomial of that degree in the step",
    (order, cacheType) => {
      const [, p] = POLYNOMIALS[order - 1];
      const blocks = [0.5, 1, 2, 3, 0.25].map((c) => new AdditiveBlock(ops, c, p));
      const transformer = { blocks };
      const run = () =>
        Array.from({ length: 10 }, (_, step) => {
          const x = ops.tensor([1, 2, 3]);
          let h = x;
          for (const b of transformer.blocks) {
            const next = b.forward(h, step);
            if (h !== x) ops.release(h);
            h = next;
          }
          const values = Array.from(h.values());
          ops.release(h);
          ops.release(x);
          return values;
        });
      const reference = run();
      const live = ops.liveCount;
      enableCache(new BlockAdapter({ transformer, blocks: 'blocks', forwardPattern: ForwardPattern.Pattern_3, ops }), {
        fnComputeBlocks: 1,
        bnComputeBlocks: 1,
        maxWarmupSteps: order + 1,
        residualDiffThreshold: 1,
        taylorseerOrder: order,
        taylorseerExpansion: 'newton',
        taylorseerCacheType: cacheType,
      });
      const cached = run();
      expect(summary(transformer, { print: false }).contexts[0].cachedSteps).toEqual(Array.from({ length: 9 - order }, (_, i) => order + 1 + i));
      cached.forEach((out, step) => out.forEach((v, i) => expect(v).toBeCloseTo(reference[step][i], 9)));
      disableCache(transformer);
      expect(ops.liveCount).toBe(live);
    },
  );
});
