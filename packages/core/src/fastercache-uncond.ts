// FasterCache's CFG part for pipelines that make separate cond and uncond transformer calls: on
// a computed step it keeps the difference d = uncond - cond split into its low and high frequency
// bands over the (H, W) planes; on a step whose uncond call is skipped it rebuilds the uncond
// prediction from the same step's cond output plus both bands, each multiplied by its weight,
// cumulatively over the skipped steps since the last computed one. diffusers adds the bands in
// the frequency domain; the two masks partition the spectrum, so that is
// cond + w_high·d + (w_low − w_high)·LowPass(d) in the plane domain, which is what is computed
// here, on the host in float64 (TensorOps.toFloat64 / fromFloat64). A computed step only keeps
// device copies of its two outputs; they are read and split at the first rebuild that needs them,
// so a run (or a stretch of steps) in which nothing is rebuilt pays two copies a step, not the
// host reads and the low pass (355 ms a step for Wan 480p's 81-frame output).
import { lowPassPlanes } from './frequency-split.js';
import type { FasterCacheOptions } from './fastercache-rules.js';
import type { TensorOps } from './tensor-ops.js';

const RANK: Readonly<Record<FasterCacheOptions['tensorFormat'], number>> = { BCFHW: 5, BFCHW: 5, BCHW: 4 };

export class FrequencyDeltas<T> {
  /** The last computed step's outputs, not yet split (copies this object owns). */
  private pending: { cond: T; uncond: T } | undefined;
  /** d = uncond - cond of the last computed step, and its low band. */
  private delta: Float64Array | undefined;
  private lowBand: Float64Array | undefined;
  private shape: readonly number[] | undefined;
  private lowWeight = 1;
  private highWeight = 1;

  constructor(
    private readonly ops: TensorOps<T>,
    private readonly tensorFormat: FasterCacheOptions['tensorFormat'],
  ) {
    if (!ops.toFloat64 || !ops.fromFloat64) {
      throw new Error(
        "cache policy 'fastercache': rebuilding the uncond prediction needs TensorOps.toFloat64 and fromFloat64, which this model's tensor ops do not provide",
      );
    }
  }

  get hasValue(): boolean {
    return this.pending !== undefined || this.delta !== undefined;
  }

  /** A computed step: keeps copies of its outputs (split at the next rebuild), the weights back to 1. */
  update(cond: T, uncond: T): void {
    this.planesShape(uncond);
    this.clear();
    this.pending = { cond: this.ops.retain(this.ops.clone(cond)), uncond: this.ops.retain(this.ops.clone(uncond)) };
    this.lowWeight = 1;
    this.highWeight = 1;
  }

  /** uncond - cond of the kept outputs and its low band, made once per computed step, at its first rebuild. */
  private split(): void {
    if (this.pending === undefined) return;
    const { cond, uncond } = this.pending;
    this.pending = undefined;
    const shape = this.ops.shape(uncond);
    let c: Float64Array;
    let d: Float64Array;
    try {
      c = this.read(cond);
      d = this.read(uncond);
    } finally {
      this.ops.release(cond);
      this.ops.release(uncond);
    }
    if (c.length !== d.length) throw new Error(`cache policy 'fastercache': the cond output has ${c.length} values, the uncond output ${d.length}`);
    for (let i = 0; i < d.length; i++) d[i] -= c[i];
    const [height, width] = shape.slice(-2);
    this.delta = d;
    this.lowBand = lowPassPlanes(d, height, width);
    this.shape = shape;
  }

  /** A skipped step: the weights take this step's factors, and the uncond prediction is rebuilt from `cond`. */
  rebuild(cond: T, weights: { low: number; high: number }): T {
    this.split();
    const delta = this.delta as Float64Array;
    const low = this.lowBand as Float64Array;
    const shape = this.ops.shape(cond);
    if (this.shape === undefined || shape.length !== this.shape.length || shape.some((n, i) => n !== this.shape?.[i])) {
      throw new Error(`cache policy 'fastercache': the cond output's shape [${shape}] is not the stored uncond's [${this.shape}]`);
    }
    this.lowWeight *= weights.low;
    this.highWeight *= weights.high;
    const values = this.read(cond);
    const wh = this.highWeight;
    const wl = this.lowWeight - this.highWeight;
    for (let i = 0; i < values.length; i++) values[i] += wh * delta[i] + wl * low[i];
    const out = (this.ops.fromFloat64 as NonNullable<TensorOps<T>['fromFloat64']>)(values, cond);
    if (out === undefined) throw new Error("cache policy 'fastercache': the rebuilt uncond prediction is not finite in the output's dtype");
    return out;
  }

  clear(): void {
    if (this.pending !== undefined) {
      this.ops.release(this.pending.cond);
      this.ops.release(this.pending.uncond);
      this.pending = undefined;
    }
    this.delta = undefined;
    this.lowBand = undefined;
    this.shape = undefined;
  }

  private read(t: T): Float64Array {
    return (this.ops.toFloat64 as NonNullable<TensorOps<T>['toFloat64']>)(t);
  }

  /** The output's shape, checked to have the rank of the configured tensor format. */
  private planesShape(t: T): readonly number[] {
    const shape = this.ops.shape(t);
    const rank = RANK[this.tensorFormat];
    if (shape.length !== rank) {
      throw new Error(
        `cache policy 'fastercache': tensor_format '${this.tensorFormat}' needs a transformer output of rank ${rank} whose last two dims are (H, W), ` +
          `got shape [${shape}] (valid tensor_format: ${Object.keys(RANK).join(', ')}). A model whose output is packed tokens has no (H, W) planes: ` +
          'run it with is_guidance_distilled: true (attention part only) or without classifier-free guidance',
      );
    }
    return shape;
  }
}
