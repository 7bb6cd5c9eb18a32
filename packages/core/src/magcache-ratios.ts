// MagCache's magnitude ratios: per step, how the norm of a chain's residual (output minus
// input) changes from the previous step, as a calibration run measured it. Ratios measured
// at one step count are resampled to another by nearest neighbour, exactly as diffusers'
// MagCache resamples them, so a list calibrated at 28 steps skips the same steps in both.

/**
 * The ratios diffusers ships for FLUX.1 (dev / schnell) at 28 steps, from the MagCache
 * authors (github.com/Zehong-Ma/MagCache); recorded here as data.
 */
export const FLUX_MAG_RATIOS: readonly number[] = Object.freeze([
  1.0, 1.21094, 1.11719, 1.07812, 1.0625, 1.03906, 1.03125, 1.03906, 1.02344, 1.03125, 1.02344, 0.98047, 1.01562, 1.00781, 1.0, 1.00781, 1.0, 1.00781, 1.0, 1.0,
  0.99609, 0.99609, 0.98047, 0.98828, 0.96484, 0.95703, 0.93359, 0.89062,
]);

/** Named ratio lists a config may give as `mag_ratios` instead of the numbers. */
export const MAG_RATIOS_PRESETS: Readonly<Record<string, readonly number[]>> = Object.freeze({ flux: FLUX_MAG_RATIOS });

/**
 * `ratios` resampled to `steps` entries: entry i takes the source entry nearest to
 * i * (n - 1) / (steps - 1), the product rounded to float32 and halves rounded to even, as
 * diffusers computes it (so ties such as 28 -> 55 steps pick the same entries); one step takes
 * the last ratio.
 */
export function magRatiosForSteps(ratios: readonly number[], steps: number): number[] {
  if (ratios.length === 0) throw new RangeError('magRatiosForSteps: no ratios to resample');
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`magRatiosForSteps: steps must be an integer >= 1, got ${steps}`);
  if (steps === ratios.length) return [...ratios];
  if (steps === 1) return [ratios[ratios.length - 1]];
  const scale = Math.fround((ratios.length - 1) / (steps - 1));
  return Array.from({ length: steps }, (_, i) => ratios[roundHalfToEven(Math.fround(i * scale))]);
}

function roundHalfToEven(x: number): number {
  const floor = Math.floor(x);
  const fraction = x - floor;
  if (fraction !== 0.5) return Math.round(x);
  return floor % 2 === 0 ? floor : floor + 1;
}
