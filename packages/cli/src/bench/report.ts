// What a benchmark found per config: wall time and speedup against the uncached baseline, cached
// steps, blocks computed, and PSNR / SSIM of its images against the baseline's, plus the Pareto
// front of speedup against PSNR.
import { resolveConfig, parseCacheConfig } from '@ditcache/core';
import { loadImage, psnr, ssim } from '@ditcache/metrics';

import { UNCACHED } from './configs.js';
import { cellPaths, type CellRecord } from './runner.js';

export interface ConfigResult {
  readonly name: string;
  readonly cache: Readonly<Record<string, unknown>> | null;
  /** Wall time over all prompts. */
  readonly seconds: number;
  /** Baseline seconds / these seconds. */
  readonly speedup: number;
  /** Mean over prompts. */
  readonly cachedSteps: number;
  /** Blocks computed / blocks in all the transformer calls, over all prompts. */
  readonly computedFraction: number;
  readonly flopsSkippedFraction: number;
  /** Per prompt; Infinity where an image equals the baseline's. */
  readonly psnr: readonly number[];
  readonly ssim: readonly number[];
  /** Mean of the finite PSNRs (Infinity when all are). */
  readonly meanPsnr: number;
  readonly meanSsim: number;
  /** No other config is at least as fast and at least as faithful, and better in one of the two. */
  readonly pareto: boolean;
}

/** Per-prompt PSNR and SSIM (8-bit images, data range 255) of every config against the baseline. */
export async function evaluateBench(out: string, records: ReadonlyMap<string, readonly CellRecord[]>): Promise<ConfigResult[]> {
  const baseline = records.get(UNCACHED);
  if (!baseline) throw new Error('evaluateBench: no uncached baseline');
  const baseSeconds = sum(baseline.map((r) => r.seconds));
  const baseImages = await Promise.all(baseline.map((r) => loadImage(cellPaths(out, UNCACHED, r.prompt).image)));
  const results: Omit<ConfigResult, 'pareto'>[] = [];
  for (const [name, cells] of records) {
    const images = await Promise.all(cells.map((r) => loadImage(cellPaths(out, name, r.prompt).image)));
    const psnrs = images.map((img, i) => psnr(baseImages[i], img));
    const ssims = images.map((img, i) => ssim(baseImages[i], img));
    const seconds = sum(cells.map((r) => r.seconds));
    results.push({
      name,
      cache: cells[0]?.cache ?? null,
      seconds,
      speedup: baseSeconds / seconds,
      cachedSteps: sum(cells.map((r) => r.cachedSteps.length)) / cells.length,
      computedFraction: sum(cells.map((r) => r.computedBlocks)) / sum(cells.map((r) => r.totalBlocks)),
      flopsSkippedFraction: sum(cells.map((r) => r.flopsSkippedFraction)) / cells.length,
      psnr: psnrs,
      ssim: ssims,
      meanPsnr: meanOfFinite(psnrs),
      meanSsim: sum(ssims) / ssims.length,
    });
  }
  const cached = results.filter((r) => r.name !== UNCACHED);
  const front = paretoFlags(cached.map((r) => ({ x: r.speedup, y: r.meanPsnr })));
  return results.map((r) => ({ ...r, pareto: r.name !== UNCACHED && front[cached.indexOf(r)] }));
}

/** Per point: true when no other point is at least as good in x and y and better in one (both maximised). */
export function paretoFlags(points: readonly { x: number; y: number }[]): boolean[] {
  return points.map((p) => !points.some((o) => o.x >= p.x && o.y >= p.y && (o.x > p.x || o.y > p.y)));
}

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

function meanOfFinite(xs: readonly number[]): number {
  const finite = xs.filter(Number.isFinite);
  return finite.length ? sum(finite) / finite.length : Infinity;
}

export function formatPsnr(r: ConfigResult): string {
  const infinite = r.psnr.filter((p) => !Number.isFinite(p)).length;
  if (infinite === r.psnr.length) return 'inf';
  return `${r.meanPsnr.toFixed(2)}${infinite ? ` (+${infinite} inf)` : ''}`;
}

/** The markdown table of a benchmark, fastest first; Pareto-optimal configs are marked. */
export function benchMarkdown(results: readonly ConfigResult[], steps: number): string {
  const header =
    '| Config | Fn | Bn | Threshold | Warmup | Max cont. | TaylorSeer | Wall s | Speedup | Cached steps | Blocks computed | PSNR dB | SSIM | Pareto |';
  const rule = '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|';
  const rows = [...results]
    .sort((a, b) => (a.name === UNCACHED ? -1 : b.name === UNCACHED ? 1 : b.speedup - a.speedup))
    .map((r) => {
      const settings = r.cache
        ? (() => {
            const c = resolveConfig(parseCacheConfig(r.cache).base);
            const mc = c.maxContinuousCachedSteps < 0 ? '-' : String(c.maxContinuousCachedSteps);
            return [
              c.fnComputeBlocks,
              c.bnComputeBlocks,
              c.residualDiffThreshold,
              c.maxWarmupSteps,
              mc,
              c.enableTaylorseer ? `order ${c.taylorseerOrder}` : 'off',
            ];
          })()
        : ['-', '-', '-', '-', '-', '-'];
      return `| ${[
        r.name,
        ...settings,
        r.seconds.toFixed(2),
        `${r.speedup.toFixed(2)}x`,
        `${r.cachedSteps.toFixed(1)}/${steps}`,
        `${(100 * r.computedFraction).toFixed(1)}%`,
        formatPsnr(r),
        r.meanSsim.toFixed(4),
        r.pareto ? 'yes' : '',
      ].join(' | ')} |`;
    });
  return [header, rule, ...rows].join('\n');
}
