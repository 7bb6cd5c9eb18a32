// `ditcache bench` on the flux-tiny golden: configs, the resumable runner, metrics and the report.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';

import { parseCacheConfig, resolveConfig } from '@ditcache/core';
import { concat, loadSafetensors, neg, saveSafetensors } from '@ditcache/cuda-runtime';

import { bench } from '../src/bench/command.js';
import { DEFAULT_GRID, DEFAULT_SCM_GRID, expandGrid, readBenchConfigs } from '../src/bench/configs.js';
import { benchMarkdown, describePolicy, paretoFlags } from '../src/bench/report.js';
import { readBenchPrompts, runBench, type BenchProgress } from '../src/bench/runner.js';
import { UsageError } from '../src/errors.js';

const root = new URL('../../../', import.meta.url).pathname;
const flux = join(root, 'testdata/goldens/flux-tiny');
const dir = mkdtempSync(join(tmpdir(), 'ditcache-bench-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Two prompts: the golden's embeddings and their negation. */
function writePrompts(path: string): void {
  const golden = loadSafetensors(join(flux, 'pipeline.safetensors'));
  const negated = [neg(golden.prompt_embeds), neg(golden.pooled_prompt_embeds)];
  const embeds = concat([golden.prompt_embeds, negated[0]]);
  const pooled = concat([golden.pooled_prompt_embeds, negated[1]]);
  saveSafetensors(
    path,
    { prompt_embeds: embeds, pooled_prompt_embeds: pooled },
    { prompts: JSON.stringify(['golden', 'negated']), height: '32', width: '32', num_inference_steps: '12' },
  );
  for (const t of [embeds, pooled, ...negated, ...Object.values(golden)]) t.dispose();
}

describe('bench configs', () => {
  it('expand a grid into every combination, TaylorSeer order 0 meaning off', () => {
    const configs = expandGrid({ residual_diff_threshold: [0.1, 0.2], max_continuous_cached_steps: [2, 3], taylorseer_order: [0, 2] });
    expect(configs).toHaveLength(8);
    expect(new Set(configs.map((c) => c.name)).size).toBe(8);
    expect(configs[0].cache).toEqual({ residual_diff_threshold: 0.1, max_continuous_cached_steps: 2 });
    expect(configs[1].cache).toEqual({ residual_diff_threshold: 0.1, max_continuous_cached_steps: 2, taylorseer_order: 2 });
    expect(configs[1].name).toBe('DBCache_F8B0_W8I1M0MC2_R0.1_T1O2');
    const size = (grid: object) => Object.values(grid).reduce((n: number, values: unknown[]) => n * values.length, 1);
    expect(size(DEFAULT_GRID)).toBe(48);
    expect(size(DEFAULT_SCM_GRID)).toBe(16);
    const all = readBenchConfigs('grid');
    expect(all).toHaveLength(64);
    // The DBCache points as before, then SCM's four masks, each static and dynamic, TaylorSeer off and order 1.
    expect(all.slice(0, 48).map((c) => c.cache)).toEqual(expandGrid(DEFAULT_GRID).map((c) => c.cache));
    expect(all.slice(48).map((c) => [c.cache.taylorseer_order ?? 0, c.cache.mask_policy, c.cache.steps_computation_policy])).toEqual(
      [0, 1].flatMap((order) =>
        ['slow', 'medium', 'fast', 'ultra'].flatMap((m) => [
          [order, m, 'static'],
          [order, m, 'dynamic'],
        ]),
      ),
    );
    expect(all[48].name).toBe('scm_F1B0_W2I1M0MC0_R0.3_T0O0_static_maskPolicy-slow');
    expect(all[63].name).toBe('scm_F1B0_W2I1M0MC0_R0.3_T1O1_dynamic_maskPolicy-ultra');
    expect(() => expandGrid({ residual_diff_treshold: [0.1] })).toThrow(/unknown grid axis 'residual_diff_treshold' \(axes: Fn_compute_blocks, /);
    expect(() => expandGrid({ residual_diff_threshold: [] })).toThrow(UsageError);
  });

  it('read lists (with presets), mappings and grids from JSON or YAML files', () => {
    const list = join(dir, 'list.yaml');
    writeFileSync(list, '- fast\n- { name: careful, Fn_compute_blocks: 1, residual_diff_threshold: 0.05 }\n');
    expect(readBenchConfigs(list).map((c) => c.name)).toEqual(['fast', 'careful']);
    const mapping = join(dir, 'map.json');
    writeFileSync(mapping, JSON.stringify({ a: { residual_diff_threshold: 0.3 }, b: { residualDiffThreshold: 0.4, taylorseerOrder: 1 } }));
    expect(readBenchConfigs(mapping).map((c) => [c.name, c.cache])).toEqual([
      ['a', { residual_diff_threshold: 0.3 }],
      ['b', { residualDiffThreshold: 0.4, taylorseerOrder: 1 }],
    ]);
    const grid = join(dir, 'grid.json');
    writeFileSync(grid, JSON.stringify({ grid: { Fn_compute_blocks: [1, 2], residual_diff_threshold: [0.1, 0.2, 0.3] } }));
    expect(readBenchConfigs(grid)).toHaveLength(6);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify([{ name: 'x', residual_diff_treshold: 0.1 }]));
    expect(() => readBenchConfigs(bad)).toThrow(/residual_diff_treshold/);
    writeFileSync(bad, JSON.stringify([{ name: 'x' }, { name: 'x' }]));
    expect(() => readBenchConfigs(bad)).toThrow(/two configs are named 'x'/);
    writeFileSync(bad, JSON.stringify([{ name: 'uncached' }]));
    expect(() => readBenchConfigs(bad)).toThrow(/cannot name a config/);
  });

  it("name each config's policy in the table: its options, lists by their length, ranges by their ends", () => {
    const resolved = (cache: Record<string, unknown>) => resolveConfig(parseCacheConfig(cache).base);
    expect(describePolicy(resolved({ residual_diff_threshold: 0.2 }))).toBe('dbcache');
    expect(describePolicy(resolved({ steps_computation_mask: [1, 0, 1], steps_computation_policy: 'static' }))).toBe('dbcache static');
    expect(describePolicy(resolved({ policy: 'scm', mask_policy: 'ultra' }))).toBe('scm ultra dynamic');
    // A policy with a list among its options (MagCache's magnitude ratios) and without DBCache's keys.
    expect(describePolicy(resolved({ policy: 'magcache', threshold: 0.1, mag_ratios: [1, 0.9, 0.8] }))).toMatch(/^magcache threshold=0\.1 .*magRatios=\[3\]/);
    expect(describePolicy(resolved({ policy: 'pab', spatial_attention_block_skip_range: 3, spatial_attention_timestep_skip_range: [0, 1000] }))).toMatch(
      /^pab spatialAttentionBlockSkipRange=3 spatialAttentionTimestepSkipRange=0\.\.1000 /,
    );
    const result = {
      seconds: 1,
      speedup: 1,
      cachedSteps: 0,
      computedFraction: 1,
      flopsSkippedFraction: 0,
      psnr: [Infinity],
      ssim: [1],
      meanPsnr: Infinity,
      meanSsim: 1,
      pareto: false,
    };
    // DBCache's columns are left empty for it.
    expect(benchMarkdown([{ ...result, name: 'mag', cache: { policy: 'magcache', threshold: 0.1 } }], 10)).toMatch(
      /\| mag \| magcache threshold=0\.1 [^|]*\| 0 \| 0 \| - \| - \| - \| - \| 1\.00 \|/,
    );
    // A policy that reuses attention calls (pab): the share it reused, beside the cached steps.
    const [pab] = expandGrid({ policy: ['pab'], spatial_attention_block_skip_range: [3] });
    expect(pab.cache).toEqual({ policy: 'pab', spatial_attention_block_skip_range: 3 });
    expect(benchMarkdown([{ ...result, name: 'pab', cache: pab.cache, attentionSkippedFraction: 0.3 }], 10)).toMatch(
      /\| pab \| pab spatialAttentionBlockSkipRange=3 [^|]*\| 0 \| 0 \| - \| - \| - \| - \| 1\.00 \| 1\.00x \| 0\.0\/10, attention 30\.0% reused \|/,
    );
  });

  it('find the Pareto front of speedup and PSNR', () => {
    const points = [
      { x: 1.5, y: 40 },
      { x: 2, y: 35 },
      { x: 1.8, y: 34 },
      { x: 2, y: 35 },
      { x: 3, y: Infinity },
      { x: 1, y: 50 },
    ];
    expect(paretoFlags(points)).toEqual([false, false, false, false, true, false]);
    expect(
      paretoFlags([
        { x: 1, y: 30 },
        { x: 2, y: 20 },
        { x: 1.5, y: 25 },
        { x: 1.2, y: 24 },
      ]),
    ).toEqual([true, true, true, false]);
  });
});

describe('ditcache bench', () => {
  const prompts = join(dir, 'prompts.safetensors');
  const configsFile = join(dir, 'configs.json');
  const out = join(dir, 'out');

  it('runs every cell, compares with the uncached run and writes the table and the plot', async () => {
    writePrompts(prompts);
    writeFileSync(
      configsFile,
      JSON.stringify({
        off: { Fn_compute_blocks: 1, residual_diff_threshold: 0 },
        loose: { Fn_compute_blocks: 1, max_warmup_steps: 2, residual_diff_threshold: 0.7 },
      }),
    );
    const { results, table, files } = await bench({ model: flux, prompts, configs: configsFile, out, seed: 0, repeats: 1 });
    expect(results.map((r) => r.name)).toEqual(['uncached', 'off', 'loose']);
    const [base, off, loose] = results;
    // Threshold 0 computes every block and gives the uncached images exactly.
    expect(off.psnr).toEqual([Infinity, Infinity]);
    expect(off.ssim).toEqual([1, 1]);
    expect(off.computedFraction).toBe(1);
    expect(base.speedup).toBe(1);
    expect(loose.cachedSteps).toBeGreaterThan(2);
    expect(loose.computedFraction).toBeLessThan(0.9);
    // FLUX runs one branch: no CFG column.
    expect(loose.cfgCachedSteps).toBeUndefined();
    for (const p of loose.psnr) expect(p).toBeGreaterThan(10);
    expect(loose.pareto || off.pareto).toBe(true);
    expect(table).toMatch(/^\| Config \| Policy \| Fn \| Bn \| Threshold/);
    expect(table).toMatch(/\| loose \| dbcache \| 1 \| 0 \| 0\.7 \| 2 \| - \| off \|/);
    expect(readFileSync(files.table, 'utf-8')).toContain('2 prompts, 12 steps, 32x32');
    const plot = await sharp(files.plot).metadata();
    expect([plot.format, plot.width, plot.height]).toEqual(['png', 900, 560]);
    const records = [0, 1].map((p) => JSON.parse(readFileSync(join(out, 'loose', `prompt-${p}.json`), 'utf-8')) as { cachedSteps: number[]; seconds: number });
    expect(loose.cachedSteps).toBe((records[0].cachedSteps.length + records[1].cachedSteps.length) / 2);
    expect(loose.seconds).toBeCloseTo(records[0].seconds + records[1].seconds, 9);
  });

  it('resumes: finished cells are not run again, a changed config reruns only its own', async () => {
    const stamp = (config: string) => statSync(join(out, config, 'prompt-0.json')).mtimeMs;
    const before = { uncached: stamp('uncached'), off: stamp('off'), loose: stamp('loose') };
    const progress: BenchProgress[] = [];
    const again = await bench({ model: flux, prompts, configs: configsFile, out, seed: 0, repeats: 1 });
    expect(again.results.map((r) => r.seconds)).toEqual(
      JSON.parse(readFileSync(join(out, 'results.json'), 'utf-8')).results.map((r: { seconds: number }) => r.seconds),
    );
    expect({ uncached: stamp('uncached'), off: stamp('off'), loose: stamp('loose') }).toEqual(before);

    writeFileSync(
      configsFile,
      JSON.stringify({
        off: { Fn_compute_blocks: 1, residual_diff_threshold: 0 },
        loose: { Fn_compute_blocks: 1, max_warmup_steps: 3, residual_diff_threshold: 0.7 },
      }),
    );
    using file = readBenchPrompts(prompts);
    const records = await runBench({
      model: flux,
      prompts: file,
      configs: readBenchConfigs(configsFile),
      out,
      settings: { steps: 12, height: 32, width: 32, seed: 0, repeats: 1 },
      onProgress: (p) => progress.push(p),
    });
    expect(progress[0].done).toBe(4);
    expect(progress.at(-1)!.done).toBe(6);
    expect(new Set(progress.filter((p) => p.config).map((p) => p.config))).toEqual(new Set(['loose']));
    expect(records.get('loose')!.map((r) => r.cache)).toEqual([
      { Fn_compute_blocks: 1, max_warmup_steps: 3, residual_diff_threshold: 0.7 },
      { Fn_compute_blocks: 1, max_warmup_steps: 3, residual_diff_threshold: 0.7 },
    ]);
    expect(stamp('loose')).toBeGreaterThan(before.loose);
    expect([stamp('uncached'), stamp('off')]).toEqual([before.uncached, before.off]);
  });

  it('refuses what it cannot run, naming the problem', async () => {
    await expect(bench({ model: flux, prompts: join(dir, 'missing.safetensors'), configs: 'grid', out, seed: 0, repeats: 1 })).rejects.toThrow(/no such file/);
    const golden = loadSafetensors(join(flux, 'pipeline.safetensors'));
    saveSafetensors(join(dir, 'no-size.safetensors'), { prompt_embeds: golden.prompt_embeds, pooled_prompt_embeds: golden.pooled_prompt_embeds });
    for (const t of Object.values(golden)) t.dispose();
    await expect(bench({ model: flux, prompts: join(dir, 'no-size.safetensors'), configs: 'grid', out, seed: 0, repeats: 1 })).rejects.toThrow(
      /--height and --width are needed: neither .*no-size.safetensors nor .*ditcache.json recommends a size/,
    );
  });

  it("takes the size and steps the prompts file leaves out from the model folder's ditcache.json, as generate does", async () => {
    const model = join(dir, 'flux-with-defaults');
    mkdirSync(model);
    for (const entry of readdirSync(flux)) symlinkSync(join(flux, entry), join(model, entry));
    writeFileSync(join(model, 'ditcache.json'), JSON.stringify({ height: 16, width: 32, num_inference_steps: 3 }));
    const golden = loadSafetensors(join(flux, 'pipeline.safetensors'));
    saveSafetensors(join(dir, 'unsized.safetensors'), { prompt_embeds: golden.prompt_embeds, pooled_prompt_embeds: golden.pooled_prompt_embeds });
    for (const t of Object.values(golden)) t.dispose();
    const configsFile = join(dir, 'one.json');
    writeFileSync(configsFile, JSON.stringify([{ name: 'loose', Fn_compute_blocks: 1, residual_diff_threshold: 0.5 }]));
    const out = join(dir, 'defaults-out');
    await bench({ model, prompts: join(dir, 'unsized.safetensors'), configs: configsFile, out, seed: 0, repeats: 1 });
    const written = JSON.parse(readFileSync(join(out, 'results.json'), 'utf-8')) as { settings: { height: number; width: number; steps: number } };
    expect(written.settings).toMatchObject({ height: 16, width: 32, steps: 3 });
    expect((await sharp(join(out, 'uncached', 'prompt-0.png')).metadata()).height).toBe(16);
  });
});
