// Replays every cache-dit trace of the goldens through the engine's step, branch and decision
// logic, feeding it the diffs cache-dit measured: the engine must ask for a diff at exactly the
// steps cache-dit compared, and cache exactly the steps cache-dit cached, in every context and
// branch (separate CFG, shared CFG diffs, cfg_compute_first, Wan 2.2's experts with
// ParamsModifiers, HiDream's two lists, the continuous-cache counter, max cached steps).
import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { CacheContext, parseCacheConfig, resolveConfig, TransformerCallScope, type CfgBranch } from '../src/index.js';
import { PlainTensorOps } from '../src/testing.js';

interface TraceStats {
  source?: string;
  cached_steps: number[];
  residual_diffs: Record<string, number>;
  cfg_cached_steps?: number[];
  cfg_residual_diffs?: Record<string, number>;
  executed_steps?: number;
  transformer_calls?: number;
}
interface Trace {
  config: Record<string, unknown>;
  taylorseer_order: number | null;
  params_modifiers: Record<string, unknown>[] | null;
  stats: TraceStats[];
}
interface TraceSet {
  num_inference_steps: number;
  transformer_used_per_step?: string[];
  traces: Record<string, Trace>;
}

const fixtures = JSON.parse(readFileSync(new URL('./fixtures/cache-dit-traces.json', import.meta.url), 'utf8')) as Record<string, TraceSet>;

type Layout = 'single-call' | 'separate-cfg' | 'batched-two-lists';
const SETS: [string, Layout][] = [
  ['flux-tiny', 'single-call'],
  ['flux-tiny-guidance', 'single-call'],
  ['wan-tiny', 'separate-cfg'],
  ['wan-tiny/wan22', 'separate-cfg'],
  ['hidream-tiny', 'batched-two-lists'],
];

function replay(set: TraceSet, trace: Trace, layout: Layout, announce: boolean) {
  const input = {
    ...trace.config,
    ...(trace.taylorseer_order ? { taylorseer_order: trace.taylorseer_order } : {}),
    params_modifiers: trace.params_modifiers ?? undefined,
  };
  const parsed = parseCacheConfig(JSON.parse(JSON.stringify(input)));
  const calls = new TransformerCallScope();
  const ops = new PlainTensorOps();
  const contexts = trace.stats.map(
    (s, i) =>
      new CacheContext(
        { name: s.source ?? 'transformer.blocks', transformerIndex: i, blockCount: 6 },
        resolveConfig(parsed.base, parsed.modifiers?.[i] ?? {}),
        layout === 'separate-cfg',
        calls,
        ops,
      ),
  );
  const computedOnce = new Set<unknown>();
  const call = (context: (typeof contexts)[number], stats: TraceStats, step: number, branch: CfgBranch) => {
    const active = announce ? calls.run({ step, branch }, () => context.placeCall()) : context.placeCall();
    const role = active.branch.role;
    const decision = context.decide(active, computedOnce.has(active.branch), () => {
      const mainMeasuredThisStep = context.snapshot().main?.residualDiffs.has(active.step) ?? false;
      if (role === 'cfg' && trace.config.cfg_diff_compute_separate === false && mainMeasuredThisStep) {
        throw new Error(`${context.layout.name}: the CFG branch measured its own diff at step ${active.step}; cache-dit reuses the other branch's`);
      }
      const diffs = role === 'main' ? stats.residual_diffs : stats.cfg_residual_diffs;
      const diff = diffs?.[String(active.step)];
      if (diff === undefined) throw new Error(`${context.layout.name}: asked for a ${role} diff at step ${active.step}; cache-dit compared none`);
      return diff;
    });
    if (!decision.cache) computedOnce.add(active.branch);
  };

  for (let step = 0; step < set.num_inference_steps; step++) {
    if (layout === 'batched-two-lists') {
      contexts.forEach((c, i) => call(c, trace.stats[i], step, 'batched'));
      continue;
    }
    const index = set.transformer_used_per_step?.[step] === 'transformer_2' ? 1 : 0;
    call(contexts[index], trace.stats[index], step, 'cond');
    if (layout === 'separate-cfg') call(contexts[index], trace.stats[index], step, 'uncond');
  }
  return contexts.map((c) => c.snapshot());
}

const byStep = (m: ReadonlyMap<number, number> | undefined) => Object.fromEntries([...(m ?? new Map())].map(([k, v]) => [String(k), v]));

describe.each(SETS)('cache-dit traces of %s', (setName, layout) => {
  const set = fixtures[setName];
  const modes = layout === 'separate-cfg' ? [true, false] : [true];
  describe.each(modes)('calls announced: %s', (announce) => {
    it.each(Object.keys(set.traces))('%s: same compared steps and cached steps per context and branch', (name) => {
      const trace = set.traces[name];
      const snapshots = replay(set, trace, layout, announce);
      snapshots.forEach((s, i) => {
        const expected = trace.stats[i];
        expect(s.main?.cachedSteps).toEqual(expected.cached_steps);
        expect(byStep(s.main?.residualDiffs)).toEqual(expected.residual_diffs);
        expect(s.cfg?.cachedSteps ?? []).toEqual(expected.cfg_cached_steps ?? []);
        expect(byStep(s.cfg?.residualDiffs)).toEqual(expected.cfg_residual_diffs ?? {});
        if (expected.executed_steps !== undefined) expect(s.steps).toBe(expected.executed_steps);
        if (expected.transformer_calls !== undefined) expect(s.transformerCalls).toBe(expected.transformer_calls);
      });
    });
  });
});

it('the replay covers every trace of the goldens (the sets and configs the README lists)', () => {
  const counts = Object.fromEntries(SETS.map(([name]) => [name, Object.keys(fixtures[name].traces).length]));
  expect(counts).toEqual({ 'flux-tiny': 8, 'flux-tiny-guidance': 8, 'wan-tiny': 10, 'wan-tiny/wan22': 3, 'hidream-tiny': 9 });
});
