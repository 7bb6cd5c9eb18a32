// FoCa's forecasts against the rule written out here in float64 (cache-dit's FoCaState: a Heun
// step from the last computed value, averaging the last computed slope with the slope of the two
// newest values, forecasts included; damped towards the anchor beyond 3 steps), and its exactness
// on linear trajectories within that horizon.
import { describe, expect, it } from 'vitest';

import { FoCaCalibrator } from '../src/index.js';
import { PlainTensorOps, type PlainTensor } from '../src/testing.js';

/** The rule on plain arrays, step by step as cache-dit's state moves. */
class FoCaRule {
  latest?: number[];
  beforeLatest?: number[];
  anchor?: number[];
  beforeAnchor?: number[];
  anchorStep = 0;

  update(step: number, y: number[]): void {
    if (this.latest && this.latest.length !== y.length)
      Object.assign(this, { latest: undefined, beforeLatest: undefined, anchor: undefined, beforeAnchor: undefined });
    [this.beforeAnchor, this.anchor, this.beforeLatest, this.latest, this.anchorStep] = [this.anchor, y, this.latest, y, step];
  }

  predict(step: number): number[] {
    const { latest, beforeLatest, anchor, beforeAnchor } = this as Required<FoCaRule>;
    if (!beforeLatest || !beforeAnchor) return anchor;
    const e = step - this.anchorStep;
    const heun = (h: number) => anchor.map((a, i) => a + (h / 2) * (a - beforeAnchor[i] + latest[i] - beforeLatest[i]));
    const forecast = e <= 3 ? heun(e) : heun(3).map((v, i) => (3 / e) * v + (1 - 3 / e) * anchor[i]);
    [this.beforeLatest, this.latest] = [latest, forecast];
    return forecast;
  }
}

const ops = new PlainTensorOps();

function forecast(store: FoCaCalibrator<PlainTensor>, step: number): number[] {
  const f = store.predict(step);
  const values = Array.from(f.value.values());
  if (f.owned) ops.release(f.value);
  return values;
}

/** A smooth, curved trajectory in 3 channels. */
const curve = (s: number) => [Math.sin(0.3 * s) + 2, 0.5 * s * s - s, Math.exp(-0.2 * s)];

describe('FoCa (cache-dit FoCaCalibrator)', () => {
  it("follows cache-dit's rule through warm-up, runs of cached steps (recursive), long gaps (damped) and new computed steps", () => {
    const store = new FoCaCalibrator(ops);
    const rule = new FoCaRule();
    // c: computed, p: cached. Runs of 1, 2, 6 cached steps, one right after the first computed step.
    const plan = 'cpccppcppppppccpcpp';
    plan.split('').forEach((kind, step) => {
      if (kind === 'c') {
        store.update(step, ops.tensor(curve(step)));
        rule.update(step, curve(step));
      } else {
        const want = rule.predict(step);
        forecast(store, step).forEach((v, i) => expect(v).toBeCloseTo(want[i], 12));
      }
    });
    store.clear();
    expect(ops.liveCount).toBe(0);
  });

  it('before two computed steps, reuses the last computed value and keeps its window', () => {
    const store = new FoCaCalibrator(ops);
    store.update(0, ops.tensor([1, 2]));
    expect(forecast(store, 1)).toEqual([1, 2]);
    expect(forecast(store, 2)).toEqual([1, 2]);
    store.update(3, ops.tensor([4, 8]));
    // Slopes over the anchors (0 -> 3) and over the window (the same pair: the reuses did not move it).
    expect(forecast(store, 4)).toEqual([4 + 0.5 * 6, 8 + 0.5 * 12]);
    store.clear();
    expect(ops.liveCount).toBe(0);
  });

  it('is exact on a linear trajectory up to 3 steps past the anchor, and damped beyond', () => {
    const line = (s: number) => [3 - 0.5 * s, 2 * s];
    const store = new FoCaCalibrator(ops);
    store.update(0, ops.tensor(line(0)));
    store.update(1, ops.tensor(line(1)));
    for (const step of [2, 3, 4]) forecast(store, step).forEach((v, i) => expect(v).toBeCloseTo(line(step)[i], 12));
    // 4 steps past the anchor: 3/4 of the 3-step forecast plus 1/4 of the anchor.
    forecast(store, 5).forEach((v, i) => expect(v).toBeCloseTo(line(1)[i] + 0.75 * (line(4)[i] - line(1)[i]), 12));
    store.clear();
  });

  it('starts over when the shape changes', () => {
    const store = new FoCaCalibrator(ops);
    store.update(0, ops.tensor([1, 2]));
    store.update(1, ops.tensor([2, 3]));
    store.update(2, ops.tensor([5, 5, 5]));
    expect(forecast(store, 3)).toEqual([5, 5, 5]);
    store.clear();
    expect(ops.liveCount).toBe(0);
  });

  it('refuses to forecast before any computed step', () => {
    expect(() => new FoCaCalibrator(ops).predict(0)).toThrow(/nothing stored yet/);
  });
});
