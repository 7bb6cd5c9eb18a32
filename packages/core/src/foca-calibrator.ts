// cache-dit's FoCa calibrator (Forecast then Calibrate, arXiv 2508.16211) as a residual store:
// the cached residual is integrated like an ODE, by a trapezoidal (Heun) step from the last
// computed value, averaging the slope between the last two computed values with the slope
// between the last two values of any kind, forecasts included. Each forecast therefore becomes
// the newest value the next one starts from (recursive prediction over a run of cached steps),
// while the anchor stays the last computed step; horizons beyond 3 steps are damped towards it.
import type { Forecast, ResidualStore } from './residual-store.js';
import { sameShape, type TensorOps } from './tensor-ops.js';

/** Beyond this many steps from the anchor, FoCa blends its 3-step forecast back towards the anchor. */
const MAX_HORIZON = 3;

/** What FoCa keeps; one tensor may fill two slots (a computed value is the anchor and the newest). */
interface FoCaSlots<T> {
  /** The newest value, computed or forecast, and the value before it. */
  latest?: T;
  beforeLatest?: T;
  /** The last computed value, and the computed value before it. */
  anchor?: T;
  beforeAnchor?: T;
}

export class FoCaCalibrator<T> implements ResidualStore<T> {
  private slots: FoCaSlots<T> = {};
  /** The step of the anchor. */
  private anchorStep = 0;

  constructor(private readonly ops: TensorOps<T>) {}

  get hasValue(): boolean {
    return this.slots.latest !== undefined;
  }

  update(step: number, value: T): void {
    const { latest, anchor } = this.slots;
    // A new shape (another resolution) starts over, as cache-dit's state does.
    if (latest !== undefined && !sameShape(this.ops.shape(latest), this.ops.shape(value))) {
      this.clear();
      this.update(step, value);
      return;
    }
    const computed = this.ops.retain(value);
    this.fill({ beforeAnchor: anchor, anchor: computed, beforeLatest: latest, latest: computed });
    this.anchorStep = step;
  }

  /**
   * The forecast at `step`, which becomes the newest value. Until two computed steps (and one
   * value before the newest) exist, the last computed value as it is, and nothing moves.
   */
  predict(step: number): Forecast<T> {
    const { latest, beforeLatest, anchor, beforeAnchor } = this.slots;
    if (latest === undefined || anchor === undefined) throw new Error('FoCaCalibrator: nothing stored yet');
    if (beforeLatest === undefined || beforeAnchor === undefined) return { value: anchor, owned: false };
    const ops = this.ops;
    const anchorSlope = ops.sub(anchor, beforeAnchor);
    const latestSlope = ops.sub(latest, beforeLatest);
    const slopes = ops.add(anchorSlope, latestSlope);
    ops.release(anchorSlope);
    ops.release(latestSlope);
    const elapsed = step - this.anchorStep;
    let forecast: T;
    if (elapsed <= MAX_HORIZON) {
      forecast = ops.addScaled(anchor, slopes, elapsed / 2);
    } else {
      const weight = MAX_HORIZON / elapsed;
      const atHorizon = ops.addScaled(anchor, slopes, MAX_HORIZON / 2);
      const weighted = ops.scale(atHorizon, weight);
      forecast = ops.addScaled(weighted, anchor, 1 - weight);
      ops.release(atHorizon);
      ops.release(weighted);
    }
    ops.release(slopes);
    const kept = ops.retain(forecast);
    this.fill({ ...this.slots, beforeLatest: latest, latest: kept });
    return { value: kept, owned: false };
  }

  clear(): void {
    this.fill({});
  }

  /** Takes `next` as the slots and releases the tensors no slot holds any more. */
  private fill(next: FoCaSlots<T>): void {
    const held = new Set(Object.values(next));
    for (const t of new Set(Object.values(this.slots))) if (t !== undefined && !held.has(t)) this.ops.release(t);
    this.slots = next;
  }
}
