import type { MetricSummary } from './summary.js';
import { summaryToJson, type MetricSummaryJson } from './summary.js';

/** Every metric the CLI knows, in the order reports list them. */
export const METRIC_NAMES = ['psnr', 'ssim', 'mse', 'mae', 'lpips', 'fid', 'clip_score'] as const;
export type MetricName = (typeof METRIC_NAMES)[number];

/** FID is one number for two sets, not a mean over pairs. */
export interface FidResult {
  value: number;
  /** Images in the compared set. */
  count: number;
  /** Images in the reference set. */
  referenceCount: number;
}

export type MetricResult = { kind: 'summary'; summary: MetricSummary } | { kind: 'fid'; fid: FidResult };

/** The metrics of one comparison: a test image or directory against its reference. */
export interface Comparison {
  /** What is compared, e.g. "test" or "DBCache_F1B0". */
  label: string;
  reference: string;
  compared: string;
  results: Partial<Record<MetricName, MetricResult>>;
}

export type ComparisonJson = Partial<Record<MetricName, MetricSummaryJson | FidResult>>;

export function comparisonToJson(comparison: Comparison): ComparisonJson {
  const out: ComparisonJson = {};
  for (const name of METRIC_NAMES) {
    const result = comparison.results[name];
    if (!result) continue;
    out[name] = result.kind === 'fid' ? result.fid : summaryToJson(result.summary);
  }
  return out;
}

const DECIMALS: Record<MetricName, number> = { psnr: 4, ssim: 6, mse: 4, mae: 4, lpips: 6, fid: 4, clip_score: 4 };

function formatNumber(value: number | null, metric: MetricName): string {
  if (value === null) return '-';
  if (value === Infinity) return 'inf';
  return value.toFixed(DECIMALS[metric]);
}

/** One table cell: the mean, with identical (infinite-PSNR) pairs noted. */
function cell(metric: MetricName, result: MetricResult | undefined): string {
  if (!result) return '-';
  if (result.kind === 'fid') return formatNumber(result.fid.value, metric);
  const { mean, infiniteCount } = result.summary;
  if (mean === null && infiniteCount > 0) return 'inf';
  return infiniteCount > 0 ? `${formatNumber(mean, metric)} (+${infiniteCount} inf)` : formatNumber(mean, metric);
}

function pairCount(comparison: Comparison): number | null {
  for (const result of Object.values(comparison.results)) {
    if (result?.kind === 'summary') return result.summary.count + result.summary.infiniteCount;
    if (result?.kind === 'fid') return result.fid.count;
  }
  return null;
}

/** A markdown table, one row per comparison, one column per metric asked for. */
export function markdownTable(comparisons: readonly Comparison[], metrics: readonly MetricName[]): string {
  const header = ['compared', ...metrics.map((m) => (m === 'psnr' ? 'psnr (dB)' : m)), 'images'];
  const lines = [
    `| ${header.join(' | ')} |`,
    `| --- | ${header
      .slice(1)
      .map(() => '---:')
      .join(' | ')} |`,
  ];
  for (const comparison of comparisons) {
    const cells = [comparison.label, ...metrics.map((m) => cell(m, comparison.results[m])), String(pairCount(comparison) ?? '-')];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

/** The plain-text report: one line per metric. */
export function textReport(comparisons: readonly Comparison[], metrics: readonly MetricName[]): string {
  const lines: string[] = [];
  for (const comparison of comparisons) {
    lines.push(`${comparison.compared} vs ${comparison.reference}`);
    for (const metric of metrics) {
      const result = comparison.results[metric];
      if (!result) continue;
      if (result.kind === 'fid') {
        const { value, count, referenceCount } = result.fid;
        lines.push(`  ${metric}: ${formatNumber(value, metric)} (${count} images vs ${referenceCount} reference images)`);
        continue;
      }
      const { mean, count, infiniteCount } = result.summary;
      const unit = metric === 'psnr' ? ' dB' : '';
      let line = `  ${metric}: ${mean === null ? 'no finite value' : formatNumber(mean, metric) + unit} (mean of ${count})`;
      if (infiniteCount > 0) {
        line += `; ${infiniteCount} identical pair${infiniteCount === 1 ? '' : 's'} at Infinity, left out of the mean`;
      }
      lines.push(line);
    }
  }
  return lines.join('\n');
}
