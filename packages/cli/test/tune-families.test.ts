// `ditcache tune` on a family with flags of its own: a Wan video tuned from the command line with
// --frames and --fps, which reach every run (the cells' videos have those frames, the settings
// record them), and a flag the family does not take refused before any work.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it, vi } from 'vitest';

import { loadSafetensors, saveSafetensors } from '@ditcache/cuda-runtime';

import type { CellRecord } from '../src/bench/runner.js';
import { runCli } from '../src/program.js';

const root = new URL('../../../', import.meta.url).pathname;
const wan = join(root, 'testdata/goldens/wan-tiny');
const flux = join(root, 'testdata/goldens/flux-tiny');
const dir = mkdtempSync(join(tmpdir(), 'ditcache-tune-families-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The Wan golden's prompt without its noise (tune draws noise from seeds), at the golden's size. */
function writeWanPrompt(path: string): void {
  const golden = loadSafetensors(join(wan, 'pipeline.safetensors'));
  const meta = JSON.parse(readFileSync(join(wan, 'meta.json'), 'utf-8')) as Record<string, number>;
  saveSafetensors(
    path,
    { prompt_embeds: golden.prompt_embeds, negative_prompt_embeds: golden.negative_prompt_embeds },
    { prompts: JSON.stringify(['golden']), height: String(meta.height), width: String(meta.width), guidance_scale: String(meta.guidance_scale) },
  );
  for (const t of Object.values(golden)) t.dispose();
}

/** Runs the CLI with stdout and stderr captured. */
async function cli(args: readonly string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  const stdout = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    const status = await runCli(['node', 'ditcache', ...args]);
    return { status, stdout: stdout.mock.calls.map((c) => String(c[0])).join(''), stderr: stderr.mock.calls.map((c) => String(c[0])).join('') };
  } finally {
    stdout.mockRestore();
    stderr.mockRestore();
  }
}

describe('ditcache tune with a family’s own flags', () => {
  const prompts = join(dir, 'wan-prompt.safetensors');
  const out = join(dir, 'wan-out');

  it('tunes a Wan video with --frames and --fps reaching every run', async () => {
    writeWanPrompt(prompts);
    const common = ['--prompts', prompts, '--target-psnr', '20', '--policies', 'dbcache', '--evaluations', '2', '--steps', '4', '--out', out];
    const run = await cli(['tune', '--model', wan, ...common, '--frames', '5', '--fps', '12']);
    expect(run.stderr).not.toMatch(/ditcache: [^g]/);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^pick: dbcache_F1B0-/);

    const json = JSON.parse(readFileSync(join(out, 'results.json'), 'utf-8')) as { settings: Record<string, unknown>; points: unknown[] };
    expect(json.settings).toMatchObject({ steps: 4, height: 32, width: 48, guidance: 5, family: { frames: 5, fps: 12 } });
    expect(readFileSync(join(out, 'results.md'), 'utf-8')).toContain('1 prompts, 4 steps, 48x32, frames 5, fps 12.');
    expect(readFileSync(join(out, 'best.yaml'), 'utf-8')).toContain(', 4 steps, 48x32, frames 5, fps 12, float32)');
    // 10 variants, both ends of the knob each (the threshold, or the periodic variants' cap: 1 and 3 at 4 steps).
    expect(json.points).toHaveLength(20);
    // Every cell of the search, the timing and the held-out check: a video of 5 frames, made with those settings.
    for (const phase of ['tuning', 'timing', 'holdout']) {
      for (const config of readdirSync(join(out, phase))) {
        const record = JSON.parse(readFileSync(join(out, phase, config, 'prompt-0.json'), 'utf-8')) as CellRecord;
        expect(record.frames).toBe(5);
        expect(record.settings.family).toEqual({ frames: 5, fps: 12 });
        expect(readdirSync(join(out, phase, config, 'prompt-0_frames'))).toHaveLength(5);
      }
    }
  });

  it('refuses a family flag the model’s family does not take, before any work', async () => {
    const refused = join(dir, 'refused');
    const run = await cli(['tune', '--model', flux, '--prompts', join(flux, 'pipeline.safetensors'), '--target-psnr', '20', '--frames', '5', '--out', refused]);
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/^ditcache: --frames does not apply to FLUX\.1 \(it takes /m);
    expect(existsSync(refused)).toBe(false);
  });
});
