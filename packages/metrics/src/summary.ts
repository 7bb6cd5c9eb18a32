/**
 * One metric over a set of images: the mean, how many values it is over, and every value.
 *
 * PSNR of identical images is +Infinity. Such values stay in `perImage` but are left out of
 * the mean and counted in `infiniteCount` instead (a mean containing one Infinity says
 * nothing). JSON has no Infinity: `toJSON` writes them as `null` (see `summaryToJson`).
 */
export interface MetricSummary {
  /** Mean of the finite values; null when there is none. */
  mean: number | null;
  /** Number of finite values the mean is over. */
  count: number;
  /** Number of +Infinity values (identical pairs for PSNR), left out of the mean. */
  infiniteCount: number;
  /** Every value by image name, in the order the images were compared. */
  perImage: Record<string, number>;
}

export function summarize(perImage: Record<string, number>): MetricSummary {
  let sum = 0;
  let count = 0;
  let infiniteCount = 0;
  for (const value of Object.values(perImage)) {
    if (value === Infinity) {
      infiniteCount++;
    } else {
      sum += value;
      count++;
    }
  }
  return { mean: count > 0 ? sum / count : null, count, infiniteCount, perImage };
}

/** The JSON form of a summary: Infinity becomes null; `infiniteCount` says how many there are. */
export interface MetricSummaryJson {
  mean: number | null;
  count: number;
  infiniteCount: number;
  perImage: Record<string, number | null>;
}

export function summaryToJson(summary: MetricSummary): MetricSummaryJson {
  const perImage: Record<string, number | null> = {};
  for (const [name, value] of Object.entries(summary.perImage)) {
    perImage[name] = Number.isFinite(value) ? value : null;
  }
  return { mean: summary.mean, count: summary.count, infiniteCount: summary.infiniteCount, perImage };
}
