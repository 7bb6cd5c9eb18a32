// `ditcache tune` end to end on the flux-tiny golden: the search, the held-out check, best.yaml
// read back by core's parser reproducing the reported PSNR, resuming, and the command line.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import sharp from 'sharp';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { parse as parseYaml } from 'yaml';

import { parseCacheConfig, registerPolicy, resolveConfig, type CachePolicy } from '@ditcache/core';
import { concat, loadSafetensors, neg, saveSafetensors } from '@ditcache/cuda-runtime';

import { evaluateBench } from '../src/bench/report.js';
import { readBenchPrompts, runBench, type CellRecord } from '../src/bench/runner.js';
import { runCli } from '../src/program.js';
import { TargetNotMetError } from '../src/tune/search.js';
import { tune, type TuneResult } from '../src/tune/tune.js';

const root = new URL('../../../', import.meta.url).pathname;
const flux = join(root, 'testdata/goldens/flux-tiny');
const dir = mkdtempSync(join(tmpdir(), 'ditcache-tune-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Two prompts: the golden's embeddings and their negation, 32x32 at 10 steps. */
function writePrompts(path: string): void {
  const golden = loadSafetensors(join(flux, 'pipeline.safetensors'));
  const negated = [neg(golden.prompt_embeds), neg(golden.pooled_prompt_embeds)];
  const embeds = concat([golden.prompt_embeds, negated[0]]);
  const pooled = concat([golden.pooled_prompt_embeds, negated[1]]);
  saveSafetensors(
    path,
    { prompt_embeds: embeds, pooled_prompt_embeds: pooled },
    { prompts: JSON.stringify(['golden', 'negated']), height: '32', width: '32', num_inference_steps: '10' },
  );
  for (const t of [embeds, pooled, ...negated, ...Object.values(golden)]) t.dispose();
}

/** Generates the tuning prompts again under a config read from best.yaml; its metrics against a fresh uncached run. */
async function regenerate(cache: Record<string, unknown>, out: string) {
  using file = readBenchPrompts(join(dir, 'prompts.safetensors'));
  const records = await runBench({
    model: flux,
    prompts: file,
    configs: [{ name: 'best', cache }],
    out,
    settings: { steps: 10, height: 32, width: 32, seed: 0, repeats: 1 },
  });
  return (await evaluateBench(out, records))[1];
}

describe('ditcache tune', () => {
  const prompts = join(dir, 'prompts.safetensors');
  writePrompts(prompts);
  const out = join(dir, 'out');
  const TARGET = 30;
  let result: TuneResult;
  const lines: string[] = [];

  it('picks the fastest config meeting the target and checks it on held-out seeds', async () => {
    result = await tune({ model: flux, prompts, targetPsnr: TARGET, policies: ['dbcache', 'scm'], out, evaluationsPerVariant: 4, log: (l) => lines.push(l) });
    const { pick, points, heldOut, settings } = result;
    expect(settings).toMatchObject({ steps: 10, height: 32, width: 32, seed: 0, holdoutSeed: 1000, policies: ['dbcache', 'scm'] });
    // 13 variants, at most 4 configs each, at least both ends of every knob.
    expect(points.length).toBeGreaterThanOrEqual(26);
    expect(points.length).toBeLessThanOrEqual(52);
    for (const p of points) expect(p.meetsTarget).toBe(p.measured.meanPsnr >= TARGET);
    expect(pick.meetsTarget).toBe(true);
    expect(pick.measured.cachedSteps).toBeGreaterThan(0);
    // The finalists: met the target, cache, and no other config computes fewer blocks at a higher PSNR.
    const finalists = heldOut.map((c) => c.point);
    const meeting = points.filter((p) => p.meetsTarget && p.measured.computedFraction < 1);
    for (const f of finalists) {
      expect(f.meetsTarget).toBe(true);
      expect(f.measured.computedFraction).toBeLessThan(1);
      const beaten = meeting.some((p) => p.measured.computedFraction <= f.measured.computedFraction && p.measured.meanPsnr > f.measured.meanPsnr);
      expect(beaten).toBe(false);
    }
    // The one that computes the fewest blocks among those meeting the target is a finalist.
    const leastWork = Math.min(...meeting.map((p) => p.measured.computedFraction));
    expect(finalists.some((f) => f.measured.computedFraction === leastWork)).toBe(true);
    // The pick: the fastest of the finalists timed together, whose images are those of the search.
    expect(heldOut[0].timed.speedup).toBe(Math.max(...heldOut.map((c) => c.timed.speedup)));
    expect(heldOut[0].timed.psnr).toEqual(pick.measured.psnr);
    expect(readdirSync(join(out, 'timing')).sort()).toEqual(['uncached', ...finalists.map((f) => f.name)].sort());
    // The pick first in the held-out check, measured on other images than the tuning ones.
    expect(heldOut[0].point).toBe(pick);
    expect(heldOut[0].heldOut.psnr).toHaveLength(2);
    expect(heldOut[0].heldOut.psnr).not.toEqual(pick.measured.psnr);
    const record = JSON.parse(readFileSync(join(out, 'holdout', pick.name, 'prompt-1.json'), 'utf-8')) as { settings: { seed: number } };
    expect(record.settings.seed).toBe(1000);
    expect(heldOut.every((c) => c.point.meetsTarget)).toBe(true);
    expect(lines[0]).toBe('tune: round 1, 26 configs on 2 prompts');
    expect(lines).toContain(`tune: timing ${heldOut.length} finalist${heldOut.length === 1 ? '' : 's'} together on the tuning prompts`);
    expect(lines.at(-1)).toBe('tune: held-out check of the finalists with seeds from 1000');
  });

  it('writes best.yaml, which core reads back and which reproduces the reported PSNR', async () => {
    const { pick, files } = result;
    const text = readFileSync(files.best!, 'utf-8');
    expect(text).toMatch(/^# ditcache tune: the fastest config found whose mean PSNR against the uncached images is >= 30 dB/);
    const document = parseYaml(text) as { cache_config: Record<string, unknown> };
    expect(Object.keys(document)).toEqual(['cache_config']);
    // Read by core as --cache reads it: the same resolved config as the one tuned (scm's preset spelled out as its mask).
    const loaded = resolveConfig(parseCacheConfig(text).base);
    const tuned = resolveConfig(parseCacheConfig(pick.config).base);
    expect(loaded.fnComputeBlocks).toBe(tuned.fnComputeBlocks);
    expect(loaded.residualDiffThreshold).toBe(tuned.residualDiffThreshold);
    expect(loaded.enableTaylorseer).toBe(tuned.enableTaylorseer);
    const best = await regenerate(document, join(dir, 'again'));
    expect(best.psnr).toEqual(pick.measured.psnr);
    expect(best.cachedSteps).toBe(pick.measured.cachedSteps);
  });

  it("writes an scm pick as DBCache with the preset's mask, which regenerates the same images", async () => {
    const scm = await tune({ model: flux, prompts, targetPsnr: TARGET, policies: ['scm'], out: join(dir, 'scm'), evaluationsPerVariant: 3 });
    expect(scm.pick.policy).toBe('scm');
    expect(scm.pick.measured.cachedSteps).toBeGreaterThan(0);
    const text = readFileSync(scm.files.best!, 'utf-8');
    expect(text).toMatch(/\n {2}steps_computation_mask: \[ 1, 1, [01, ]+ \]\n/);
    const document = parseYaml(text) as { cache_config: Record<string, unknown> };
    expect(document.cache_config.policy).toBeUndefined();
    expect(document.cache_config.mask_policy).toBeUndefined();
    const best = await regenerate(document, join(dir, 'scm-again'));
    expect(best.psnr).toEqual(scm.pick.measured.psnr);
    expect(best.cachedSteps).toBe(scm.pick.measured.cachedSteps);
  });

  it('calibrates MagCache once on the tuning prompts and writes a magcache pick with the ratios, which generate loads and which regenerates the same images', async () => {
    const out = join(dir, 'magcache');
    const logged: string[] = [];
    const mag = await tune({ model: flux, prompts, targetPsnr: TARGET, policies: ['magcache'], out, evaluationsPerVariant: 3, log: (l) => logged.push(l) });
    expect(logged[0]).toBe('tune: preparing policy magcache: {"policy":"magcache","calibrate":true} on 2 prompts');
    // The calibration computes every step: its images are the uncached ones.
    for (const prompt of [0, 1]) {
      expect(readFileSync(join(out, 'tuning', 'magcache_preparation', `prompt-${prompt}.png`))).toEqual(
        readFileSync(join(out, 'tuning', 'uncached', `prompt-${prompt}.png`)),
      );
    }
    // Every config carries the ratios of the two calibration runs, averaged step by step.
    const calibrated = [0, 1].map(
      (prompt) =>
        (JSON.parse(readFileSync(join(out, 'tuning', 'magcache_preparation', `prompt-${prompt}.json`), 'utf-8')) as CellRecord).summary!.contexts[0].branches[0]
          .report!.magRatios as number[],
    );
    expect(calibrated[0]).toHaveLength(10);
    expect(calibrated[0]).not.toEqual(calibrated[1]);
    const mean = calibrated[0].map((r, step) => (r + calibrated[1][step]) / 2);
    for (const p of mag.points) expect(p.config.mag_ratios).toEqual(mean);
    expect(mag.pick.policy).toBe('magcache');
    expect(mag.pick.meetsTarget).toBe(true);
    expect(mag.pick.measured.cachedSteps).toBeGreaterThan(0);

    // best.yaml: the config itself (cache-dit has no MagCache), the ratios on one line.
    const text = readFileSync(mag.files.best!, 'utf-8');
    expect(text).toContain('(cache-dit has no form of policy magcache)');
    expect(text).toMatch(/\n {2}mag_ratios: \[ 1, [0-9., e-]+ \]\n/);
    const document = parseYaml(text) as { cache_config: Record<string, unknown> };
    expect(document.cache_config).toEqual(mag.pick.config);
    const best = await regenerate(document, join(dir, 'magcache-again'));
    expect(best.psnr).toEqual(mag.pick.measured.psnr);
    expect(best.cachedSteps).toBe(mag.pick.measured.cachedSteps);
    // ditcache generate --cache best.yaml runs it.
    const stats = join(dir, 'magcache-stats.json');
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const args = [
        '--model',
        flux,
        '--inputs',
        join(flux, 'pipeline.safetensors'),
        '--height',
        '32',
        '--width',
        '32',
        '--steps',
        '10',
        '--cache',
        mag.files.best!,
        '--stats',
        stats,
      ];
      expect(await runCli(['node', 'ditcache', 'generate', ...args])).toBe(0);
    } finally {
      stderr.mockRestore();
    }
    const [context] = JSON.parse(readFileSync(stats, 'utf-8')) as { cachedSteps: number[] }[];
    expect(context.cachedSteps.length).toBeGreaterThan(0);
    // Run again, the calibration is found on disk with its summary, as every other cell.
    const stamp = () => statSync(join(out, 'tuning', 'magcache_preparation', 'prompt-1.json')).mtimeMs;
    const before = stamp();
    const again = await tune({ model: flux, prompts, targetPsnr: TARGET, policies: ['magcache'], out, evaluationsPerVariant: 3 });
    expect(stamp()).toBe(before);
    expect(again.pick.config).toEqual(mag.pick.config);
  });

  it('writes the tables, the JSON and a Pareto plot per policy', async () => {
    const { files, pick, heldOut } = result;
    const md = readFileSync(files.table, 'utf-8');
    expect(md).toContain('2 prompts, 10 steps, 32x32');
    expect(md).toContain(`\`${pick.name}\` (written to best.yaml)`);
    expect(md).toMatch(
      /## Finalists and held-out check\n[\s\S]*\| Config \| Cached steps \| Tuning PSNR dB \| Tuning speedup \(timed together\) \| Held-out PSNR dB/,
    );
    for (const policy of ['dbcache', 'scm']) {
      expect(md).toContain(`## Policy ${policy}\n\n| Config | Variant | Knob |`);
      const plot = await sharp(files.plots[policy]).metadata();
      expect([plot.format, plot.width]).toEqual(['png', 900]);
    }
    const json = JSON.parse(readFileSync(files.json, 'utf-8')) as { pick: string; points: unknown[]; heldOut: { name: string }[] };
    expect(json.pick).toBe(pick.name);
    expect(json.points).toHaveLength(result.points.length);
    expect(json.points[0]).toMatchObject({ name: result.points[0].name, meetsTarget: result.points[0].meetsTarget });
    expect(json.points[0]).not.toHaveProperty('measured.pareto');
    expect(json.heldOut.map((c) => c.name)).toEqual(heldOut.map((c) => c.point.name));
  });

  it('refuses a variant the model cannot run; without a config meeting the target, writes the tables but no best.yaml and says what came closest', async () => {
    // A plugin's hints: scm's static presets only, whose every config caches and so loses some fidelity.
    @registerPolicy({
      name: 'static-masks',
      keys: {},
      defaults: {},
      tuning: {
        variants: () => [
          {
            name: 'static',
            config: { policy: 'scm', Fn_compute_blocks: 1, steps_computation_policy: 'static' },
            knob: { key: 'mask_policy', values: ['slow', 'ultra'] },
          },
        ],
      },
    })
    class StaticMasks {
      create(): CachePolicy {
        throw new Error('its configs name scm');
      }
    }
    expect(StaticMasks.name).toBe('StaticMasks');
    // A variant that cannot run on the model is refused before any work.
    @registerPolicy({ name: 'too-deep', keys: {}, defaults: {}, tuning: { variants: () => [{ name: 'deep', config: { policy: 'scm' } }] } })
    class TooDeep {
      create(): CachePolicy {
        throw new Error('refused before any run');
      }
    }
    expect(TooDeep.name).toBe('TooDeep');
    await expect(tune({ model: flux, prompts, targetPsnr: 30, policies: ['too-deep'], out: join(dir, 'deep') })).rejects.toThrow(
      /^--policies: policy 'too-deep', variant 'deep': Fn_compute_blocks \(8\) \+ Bn_compute_blocks \(0\) exceeds the 6 blocks of /,
    );
    expect(existsSync(join(dir, 'deep'))).toBe(false);
    const missed = join(dir, 'missed');
    const run = tune({ model: flux, prompts, targetPsnr: 200, policies: ['static-masks'], out: missed });
    await expect(run).rejects.toThrow(TargetNotMetError);
    await expect(run).rejects.toThrow(
      /^no config reaches 200 dB mean PSNR: the most faithful of the 2 evaluated, static-masks_static_mask_policy-slow, reached \d+\.\d\d dB/,
    );
    expect(existsSync(join(missed, 'best.yaml'))).toBe(false);
    expect(readFileSync(join(missed, 'results.md'), 'utf-8')).toContain('No config met the target of 200 dB on the tuning prompts.');
  });

  it('resumes from the cells on disk, and runs from the command line', async () => {
    const stamp = () => statSync(join(out, 'tuning', result.pick.name, 'prompt-0.json')).mtimeMs;
    const before = stamp();
    const stdout = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const status = await runCli([
        'node',
        'ditcache',
        'tune',
        '--model',
        flux,
        '--prompts',
        prompts,
        '--target-psnr',
        '30',
        '--policies',
        'dbcache',
        '--policies',
        'scm',
        '--evaluations',
        '4',
        '--out',
        out,
      ]);
      expect(status).toBe(0);
      expect(String(stdout.mock.calls.at(-1)?.[0])).toMatch(new RegExp(`^pick: ${result.pick.name}: `));
      expect(await runCli(['node', 'ditcache', 'tune', '--model', flux, '--prompts', prompts, '--target-psnr', '30', '--policies', 'dbcache,nope'])).toBe(2);
      expect(String(stderr.mock.calls.at(-1)?.[0])).toMatch(/^ditcache: --policies: 'nope' is not a registered cache policy \(tunable: dbcache, .*scm.*\)\n$/);
      expect(await runCli(['node', 'ditcache', 'tune', '--model', flux, '--prompts', prompts, '--target-psnr', 'high'])).toBe(2);
      expect(
        await runCli(['node', 'ditcache', 'tune', '--model', flux, '--prompts', prompts, '--target-psnr', '30', '--seed', '5', '--holdout-seed', '6']),
      ).toBe(2);
      expect(String(stderr.mock.calls.at(-1)?.[0])).toBe('ditcache: --holdout-seed 6: its 2 seeds overlap the tuning seeds 5..6\n');
      // Noise given in the file would make the held-out prompts the tuning ones.
      const golden = join(flux, 'pipeline.safetensors');
      expect(await runCli(['node', 'ditcache', 'tune', '--model', flux, '--prompts', golden, '--target-psnr', '30', '--height', '32', '--width', '32'])).toBe(
        2,
      );
      expect(String(stderr.mock.calls.at(-1)?.[0])).toMatch(
        /^ditcache: --prompts: .*pipeline.safetensors gives latents_in, so every seed starts from the same noise/,
      );
    } finally {
      stdout.mockRestore();
      stderr.mockRestore();
    }
    expect(stamp()).toBe(before);
  });
});
