// What a benchmark found per config: wall time and speedup against the uncached baseline, cached
// steps, blocks computed, and PSNR / SSIM of its images against the baseline's, plus the Pareto
// front of speedup against PSNR.
import { parseCacheConfig, policyRegistry, resolveConfig, type CacheConfig } from '@ditcache/core';
import { loadImage, mse, psnr, psnrFromMse, ssim } from '@ditcache/metrics';

import { UNCACHED } from './configs.js';
import { cellFrames, cellPaths, type CellRecord } from './runner.js';

export interface ConfigResult {
  readonly name: string;
  readonly cache: Readonly<Record<string, unknown>> | null;
  /** Wall time over all prompts. */
  readonly seconds: number;
  /** Baseline seconds / these seconds. */
  readonly speedup: number;
  /** Mean over prompts. */
  readonly cachedSteps: number;
  /** Under CFG with separate branches: the unconditional branch's cached steps, mean over prompts. */
  readonly cfgCachedSteps?: number;
  /** Blocks computed / blocks in all the transformer calls, over all prompts. */
  readonly computedFraction: number;
  readonly flopsSkippedFraction: number;
  /** Attention calls skipped / attention calls, over all prompts, under a policy that skips them (pab, fastercache). */
  readonly attentionSkippedFraction?: number;
  /** Per prompt; Infinity where an image equals the baseline's. */
  readonly psnr: readonly number[];
  readonly ssim: readonly number[];
  /** Mean of the finite PSNRs (Infinity when all are). */
  readonly meanPsnr: number;
  readonly meanSsim: number;
  /** No other config is at least as fast and at least as faithful, and better in one of the two. */
  readonly pareto: boolean;
}

/**
 * How far a cell's picture is from the baseline's: PSNR and SSIM of the 8-bit images (data range
 * 255); for a video, PSNR of all its frames together (from their mean squared error, so that a
 * frame equal to the baseline's does not make the whole video's infinite) and the mean SSIM of
 * its frames.
 */
export async function cellMetrics(out: string, baseline: CellRecord, cell: CellRecord): Promise<{ psnr: number; ssim: number }> {
  if (baseline.frames === undefined && cell.frames === undefined) {
    const [a, b] = await Promise.all([baseline, cell].map((r) => loadImage(cellPaths(out, r.config, r.prompt).image)));
    return { psnr: psnr(a, b), ssim: ssim(a, b) };
  }
  const [baseFrames, frames] = [baseline, cell].map((r) => (r.frames === undefined ? [] : cellFrames(out, r)));
  if (baseFrames.length !== frames.length || frames.length === 0) {
    throw new Error(`${cell.config}, prompt ${cell.prompt}: ${frames.length} frames, but the uncached run has ${baseFrames.length}`);
  }
  let squaredError = 0;
  let structure = 0;
  for (let f = 0; f < frames.length; ++f) {
    const [a, b] = await Promise.all([loadImage(baseFrames[f]), loadImage(frames[f])]);
    squaredError += mse(a, b);
    structure += ssim(a, b);
  }
  return { psnr: psnrFromMse(squaredError / frames.length, 255), ssim: structure / frames.length };
}

/** Per-prompt PSNR and SSIM of every config against the baseline (cellMetrics). */
export async function evaluateBench(out: string, records: ReadonlyMap<string, readonly CellRecord[]>): Promise<ConfigResult[]> {
  const baseline = records.get(UNCACHED);
  if (!baseline) throw new Error('evaluateBench: no uncached baseline');
  const baseSeconds = sum(baseline.map((r) => r.seconds));
  const results: Omit<ConfigResult, 'pareto'>[] = [];
  for (const [name, cells] of records) {
    const metrics = await Promise.all(cells.map((r, i) => cellMetrics(out, baseline[i], r)));
    const psnrs = metrics.map((m) => m.psnr);
    const ssims = metrics.map((m) => m.ssim);
    const seconds = sum(cells.map((r) => r.seconds));
    results.push({
      name,
      cache: cells[0]?.cache ?? null,
      seconds,
      speedup: baseSeconds / seconds,
      cachedSteps: sum(cells.map((r) => r.cachedSteps.length)) / cells.length,
      ...(cells.some((r) => r.cfgCachedSteps) ? { cfgCachedSteps: sum(cells.map((r) => r.cfgCachedSteps?.length ?? 0)) / cells.length } : {}),
      computedFraction: sum(cells.map((r) => r.computedBlocks)) / sum(cells.map((r) => r.totalBlocks)),
      flopsSkippedFraction: sum(cells.map((r) => r.flopsSkippedFraction)) / cells.length,
      ...(cells.some((r) => r.attention)
        ? { attentionSkippedFraction: sum(cells.map((r) => r.attention?.skipped ?? 0)) / Math.max(1, sum(cells.map((r) => r.attention?.calls ?? 0))) }
        : {}),
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

/**
 * A policy option in the Policy column: a name as it is ('fast'), a number as key=value, a range
 * (a pair of numbers) as key=lo..hi, a longer list by its length, true by its key; false and
 * null not at all.
 */
function optionWords([key, value]: [string, unknown]): string[] {
  if (value === null || value === false) return [];
  if (value === true) return [key];
  if (typeof value === 'string') return [value];
  if (Array.isArray(value))
    return [value.length === 2 && value.every((v) => typeof v === 'number') ? `${key}=${value[0]}..${value[1]}` : `${key}=[${value.length}]`];
  return [`${key}=${String(value)}`];
}

/**
 * A config's policy in a few words: 'dbcache' (with its mask's rule when it has a mask), or another
 * policy's name with its own options and, where the policy masks steps, the mask's rule (e.g.
 * 'scm fast static', 'magcache threshold=0.06 maxSkipSteps=3 retentionRatio=0.2').
 */
export function describePolicy(c: CacheConfig): string {
  const masks = c.stepsComputationMask !== null || 'maskPolicy' in c.policyOptions;
  return [c.policy, ...Object.entries(c.policyOptions).flatMap(optionWords), ...(masks ? [c.stepsComputationPolicy] : [])].join(' ');
}

/** Whether the config's policy takes DBCache's keys (threshold, warmup, ...), which the table's columns show. */
const takesDBCacheKeys = (c: CacheConfig) => 'residualDiffThreshold' in (policyRegistry().get(c.policy)?.keys ?? {});

/** The markdown table of a benchmark, fastest first; Pareto-optimal configs are marked. */
export function benchMarkdown(results: readonly ConfigResult[], steps: number): string {
  const header =
    '| Config | Policy | Fn | Bn | Threshold | Warmup | Max cont. | TaylorSeer | Wall s | Speedup | Cached steps | Blocks computed | PSNR dB | SSIM | Pareto |';
  const rule = '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|';
  const rows = [...results]
    .sort((a, b) => (a.name === UNCACHED ? -1 : b.name === UNCACHED ? 1 : b.speedup - a.speedup))
    .map((r) => {
      const settings = r.cache
        ? (() => {
            const c = resolveConfig(parseCacheConfig(r.cache).base);
            const mc = c.maxContinuousCachedSteps < 0 ? '-' : String(c.maxContinuousCachedSteps);
            const dbcache = takesDBCacheKeys(c)
              ? [c.residualDiffThreshold, c.maxWarmupSteps, mc, c.enableTaylorseer ? `order ${c.taylorseerOrder}` : 'off']
              : ['-', '-', '-', '-'];
            return [describePolicy(c), c.fnComputeBlocks, c.bnComputeBlocks, ...dbcache];
          })()
        : ['-', '-', '-', '-', '-', '-', '-'];
      return `| ${[
        r.name,
        ...settings,
        r.seconds.toFixed(2),
        `${r.speedup.toFixed(2)}x`,
        `${r.cachedSteps.toFixed(1)}/${steps}${r.cfgCachedSteps === undefined ? '' : `, CFG ${r.cfgCachedSteps.toFixed(1)}`}${
          r.attentionSkippedFraction === undefined ? '' : `, attention ${(100 * r.attentionSkippedFraction).toFixed(1)}% reused`
        }`,
        `${(100 * r.computedFraction).toFixed(1)}%`,
        formatPsnr(r),
        r.meanSsim.toFixed(4),
        r.pareto ? 'yes' : '',
      ].join(' | ')} |`;
    });
  return [header, rule, ...rows].join('\n');
}
