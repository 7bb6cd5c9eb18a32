// `ditcache generate --magcache-calibration FILE` as users run it (the built bin, flux-tiny):
// the file is a --cache config holding diffusers' calibrated ratios, the run's latents are the
// uncached ones bit for bit, and --cache FILE then skips the steps MagCache's rule gives.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { MagCacheDecider, magCacheRetentionSteps } from '@ditcache/core';
import { loadSafetensors } from '@ditcache/cuda-runtime';

const root = new URL('../../../', import.meta.url).pathname;
const bin = join(root, 'packages/cli/dist/cli.js');
const flux = join(root, 'testdata/goldens/flux-tiny');
const dir = mkdtempSync(join(tmpdir(), 'ditcache-magcache-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function ditcache(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf-8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const meta = JSON.parse(readFileSync(join(flux, 'meta.json'), 'utf-8')) as Record<string, number>;
const diffusers = JSON.parse(readFileSync(join(root, 'packages/adapter-flux/test/goldens/flux-tiny/cache_traces_magcache.json'), 'utf-8')) as {
  calibration: { cond: number[] };
};
const run = ['--model', flux, '--inputs', join(flux, 'pipeline.safetensors'), '--height', String(meta.height), '--width', String(meta.width)];
const steps = meta.num_inference_steps;

describe('ditcache generate --magcache-calibration', () => {
  it("writes a --cache config with diffusers' ratios, computing every step; the config then skips the rule's steps", () => {
    const config = join(dir, 'magcache.json');
    const calibrated = join(dir, 'calibrated.safetensors');
    const uncached = join(dir, 'uncached.safetensors');
    const r = ditcache('generate', ...run, '--steps', String(steps), '--magcache-calibration', config, '--save-latents', calibrated);
    expect(r.stderr).toContain(`MagCache ratios written to ${config}`);
    expect(r.status).toBe(0);
    const written = JSON.parse(readFileSync(config, 'utf-8')) as { policy: string; mag_ratios: number[] };
    expect(written.policy).toBe('magcache');
    expect(written.mag_ratios).toHaveLength(steps);
    written.mag_ratios.forEach((ratio, i) => expect(Math.abs(ratio - diffusers.calibration.cond[i]), `step ${i}`).toBeLessThan(1e-4));

    expect(ditcache('generate', ...run, '--steps', String(steps), '--save-latents', uncached).status).toBe(0);
    const [a, b] = [calibrated, uncached].map((f) => loadSafetensors(f).latents_out);
    expect(Array.from(a.toFloat32Array())).toEqual(Array.from(b.toFloat32Array()));
    for (const t of [a, b]) t.dispose();

    const stats = join(dir, 'stats.json');
    expect(ditcache('generate', ...run, '--steps', String(steps), '--cache', config, '--stats', stats).status).toBe(0);
    const [record] = JSON.parse(readFileSync(stats, 'utf-8')) as { cachedSteps: number[] }[];
    // MagCache's defaults: threshold 0.06, max_skip_steps 3, retention_ratio 0.2.
    const decider = new MagCacheDecider({ ratios: written.mag_ratios, retentionSteps: magCacheRetentionSteps(0.2, steps), threshold: 0.06, maxSkipSteps: 3 });
    for (let step = 0; step < steps; step++) decider.decide(step, step > 0);
    expect(decider.cachedSteps.length).toBeGreaterThan(0);
    expect(record.cachedSteps).toEqual(decider.cachedSteps);
  });

  it('refuses --cache beside it', () => {
    const r = ditcache('generate', ...run, '--cache', 'fast', '--magcache-calibration', join(dir, 'x.json'));
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('--magcache-calibration runs its own cache config');
  });
});
