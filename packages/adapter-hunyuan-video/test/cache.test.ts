// The engine on HunyuanVideo against cache-dit's traces (tools/make_references.py): two contexts,
// the dual-stream and the single-stream blocks, each deciding on its own, with ParamsModifiers per
// context, TaylorSeer, and true CFG (cond and uncond each their own branch).
import { afterAll, describe, expect, it } from 'vitest';

import { disableCache, enableCache, summary } from '@ditcache/core';
import { loadSafetensors, memoryStats, type Tensor } from '@ditcache/cuda-runtime';

import { HunyuanVideoPipeline } from '../src/index.js';
import { goldens, meta, references, relativeL2, requestOf, type RunName } from './helpers.js';

interface ContextTrace {
  source: string;
  cached_steps: number[];
  cfg_cached_steps: number[];
  residual_diffs: Record<string, number>;
  cfg_residual_diffs: Record<string, number>;
}
interface Trace {
  run: RunName;
  config: Record<string, unknown>;
  taylorseer_order: number | null;
  params_modifiers: Record<string, unknown>[] | null;
  margin: number;
  stats: ContextTrace[];
}

const traces = meta.cache_traces as unknown as Record<string, Trace>;

function expectDiffs(got: Readonly<Record<string, number>>, want: Record<string, number>, what: string): void {
  expect(Object.keys(got).sort(), what).toEqual(Object.keys(want).sort());
  for (const [step, diff] of Object.entries(want)) expect(Math.abs(got[step] - diff) / diff, `${what} step ${step}`).toBeLessThan(1e-3);
}

describe('caching HunyuanVideo', () => {
  const runs = Object.fromEntries((Object.keys(meta.runs) as RunName[]).map((run) => [run, references(run)]));
  const cached = loadSafetensors(`${goldens}/cache_traces.safetensors`);
  const pipes = { 'hv-tiny': HunyuanVideoPipeline.fromPretrained(`${goldens}/hv-tiny`), 'hv-cfg': HunyuanVideoPipeline.fromPretrained(`${goldens}/hv-cfg`) };
  afterAll(() => {
    for (const pipe of Object.values(pipes)) pipe.dispose();
    for (const t of [...Object.values(runs).flatMap((r) => Object.values(r)), ...Object.values(cached)]) t.dispose();
  });
  const generate = (run: RunName): Tensor => pipes[meta.runs[run].set as keyof typeof pipes].generate({ ...requestOf(run, runs[run]), decode: false }).latents;

  it('has at least 8 traces, every recorded diff at least 2% from its threshold', () => {
    expect(Object.keys(traces).length).toBeGreaterThanOrEqual(8);
    expect(meta.min_margin).toBeGreaterThanOrEqual(0.02);
  });

  it.each(Object.keys(traces))("%s: cache-dit's cached steps per context and CFG branch, its diffs, and its latents", (name) => {
    const trace = traces[name];
    const pipe = pipes[meta.runs[trace.run].set as keyof typeof pipes];
    const before = memoryStats();
    enableCache(pipe, {
      ...trace.config,
      ...(trace.taylorseer_order ? { taylorseer_order: trace.taylorseer_order, enable_encoder_calibrator: true } : {}),
      ...(trace.params_modifiers ? { params_modifiers: trace.params_modifiers } : {}),
    });
    const latents = generate(trace.run);
    const contexts = summary(pipe, { print: false }).contexts;
    // The engine names a context by the list's property, the CLI's --stats by diffusers' name.
    expect(contexts.map((c) => c.name)).toEqual(trace.stats.map((s) => s.source.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())));
    trace.stats.forEach((want, i) => {
      const got = contexts[i];
      expect([...got.cachedSteps], `${want.source} cached steps`).toEqual(want.cached_steps);
      expect([...got.cfgCachedSteps], `${want.source} CFG cached steps`).toEqual(want.cfg_cached_steps);
      expectDiffs(got.residualDiffs, want.residual_diffs, `${want.source} diffs`);
      expectDiffs(got.cfgResidualDiffs, want.cfg_residual_diffs, `${want.source} CFG diffs`);
    });
    expect(relativeL2(latents, cached[`${name}.latents_out`])).toBeLessThan(1e-4);
    latents.dispose();
    expect(disableCache(pipe)).toBe(true);
    expect(memoryStats()).toEqual(before);
  });

  it('true CFG without enable_separate_cfg: the announced cond and uncond calls keep separate state, as with it (core README, "Fixed on purpose")', () => {
    const trace = traces.F1B0_W2_separateCfg;
    const pipe = pipes['hv-tiny'];
    const { enable_separate_cfg: _separate, ...config } = trace.config;
    enableCache(pipe, config);
    const latents = generate(trace.run);
    const contexts = summary(pipe, { print: false }).contexts;
    expect(contexts.map((c) => [[...c.cachedSteps], [...c.cfgCachedSteps]])).toEqual(trace.stats.map((s) => [s.cached_steps, s.cfg_cached_steps]));
    expect(relativeL2(latents, cached['F1B0_W2_separateCfg.latents_out'])).toBeLessThan(1e-4);
    latents.dispose();
    disableCache(pipe);
  });

  it('threshold 0 is bit-identical to the uncached model, and disableCache restores both block lists', () => {
    const pipe = pipes['hv-tiny'];
    const lists = [pipe.transformer.transformerBlocks, pipe.transformer.singleTransformerBlocks];
    const plain = generate('guided_cfg');
    enableCache(pipe, { residual_diff_threshold: 0, Fn_compute_blocks: 1, max_warmup_steps: 0 });
    const zero = generate('guided_cfg');
    expect(Buffer.compare(zero.toBytes(), plain.toBytes())).toBe(0);
    disableCache(pipe);
    expect(pipe.transformer.transformerBlocks).toBe(lists[0]);
    expect(pipe.transformer.singleTransformerBlocks).toBe(lists[1]);
    const after = generate('guided_cfg');
    expect(Buffer.compare(after.toBytes(), plain.toBytes())).toBe(0);
    for (const t of [plain, zero, after]) t.dispose();
  });
});
