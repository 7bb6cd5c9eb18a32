// cache-dit's DMD calibrator (Dynamic Mode Decomposition, not distillation) as a residual store:
// it keeps the last computed residuals as snapshots and, once the newest 4 or more are evenly
// spaced, forecasts a cached step by advancing their exponential fit (dmd-fit.ts) to it, each batch
// item on its own. With fewer, it forecasts as cache-dit's DMD does during warm-up: a first-order
// Taylor step whose difference, as in cache-dit, spans the last three computed values (the newest
// minus the one two updates back) over the gap to the last one. A fit that fails, or a forecast
// that is not finite in the tensor's dtype, reuses the newest snapshot.
import { fitDmd, type DmdFit } from './dmd-fit.js';
import type { Forecast, ResidualStore } from './residual-store.js';
import { sameShape, type TensorOps } from './tensor-ops.js';

/** The fewest evenly spaced snapshots the exponential fit takes (one complex mode: 3 pairs). */
const MIN_FIT_SNAPSHOTS = 4;
/**
 * cache-dit's step counter starts at -1 at a state's first update and its Taylor fallback forms a
 * difference only from counter 2 on: from 3 steps after that update.
 */
const FIRST_DIFFERENCE_AFTER = 3;

export interface DmdOptions {
  /** Snapshots kept (cache-dit's dmd_history). */
  readonly history: number;
  /** SVD rank of the fit, 0 for automatic. */
  readonly rank: number;
  /** Added to the singular values the fit inverts. */
  readonly ridge: number;
}

interface Snapshot<T> {
  readonly step: number;
  readonly value: T;
  /** Its float64 values, read once the first fit needs them. */
  host?: Float64Array;
}

export class DmdCalibrator<T> implements ResidualStore<T> {
  private snapshots: Snapshot<T>[] = [];
  /** The newest value and, from the third step on, its first difference. */
  private taylor: T[] = [];
  /** The same pair one update earlier, which the next difference is taken against. */
  private previousTaylor: T[] = [];
  private firstStep = 0;
  private lastStep = 0;
  /** The fit of the current window, keyed by it, so the steps it serves share one fit. */
  private fit: { key: string; fits: (DmdFit | undefined)[] } | undefined;

  constructor(
    private readonly ops: TensorOps<T>,
    private readonly options: DmdOptions,
  ) {
    if (!ops.toFloat64 || !ops.fromFloat64) {
      throw new Error("calibrator_type 'dmd' needs tensor ops that read values to the host (TensorOps.toFloat64 and fromFloat64); these ops have none");
    }
  }

  get hasValue(): boolean {
    return this.taylor.length > 0;
  }

  update(step: number, value: T): void {
    const newest = this.snapshots.at(-1);
    if (newest !== undefined && !sameShape(this.ops.shape(newest.value), this.ops.shape(value))) this.clear();
    if (!this.hasValue) this.firstStep = step;
    const kept = this.ops.retain(value);
    const next = [kept];
    const gap = step - this.lastStep;
    const older = this.previousTaylor[0];
    if (older !== undefined && step - this.firstStep >= FIRST_DIFFERENCE_AFTER && gap > 0) {
      const difference = this.ops.sub(kept, older);
      next.push(this.ops.retain(gap === 1 ? difference : this.ops.scale(difference, 1 / gap)));
      if (gap !== 1) this.ops.release(difference);
    }
    const dropped = [...this.previousTaylor];
    this.previousTaylor = this.taylor;
    this.taylor = next;
    this.snapshots.push({ step, value: kept });
    while (this.snapshots.length > this.options.history) dropped.push((this.snapshots.shift() as Snapshot<T>).value);
    this.releaseUnheld(dropped);
    this.lastStep = step;
    this.fit = undefined;
  }

  predict(step: number): Forecast<T> {
    const window = this.evenlySpacedTail();
    if (window.snapshots.length < MIN_FIT_SNAPSHOTS) return this.taylorForecast(step);
    const newest = window.snapshots[window.snapshots.length - 1];
    const key = `${newest.step}:${window.snapshots.length}:${window.spacing}`;
    if (this.fit?.key !== key) this.fit = { key, fits: this.fitItems(window.snapshots) };
    const values = this.forecastItems(this.fit.fits, (step - newest.step) / window.spacing);
    const forecast = values && (this.ops.fromFloat64 as NonNullable<TensorOps<T>['fromFloat64']>)(values, newest.value);
    return forecast === undefined ? { value: newest.value, owned: false } : { value: forecast, owned: true };
  }

  clear(): void {
    const held = [...this.taylor, ...this.previousTaylor, ...this.snapshots.map((s) => s.value)];
    this.taylor = [];
    this.previousTaylor = [];
    this.snapshots = [];
    this.fit = undefined;
    this.releaseUnheld(held);
  }

  /**
   * The longest run of snapshots, ending at the newest, taken at one spacing: the fit advances
   * one spacing per power of its eigenvalues, so mixed spacings cannot share a fit.
   */
  private evenlySpacedTail(): { snapshots: Snapshot<T>[]; spacing: number } {
    const s = this.snapshots;
    if (s.length < 2) return { snapshots: [], spacing: 0 };
    const spacing = s[s.length - 1].step - s[s.length - 2].step;
    let first = s.length - 2;
    while (first > 0 && s[first].step - s[first - 1].step === spacing) first -= 1;
    return { snapshots: s.slice(first), spacing };
  }

  /** One fit per batch item (the leading dimension of a tensor of rank 2 or more). */
  private fitItems(window: Snapshot<T>[]): (DmdFit | undefined)[] {
    const hosts = window.map((snapshot) => {
      snapshot.host ??= (this.ops.toFloat64 as NonNullable<TensorOps<T>['toFloat64']>)(snapshot.value);
      return snapshot.host;
    });
    const items = this.batchItems(window[0].value);
    const size = hosts[0].length / items;
    return Array.from({ length: items }, (_, i) =>
      fitDmd(
        hosts.map((h) => h.subarray(i * size, (i + 1) * size)),
        this.options.rank,
        this.options.ridge,
      ),
    );
  }

  /** The items' forecasts at horizon k, joined; undefined when an item's fit failed. */
  private forecastItems(fits: (DmdFit | undefined)[], k: number): Float64Array | undefined {
    if (fits.some((f) => f === undefined)) return undefined;
    const parts = fits.map((f) => (f as DmdFit).forecast(k));
    const out = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const p of parts) {
      out.set(p, offset);
      offset += p.length;
    }
    return out;
  }

  private batchItems(value: T): number {
    const shape = this.ops.shape(value);
    return shape.length > 1 ? shape[0] : 1;
  }

  /** cache-dit's warm-up forecast: the newest value plus its first difference times the steps elapsed. */
  private taylorForecast(step: number): Forecast<T> {
    const [value, difference] = this.taylor;
    if (value === undefined) throw new Error('DmdCalibrator: nothing stored yet');
    if (difference === undefined) return { value, owned: false };
    return { value: this.ops.addScaled(value, difference, step - this.lastStep), owned: true };
  }

  /** Releases each of `tensors` that neither the snapshots nor the Taylor pairs hold any more. */
  private releaseUnheld(tensors: readonly T[]): void {
    const held = new Set([...this.taylor, ...this.previousTaylor, ...this.snapshots.map((s) => s.value)]);
    for (const t of new Set(tensors)) if (!held.has(t)) this.ops.release(t);
  }
}
