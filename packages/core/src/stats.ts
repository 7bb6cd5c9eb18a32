// Statistics of a cached model: per cache context and branch, the cached steps, the measured
// diffs and their percentiles, blocks computed, FLOPs skipped; printed as markdown tables.
import type { AttentionKind, AttentionSiteRecord } from './attention-sites.js';
import type { CacheConfig } from './config.js';
import type { BranchSnapshot, ContextSnapshot, StepRecord } from './context.js';

export interface DiffPercentiles {
  readonly p00: number;
  readonly p25: number;
  readonly p50: number;
  readonly p75: number;
  readonly p95: number;
  readonly min: number;
  readonly max: number;
}

export interface BranchStats {
  /** cache-dit's role: 'main' (its non-CFG branch) or 'cfg'. */
  readonly role: 'main' | 'cfg';
  /** How the pipeline announced this branch's calls (absent when it did not). */
  readonly announcedAs: 'cond' | 'uncond' | 'batched' | undefined;
  readonly cachedSteps: readonly number[];
  /** Context step -> relative L1 diff, for the steps compared with the threshold. */
  readonly residualDiffs: Readonly<Record<string, number>>;
  readonly diffPercentiles: DiffPercentiles | undefined;
  /** Step -> the blocks pruned there, under a policy that prunes single blocks (DBPrune); their count is not in computedBlocks. */
  readonly prunedBlocks?: Readonly<Record<string, readonly number[]>>;
  /** What else the policy recorded for this branch (e.g. MagCache's calibrated ratios), when it records anything. */
  readonly report?: Readonly<Record<string, unknown>>;
}

export interface ContextStats {
  /** The cached chain, e.g. 'transformer.transformerBlocks'. */
  readonly name: string;
  readonly config: CacheConfig;
  /** Steps this context ran in the current run; its steps count from 0 (cache-dit's numbering). */
  readonly steps: number;
  readonly transformerCalls: number;
  /** The pipeline step of each context step, where the pipeline announced it. */
  readonly pipelineSteps: readonly (number | undefined)[];
  readonly firstPipelineStep: number | undefined;
  /** cache-dit's view: its non-CFG branch ... */
  readonly cachedSteps: readonly number[];
  readonly residualDiffs: Readonly<Record<string, number>>;
  /** ... and its CFG branch. */
  readonly cfgCachedSteps: readonly number[];
  readonly cfgResidualDiffs: Readonly<Record<string, number>>;
  readonly branches: readonly BranchStats[];
  readonly computedBlocks: number;
  readonly totalBlocks: number;
  /** Block FLOPs computed and skipped, and FLOPs outside the chain, when the adapter counts them. */
  readonly flops: { readonly computed: number; readonly skipped: number; readonly outside: number } | undefined;
  /** Every decision of the run, in call order. */
  readonly decisions: readonly StepRecord[];
  /** What the policy did around whole transformer calls (FasterCache: skipped uncond calls, forecast attention), when it acts there. */
  readonly callReport?: Readonly<Record<string, unknown>>;
  /**
   * Attention calls under a policy that acts on attention sites (PAB, FasterCache): per site kind,
   * the calls and how many the policy skipped (reused or forecast), and each (site, branch)'s record.
   */
  readonly attention?: AttentionStats;
}

export interface AttentionStats {
  readonly kinds: Readonly<Partial<Record<AttentionKind, { readonly calls: number; readonly skipped: number }>>>;
  readonly sites: readonly AttentionSiteRecord[];
}

export interface CacheSummary {
  readonly contexts: readonly ContextStats[];
  /** Cached steps over every context and branch. */
  readonly cachedSteps: number;
  readonly computedBlocks: number;
  readonly totalBlocks: number;
  /** Share of the transformer's FLOPs that caching skipped, when the adapter counts FLOPs. */
  readonly flopsSkippedFraction: number | undefined;
  /** The markdown that `summary` prints. */
  readonly markdown: string;
}

export function contextStats(s: ContextSnapshot, countsFlops: boolean): ContextStats {
  const main = s.main && branchStats(s.main);
  const cfg = s.cfg && branchStats(s.cfg);
  return {
    name: s.layout.name,
    config: s.config,
    steps: s.steps,
    transformerCalls: s.transformerCalls,
    pipelineSteps: s.pipelineSteps,
    firstPipelineStep: s.pipelineSteps[0],
    cachedSteps: main?.cachedSteps ?? [],
    residualDiffs: main?.residualDiffs ?? {},
    cfgCachedSteps: cfg?.cachedSteps ?? [],
    cfgResidualDiffs: cfg?.residualDiffs ?? {},
    branches: [main, cfg].filter((b): b is BranchStats => b !== undefined),
    computedBlocks: s.computedBlocks,
    totalBlocks: s.totalBlocks,
    flops: countsFlops ? s.flops : undefined,
    decisions: s.stepRecords,
    ...(s.callReport === undefined ? {} : { callReport: s.callReport }),
    ...(s.attention.length === 0 ? {} : { attention: attentionStats(s.attention) }),
  };
}

function attentionStats(sites: readonly AttentionSiteRecord[]): AttentionStats {
  const kinds: Partial<Record<AttentionKind, { calls: number; skipped: number }>> = {};
  for (const r of sites) {
    const k = kinds[r.kind] ?? { calls: 0, skipped: 0 };
    k.calls += r.calls;
    k.skipped += r.skippedCalls.length;
    kinds[r.kind] = k;
  }
  return { kinds, sites };
}

export function summarize(contexts: readonly ContextStats[], details: boolean): CacheSummary {
  const sum = (f: (c: ContextStats) => number) => contexts.reduce((n, c) => n + f(c), 0);
  const counted = contexts.filter((c) => c.flops);
  let flopsSkippedFraction: number | undefined;
  if (counted.length === contexts.length && contexts.length > 0) {
    const skipped = sum((c) => c.flops!.skipped);
    const total = sum((c) => c.flops!.computed + c.flops!.skipped + c.flops!.outside);
    flopsSkippedFraction = total > 0 ? skipped / total : 0;
  }
  const partial = {
    contexts,
    cachedSteps: sum((c) => c.branches.reduce((n, b) => n + b.cachedSteps.length, 0)),
    computedBlocks: sum((c) => c.computedBlocks),
    totalBlocks: sum((c) => c.totalBlocks),
    flopsSkippedFraction,
  };
  return { ...partial, markdown: markdown(partial, details) };
}

/** Linear interpolation between order statistics, rounded as numpy's default percentile rounds. */
export function percentile(sorted: readonly number[], p: number): number {
  const at = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(at);
  const t = at - lo;
  const a = sorted[lo];
  const b = sorted[Math.min(lo + 1, sorted.length - 1)];
  return t >= 0.5 ? b - (b - a) * (1 - t) : a + (b - a) * t;
}

function branchStats(b: BranchSnapshot): BranchStats {
  const diffs = [...b.residualDiffs.values()].sort((x, y) => x - y);
  return {
    role: b.role,
    announcedAs: b.announcedAs,
    cachedSteps: b.cachedSteps,
    residualDiffs: Object.fromEntries([...b.residualDiffs].map(([step, d]) => [String(step), d])),
    ...(b.prunedBlocks === undefined ? {} : { prunedBlocks: Object.fromEntries([...b.prunedBlocks].map(([step, blocks]) => [String(step), blocks])) }),
    ...(b.report === undefined ? {} : { report: b.report }),
    diffPercentiles:
      diffs.length === 0
        ? undefined
        : {
            p00: percentile(diffs, 0),
            p25: percentile(diffs, 25),
            p50: percentile(diffs, 50),
            p75: percentile(diffs, 75),
            p95: percentile(diffs, 95),
            min: diffs[0],
            max: diffs[diffs.length - 1],
          },
  };
}

function markdown(s: Omit<CacheSummary, 'markdown'>, details: boolean): string {
  if (s.contexts.length === 0) return 'No cache is enabled.\n';
  const lines = [
    '| Cache context | Branch | Steps | Cached | Cached steps | Blocks computed | Diff P00 | P25 | P50 | P75 | P95 | Min | Max |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const c of s.contexts) {
    const blocks = `${c.computedBlocks}/${c.totalBlocks}`;
    if (c.branches.length === 0) lines.push(`| ${c.name} | - | 0 | 0 | - | ${blocks} | - | - | - | - | - | - | - |`);
    for (const b of c.branches) {
      const p = b.diffPercentiles;
      const q = p ? [p.p00, p.p25, p.p50, p.p75, p.p95, p.min, p.max].map(fmt) : Array<string>(7).fill('-');
      const label = b.announcedAs ? `${b.announcedAs} (${b.role})` : b.role;
      lines.push(`| ${c.name} | ${label} | ${c.steps} | ${b.cachedSteps.length} | ${b.cachedSteps.join(', ') || '-'} | ${blocks} | ${q.join(' | ')} |`);
    }
  }
  lines.push('');
  lines.push(`Blocks computed: ${s.computedBlocks}/${s.totalBlocks} (${fmtPercent(s.totalBlocks ? s.computedBlocks / s.totalBlocks : 1)})`);
  if (s.flopsSkippedFraction !== undefined) lines.push(`Transformer FLOPs skipped: ${fmtPercent(s.flopsSkippedFraction)}`);
  lines.push(...prunedBlocksLines(s.contexts));
  for (const c of s.contexts) if (c.callReport) lines.push(`Transformer calls, ${c.name}: ${JSON.stringify(c.callReport)}`);
  for (const c of s.contexts) {
    if (!c.attention) continue;
    const kinds = Object.entries(c.attention.kinds).map(([kind, k]) => `${kind} ${k.skipped}/${k.calls}`);
    lines.push(`Attention calls skipped (reused or forecast), ${c.name}: ${kinds.join(', ')}`);
  }
  if (details) {
    for (const c of s.contexts) {
      lines.push('', `### ${c.name}`, '', '| Step | Pipeline step | Branch | Decision | Reason | Diff |', '|---|---|---|---|---|---|');
      for (const d of c.decisions) {
        const branch = d.announcedAs ? `${d.announcedAs} (${d.role})` : d.role;
        lines.push(
          `| ${d.step} | ${d.pipelineStep ?? '-'} | ${branch} | ${d.cached ? 'cached' : 'computed'} | ${d.reason} | ${d.diff === undefined ? '-' : fmt(d.diff)} |`,
        );
      }
    }
  }
  return lines.join('\n') + '\n';
}

/** One line per branch that prunes single blocks: the blocks pruned at each step that pruned any. */
function prunedBlocksLines(contexts: readonly ContextStats[]): string[] {
  const lines: string[] = [];
  for (const c of contexts) {
    for (const b of c.branches) {
      if (!b.prunedBlocks) continue;
      const steps = Object.entries(b.prunedBlocks).filter(([, blocks]) => blocks.length > 0);
      const label = b.announcedAs ? `${b.announcedAs} (${b.role})` : b.role;
      const listed = steps.map(([step, blocks]) => `${step}: ${blocks.join(' ')}`).join('; ') || 'none';
      lines.push(`Pruned blocks per step, ${c.name} ${label}: ${listed}`);
    }
  }
  return lines;
}

function fmt(x: number): string {
  return Number.isFinite(x) ? x.toFixed(4) : String(x);
}

function fmtPercent(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}
