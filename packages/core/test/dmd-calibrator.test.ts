// DMD: the fit against cache-dit's own (torch, float64: test/fixtures/dmd-fit.json, made by
// tools/cache-references-calibrators/dmd_fit.py), its exactness on sums of exponentials computed
// here, and the store's choice of forecast as cache-dit's DMD state makes it: the first-order
// Taylor warm-up (its difference spanning the newest value and the one two updates back), the
// evenly spaced tail the fit takes, one fit per batch item, and reuse when the fit fails.
import { readFileSync } from 'node:fs';

import { beforeEach, describe, expect, it } from 'vitest';

import { DmdCalibrator, fitDmd, type TensorOps } from '../src/index.js';
import { PlainTensorOps, type PlainTensor } from '../src/testing.js';

interface FitCase {
  name: string;
  rank: number;
  ridge: number;
  snapshots: number[][];
  forecasts: Record<string, number[]>;
}

const fixture = JSON.parse(readFileSync(new URL('./fixtures/dmd-fit.json', import.meta.url), 'utf-8')) as { cases: FitCase[] };
let ops = new PlainTensorOps();
beforeEach(() => {
  ops = new PlainTensorOps();
});
/** cache-dit's history and automatic rank; no ridge, so that exact data gives exact forecasts. */
const DEFAULTS = { history: 6, rank: 0, ridge: 0 };

function relativeError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < want.length; i++) {
    diff += (got[i] - want[i]) ** 2;
    norm += want[i] ** 2;
  }
  return Math.sqrt(diff / norm);
}

/** y(t) = sum over modes of a Re(mu^t) + b Im(mu^t), for real t (principal powers). */
function exponentials(t: number): number[] {
  const modes: [number, number, number[], number[]][] = [
    [0.9, 0, [1, -2, 0.5, 3], [0, 0, 0, 0]],
    [1.1 * Math.cos(0.4), 1.1 * Math.sin(0.4), [0.3, 1, -1, 0.2], [2, -0.5, 0.1, 1]],
  ];
  return [0, 1, 2, 3].map((i) =>
    modes.reduce((sum, [re, im, a, b]) => {
      const r = Math.hypot(re, im) ** t;
      const angle = Math.atan2(im, re) * t;
      return sum + a[i] * r * Math.cos(angle) + b[i] * r * Math.sin(angle);
    }, 0),
  );
}

function forecast(store: DmdCalibrator<PlainTensor>, step: number): number[] {
  const f = store.predict(step);
  const values = Array.from(f.value.values());
  if (f.owned) ops.release(f.value);
  return values;
}

describe('the DMD fit', () => {
  it.each(fixture.cases.map((c) => [c.name, c] as const))("%s: cache-dit's forecasts", (_name, c) => {
    const fit = fitDmd(
      c.snapshots.map((s) => Float64Array.from(s)),
      c.rank,
      c.ridge,
    );
    expect(fit).toBeDefined();
    for (const [k, want] of Object.entries(c.forecasts)) expect(relativeError(fit?.forecast(Number(k)) ?? [], want)).toBeLessThan(1e-9);
  });

  it('is exact on a sum of exponentials (one real mode, one oscillating pair), at whole and fractional horizons', () => {
    const fit = fitDmd(
      [0, 1, 2, 3, 4].map((t) => Float64Array.from(exponentials(t))),
      0,
      0,
    );
    for (const k of [1, 2, 0.5, 2.25]) expect(relativeError(fit?.forecast(k) ?? [], exponentials(4 + k))).toBeLessThan(1e-10);
  });

  it('fails on non-finite snapshots, as torch refuses them', () => {
    expect(
      fitDmd(
        [
          [1, 2],
          [2, Number.NaN],
          [3, 4],
          [4, 5],
        ].map((s) => Float64Array.from(s)),
        0,
        1e-8,
      ),
    ).toBeUndefined();
  });
});

describe('the DMD calibrator (cache-dit DMDCalibrator)', () => {
  it('forecasts the exponential fit once 4 evenly spaced snapshots exist, and the Taylor warm-up before', () => {
    const store = new DmdCalibrator(ops, DEFAULTS);
    const at = (t: number) => ops.tensor(exponentials(t), [1, 4]);
    for (const t of [0, 1, 2]) store.update(t, at(t));
    // Three updates: cache-dit's first difference comes at its third step after the first update.
    expect(forecast(store, 3)).toEqual(exponentials(2));
    store.update(4, at(4));
    // Warm-up Taylor (2 and 4 are the only snapshots 2 steps apart): newest + (newest - the value
    // two updates back) / the gap to the last update * the steps elapsed.
    const taylor = exponentials(4).map((v, i) => v + ((v - exponentials(1)[i]) / 2) * 1);
    forecast(store, 5).forEach((v, i) => expect(v).toBeCloseTo(taylor[i], 12));
    for (const t of [5, 6, 7]) store.update(t, at(t));
    // 4..7 are evenly spaced: the fit, exact on the two modes.
    expect(relativeError(forecast(store, 9), exponentials(9))).toBeLessThan(1e-9);
    expect(relativeError(forecast(store, 8), exponentials(8))).toBeLessThan(1e-9);
    store.clear();
    expect(ops.liveCount).toBe(0);
  });

  it('fits only the evenly spaced tail: fractional horizons between snapshots 2 steps apart', () => {
    const store = new DmdCalibrator(ops, DEFAULTS);
    // 0 and 1 lie off the 2-step spacing of 1, 3, 5, 7: the fit takes those four.
    for (const t of [0, 1, 3, 5, 7]) store.update(t, ops.tensor(exponentials(t / 2), [1, 4]));
    expect(relativeError(forecast(store, 8), exponentials(4))).toBeLessThan(1e-9);
    store.update(8, ops.tensor(exponentials(4), [1, 4]));
    // Now the tail is 7, 8 only: the Taylor warm-up again (newest minus the value two updates back).
    const taylor = exponentials(4).map((v, i) => v + (v - exponentials(2.5)[i]) * 1);
    forecast(store, 9).forEach((v, i) => expect(v).toBeCloseTo(taylor[i], 12));
    store.clear();
    expect(ops.liveCount).toBe(0);
  });

  it('fits each batch item on its own', () => {
    const store = new DmdCalibrator(ops, DEFAULTS);
    const other = (t: number) => exponentials(t).map((v, i) => (i % 2 ? 0.5 : -2) * v + 0.8 ** t);
    for (const t of [0, 1, 2, 3, 4, 5]) store.update(t, ops.tensor([...exponentials(t), ...other(t)], [2, 4]));
    const both = forecast(store, 7);
    expect(relativeError(both.slice(0, 4), exponentials(7))).toBeLessThan(1e-9);
    const alone =
      fitDmd(
        [0, 1, 2, 3, 4, 5].map((t) => Float64Array.from(other(t))),
        0,
        0,
      )?.forecast(2) ?? [];
    expect(relativeError(both.slice(4), alone)).toBeLessThan(1e-12);
    store.clear();
  });

  it('keeps `history` snapshots', () => {
    const store = new DmdCalibrator(ops, { ...DEFAULTS, history: 4 });
    for (const t of [0, 1, 2, 3, 4, 5]) store.update(t, ops.tensor(exponentials(t), [1, 4]));
    const window =
      fitDmd(
        [2, 3, 4, 5].map((t) => Float64Array.from(exponentials(t))),
        0,
        0,
      )?.forecast(1) ?? [];
    expect(relativeError(forecast(store, 6), window)).toBeLessThan(1e-12);
    store.clear();
    expect(ops.liveCount).toBe(0);
  });

  it('reuses the newest snapshot when the forecast is not finite in the tensor dtype', () => {
    const store = new DmdCalibrator(ops, DEFAULTS);
    // Growth by 1e12 per step overflows float32 two steps on.
    for (const t of [0, 1, 2, 3, 4]) store.update(t, ops.tensor([1e12 ** t * 1e-30, 1e12 ** t * 2e-30], [1, 2], 'float32'));
    expect(forecast(store, 6)).toEqual(Array.from(Float32Array.from([1e18, 2e18])));
    store.clear();
    expect(ops.liveCount).toBe(0);
  });

  it('starts over when the shape changes', () => {
    const store = new DmdCalibrator(ops, DEFAULTS);
    for (const t of [0, 1, 2, 3, 4]) store.update(t, ops.tensor(exponentials(t), [1, 4]));
    store.update(5, ops.tensor([1, 2], [1, 2]));
    expect(forecast(store, 6)).toEqual([1, 2]);
    store.clear();
    expect(ops.liveCount).toBe(0);
  });

  it('needs tensor ops that read values to the host', () => {
    const { toFloat64: _read, fromFloat64: _write, ...hostless } = ops;
    expect(() => new DmdCalibrator(hostless as unknown as TensorOps<PlainTensor>, DEFAULTS)).toThrow(/toFloat64/);
  });
});
