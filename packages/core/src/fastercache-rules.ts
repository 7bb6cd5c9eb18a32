// FasterCache's decisions (Lv et al., "FasterCache: Training-Free Video Diffusion Model
// Acceleration with High Quality", as diffusers implements it), free of tensors: when the
// unconditional prediction is rebuilt from the conditional one instead of computed, with which
// frequency weights, and when a self-attention output is forecast from its last two.

/** An open timestep range (lo, hi): a timestep t is within it when lo < t < hi. */
export type TimestepRange = readonly [number, number];

/** The policy's settings, named as diffusers' FasterCacheConfig names them (camelCase). */
export interface FasterCacheOptions {
  readonly spatialAttentionBlockSkipRange: number | null;
  readonly temporalAttentionBlockSkipRange: number | null;
  readonly spatialAttentionTimestepSkipRange: TimestepRange;
  readonly temporalAttentionTimestepSkipRange: TimestepRange;
  readonly lowFrequencyWeightUpdateTimestepRange: TimestepRange;
  readonly highFrequencyWeightUpdateTimestepRange: TimestepRange;
  readonly alphaLowFrequency: number;
  readonly alphaHighFrequency: number;
  readonly unconditionalBatchSkipRange: number;
  readonly unconditionalBatchTimestepSkipRange: TimestepRange;
  readonly attentionWeight: number;
  readonly isGuidanceDistilled: boolean;
  readonly tensorFormat: 'BCFHW' | 'BFCHW' | 'BCHW';
}

export function withinRange(range: TimestepRange, timestep: number): boolean {
  return range[0] < timestep && timestep < range[1];
}

/**
 * Whether the unconditional prediction of the step at `iteration` (the transformer's steps so
 * far in the run, from 0) and `timestep` is rebuilt from the conditional one: never on the first
 * step, every unconditionalBatchSkipRange-th step, outside its range, or for a
 * guidance-distilled model (which has no unconditional branch).
 */
export function skipsUncond(o: FasterCacheOptions, iteration: number, timestep: number): boolean {
  return (
    !o.isGuidanceDistilled && iteration > 0 && withinRange(o.unconditionalBatchTimestepSkipRange, timestep) && iteration % o.unconditionalBatchSkipRange !== 0
  );
}

/** Whether any step of a run can rebuild the unconditional prediction. */
export function uncondSkippingPossible(o: FasterCacheOptions): boolean {
  const [lo, hi] = o.unconditionalBatchTimestepSkipRange;
  return !o.isGuidanceDistilled && o.unconditionalBatchSkipRange > 1 && lo < hi;
}

/** The factors the stored low and high frequency deltas are multiplied by at a rebuilt step. */
export function frequencyWeights(o: FasterCacheOptions, timestep: number): { low: number; high: number } {
  return {
    low: withinRange(o.lowFrequencyWeightUpdateTimestepRange, timestep) ? o.alphaLowFrequency : 1,
    high: withinRange(o.highFrequencyWeightUpdateTimestepRange, timestep) ? o.alphaHighFrequency : 1,
  };
}

/**
 * Whether a self-attention site with this skip range and timestep range may be forecast at
 * `iteration` and `timestep`: within the range, except on every skipRange-th step (and the
 * first). It is forecast only where, besides, the model is guidance-distilled or the step's
 * unconditional prediction is rebuilt (in diffusers' batched call: the batch was halved).
 */
export function attentionMayBeForecast(skipRange: number, range: TimestepRange, iteration: number, timestep: number): boolean {
  if (!withinRange(range, timestep)) return false;
  return !(iteration > 0 && iteration % skipRange === 0);
}
