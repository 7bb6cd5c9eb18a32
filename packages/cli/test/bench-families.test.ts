// `ditcache bench` on families other than FLUX, through their CLI plugins: a Wan video (frames,
// CFG with negative embeddings, PSNR over all frames) and HiDream (whose Llama embeddings hold the
// prompts on their second axis), against the goldens' diffusers outputs, the SCM policy's mask,
// and the errors of bad prompts files, flags and configs.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import sharp from 'sharp';
import { afterAll, describe, expect, it, vi } from 'vitest';

import { scmMask } from '@ditcache/core';
import { concat, loadSafetensors, mul, saveSafetensors, type Tensor } from '@ditcache/cuda-runtime';

import { bench } from '../src/bench/command.js';
import { readBenchConfigs } from '../src/bench/configs.js';
import { runCli } from '../src/program.js';
import type { CellRecord } from '../src/bench/runner.js';

const root = new URL('../../../', import.meta.url).pathname;
const wan = join(root, 'testdata/goldens/wan-tiny');
const hidream = join(root, 'testdata/goldens/hidream-tiny');
const dir = mkdtempSync(join(tmpdir(), 'ditcache-bench-families-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Meta = Record<string, number>;
const metaOf = (model: string) => JSON.parse(readFileSync(join(model, 'meta.json'), 'utf-8')) as Meta;

/**
 * Two prompts from a golden's inputs: the golden's own (prompt 0, with its latents_in, so that
 * its picture is diffusers' output) and one with every embedding scaled by 0.7 (prompt 1). Each
 * tensor holds the prompts on `axes[name]` (default 0).
 */
function writeTwoPrompts(golden: string, path: string, names: readonly string[], metadata: Record<string, string>, axes: Record<string, number> = {}): void {
  const file = loadSafetensors(join(golden, 'pipeline.safetensors'));
  const made: Tensor[] = [];
  const tensors: Record<string, Tensor> = {};
  for (const name of [...names, 'latents_in']) {
    const second = name === 'latents_in' ? file[name] : mul(file[name], 0.7);
    if (second !== file[name]) made.push(second);
    tensors[name] = concat([file[name], second], axes[name] ?? 0);
  }
  saveSafetensors(path, tensors, { prompts: JSON.stringify(['golden', 'scaled']), ...metadata });
  for (const t of [...made, ...Object.values(tensors), ...Object.values(file)]) t.dispose();
}

/** The 8-bit samples of a PNG. */
async function pixels(path: string): Promise<Uint8Array> {
  return new Uint8Array(await sharp(path).raw().toBuffer());
}

/** A cell's PNG frames, in order. */
function framesOf(out: string, config: string, prompt: number): string[] {
  const folder = join(out, config, `prompt-${prompt}_frames`);
  return readdirSync(folder)
    .sort()
    .map((name) => join(folder, name));
}

/** PSNR of two videos' frames taken together (data range 255), computed here from the PNGs. */
async function videoPsnr(a: readonly string[], b: readonly string[]): Promise<number> {
  let squared = 0;
  let samples = 0;
  for (let f = 0; f < a.length; ++f) {
    const [x, y] = await Promise.all([pixels(a[f]), pixels(b[f])]);
    for (let i = 0; i < x.length; ++i) squared += (x[i] - y[i]) ** 2;
    samples += x.length;
  }
  return 10 * Math.log10((255 * 255) / (squared / samples));
}

/** The largest difference between 8-bit samples and float ones in [0, 1] scaled to 255. */
function worstLevel(got: Uint8Array, want: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < want.length; ++i) worst = Math.max(worst, Math.abs(got[i] - want[i] * 255));
  return worst;
}

const record = (out: string, config: string, prompt: number) => JSON.parse(readFileSync(join(out, config, `prompt-${prompt}.json`), 'utf-8')) as CellRecord;

describe('ditcache bench on Wan (video, CFG)', () => {
  const meta = metaOf(wan);
  const prompts = join(dir, 'wan-prompts.safetensors');
  const configs = join(dir, 'wan-configs.json');
  const out = join(dir, 'wan-out');
  writeTwoPrompts(wan, prompts, ['prompt_embeds', 'negative_prompt_embeds'], {
    height: String(meta.height),
    width: String(meta.width),
    num_inference_steps: String(meta.num_inference_steps),
  });
  writeFileSync(
    configs,
    JSON.stringify({
      off: { Fn_compute_blocks: 1, residual_diff_threshold: 0 },
      loose: { Fn_compute_blocks: 1, max_warmup_steps: 2, residual_diff_threshold: 0.5 },
      'scm-fast': { policy: 'scm', mask_policy: 'fast', steps_computation_policy: 'static', Fn_compute_blocks: 1, max_warmup_steps: 2 },
    }),
  );
  const frames = new Map([['--frames', meta.num_frames]]);

  it('runs every cell as generate would, writes animations and frames, and compares all frames', async () => {
    const { results, table, files } = await bench({ model: wan, prompts, configs, out, guidance: meta.guidance_scale, seed: 0, repeats: 1 }, undefined, frames);
    expect(results.map((r) => r.name)).toEqual(['uncached', 'off', 'loose', 'scm-fast']);
    const [, off, loose, scm] = results;

    // Prompt 0 is the golden's: its uncached frames are diffusers' video, to 8-bit rounding.
    const golden = loadSafetensors(join(wan, 'pipeline.safetensors'));
    const want = golden.video_out.toFloat32Array();
    const frameSize = meta.height * meta.width * 3;
    const uncachedFrames = framesOf(out, 'uncached', 0);
    expect(uncachedFrames).toHaveLength(meta.num_frames);
    for (const [f, path] of uncachedFrames.entries())
      expect(worstLevel(await pixels(path), want.subarray(f * frameSize, (f + 1) * frameSize))).toBeLessThanOrEqual(0.5 + 1e-3);
    for (const t of Object.values(golden)) t.dispose();

    // Every cell: an animation as generate writes it, its frames beside it, counted in its record.
    for (const config of ['uncached', 'off', 'loose', 'scm-fast']) {
      for (const prompt of [0, 1]) {
        expect(
          readFileSync(join(out, config, `prompt-${prompt}.webp`))
            .subarray(8, 12)
            .toString(),
        ).toBe('WEBP');
        expect(framesOf(out, config, prompt)).toHaveLength(meta.num_frames);
        expect(record(out, config, prompt)).toMatchObject({ frames: meta.num_frames, format: '.webp' });
      }
    }

    // Threshold 0 computes everything: the very frames of the uncached run.
    expect(off.psnr).toEqual([Infinity, Infinity]);
    expect(off.ssim).toEqual([1, 1]);
    for (const prompt of [0, 1]) {
      const [a, b] = [framesOf(out, 'uncached', prompt), framesOf(out, 'off', prompt)];
      for (let f = 0; f < a.length; ++f) expect(readFileSync(b[f]).equals(readFileSync(a[f]))).toBe(true);
    }

    // A cached config's PSNR is that of all its frames against the uncached ones.
    for (const r of [loose, scm]) {
      for (const prompt of [0, 1]) {
        const independent = await videoPsnr(framesOf(out, 'uncached', prompt), framesOf(out, r.name, prompt));
        expect(r.psnr[prompt]).toBeCloseTo(independent, 9);
        expect(r.psnr[prompt]).toBeGreaterThan(15);
      }
      expect(r.ssim.every((s) => s > 0.3 && s < 1)).toBe(true);
    }
    expect(loose.cachedSteps).toBeGreaterThan(2);

    // SCM static caches exactly the 0 steps of cache-dit's 'fast' mask, in both CFG branches.
    const zeros = scmMask('fast', meta.num_inference_steps).flatMap((m, step) => (m === 0 ? [step] : []));
    expect(zeros).toEqual([5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    for (const prompt of [0, 1]) expect(record(out, 'scm-fast', prompt)).toMatchObject({ cachedSteps: zeros, cfgCachedSteps: zeros });
    expect([scm.cachedSteps, scm.cfgCachedSteps]).toEqual([zeros.length, zeros.length]);
    expect(table).toMatch(/\| scm-fast \|.*\| 10\.0\/16, CFG 10\.0 \|/);

    expect(table).toMatch(/\| scm-fast \| scm fast static \| 1 \| 0 \|/);
    expect(table).toMatch(/\| loose \| dbcache \| 1 \| 0 \| 0\.5 \|/);
    const header = readFileSync(files.table, 'utf-8');
    expect(header).toContain("(Wan) in float32, 2 prompts, 16 steps, 48x32, 9 frames, guidance 5, the prompts file's latents_in as noise.");
    expect(header).toContain('PSNR of each 8-bit video');
    const json = JSON.parse(readFileSync(files.json, 'utf-8')) as { family: string; settings: Record<string, unknown> };
    expect(json.family).toBe('Wan');
    expect(json.settings).toMatchObject({ guidance: 5, family: { frames: 9 } });
  });

  it('resumes the same cells; other prompt tensors or other frames rerun them', async () => {
    const run = (file: string, flags: ReadonlyMap<string, number>) =>
      bench({ model: wan, prompts: file, configs, out, guidance: meta.guidance_scale, seed: 0, repeats: 1 }, undefined, flags);
    const before = record(out, 'loose', 1);
    const again = await run(prompts, frames);
    expect(record(out, 'loose', 1)).toEqual(before);
    expect(again.results[2].psnr).toEqual((JSON.parse(readFileSync(join(out, 'results.json'), 'utf-8')) as { results: { psnr: number[] }[] }).results[2].psnr);
    // The same embeddings without latents_in: the seeds' noise, so other cells.
    const seeded = join(dir, 'wan-seeded.safetensors');
    const file = loadSafetensors(prompts);
    saveSafetensors(
      seeded,
      { prompt_embeds: file.prompt_embeds, negative_prompt_embeds: file.negative_prompt_embeds },
      { height: '32', width: '48', num_inference_steps: '16' },
    );
    for (const t of Object.values(file)) t.dispose();
    await run(seeded, frames);
    expect(record(out, 'loose', 1).inputs).not.toBe(before.inputs);
    const fewer = await run(seeded, new Map([['--frames', 5]]));
    expect(fewer.results[1].psnr).toEqual([Infinity, Infinity]);
    expect(framesOf(out, 'loose', 1)).toHaveLength(5);
    expect(record(out, 'loose', 1)).toMatchObject({ frames: 5, settings: { family: { frames: 5 } } });
  });

  it('refuses bad prompts files, flags and configs, naming the problem', async () => {
    const run = (over: { prompts?: string; configs?: string }, flags = frames) =>
      bench(
        { model: wan, prompts: over.prompts ?? prompts, configs: over.configs ?? configs, out: join(dir, 'wan-bad'), seed: 0, repeats: 1 },
        undefined,
        flags,
      );
    const file = loadSafetensors(prompts);
    const noEmbeds = join(dir, 'no-embeds.safetensors');
    saveSafetensors(noEmbeds, { negative_prompt_embeds: file.negative_prompt_embeds }, { height: '32', width: '48' });
    await expect(run({ prompts: noEmbeds })).rejects.toThrow(
      /--prompts .*no-embeds.safetensors has no tensor 'prompt_embeds' \(it has: negative_prompt_embeds\)/,
    );
    const ragged = join(dir, 'ragged.safetensors');
    const one = file.negative_prompt_embeds.narrow(0, 0, 1);
    saveSafetensors(ragged, { prompt_embeds: file.prompt_embeds, negative_prompt_embeds: one }, { height: '32', width: '48' });
    one.dispose();
    await expect(run({ prompts: ragged })).rejects.toThrow(/holds 2 prompts, but its tensor 'negative_prompt_embeds' \(1, 10, 32\) has no axis of size 2/);
    for (const t of Object.values(file)) t.dispose();
    await expect(run({}, new Map([['--frames', 8]]))).rejects.toThrow(/--frames must be 4k \+ 1/);
    await expect(run({}, new Map([['--true-cfg-scale', 2]]))).rejects.toThrow(/--true-cfg-scale does not apply to Wan \(it takes --prompt, .*--frames/);
    await expect(bench({ model: wan, prompts, configs, out: join(dir, 'wan-bad'), steps: 5, seed: 0, repeats: 1 }, undefined, frames)).rejects.toThrow(
      /--configs: 'scm-fast': steps computation mask 'fast': cache-dit's presets cover 4, 6 and 8-100 steps, not 5 \(--steps\)/,
    );
    const big = join(dir, 'big.json');
    writeFileSync(big, JSON.stringify({ big: { Fn_compute_blocks: 3, Bn_compute_blocks: 2 } }));
    await expect(run({ configs: big })).rejects.toThrow(
      /--configs: 'big': Fn_compute_blocks \(3\) \+ Bn_compute_blocks \(2\) exceeds the 4 blocks of transformer\.blocks/,
    );
  });
});

describe('ditcache bench on the command line', () => {
  it("takes the families' own flags as generate does (not the text-prompt ones), and refuses bad values", async () => {
    const meta = metaOf(wan);
    const prompts = join(dir, 'cli-prompts.safetensors');
    writeTwoPrompts(wan, prompts, ['prompt_embeds', 'negative_prompt_embeds'], { height: '32', width: '48' });
    const configs = join(dir, 'cli-configs.json');
    writeFileSync(configs, JSON.stringify(['fast']));
    const out = join(dir, 'cli-out');
    const argv = ['node', 'ditcache', 'bench', '--model', wan, '--prompts', prompts, '--configs', configs, '--out', out, '--steps', '8', '--guidance', '4'];
    const printed = { stdout: '', stderr: '' };
    const stdout = vi.spyOn(process.stdout, 'write').mockImplementation((text) => {
      printed.stdout += String(text);
      return true;
    });
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation((text) => {
      printed.stderr += String(text);
      return true;
    });
    try {
      expect(await runCli([...argv, '--frames', String(meta.num_frames), '--fps', '8'])).toBe(0);
      expect(await runCli([...argv, '--frames', '0'])).toBe(2);
      expect(await runCli([...argv, '--prompt', 'a cat'])).toBe(2);
      expect(await runCli(['node', 'ditcache', 'bench', '--help'])).toBe(0);
    } finally {
      stdout.mockRestore();
      stderr.mockRestore();
    }
    expect(printed.stdout).toMatch(/\| fast \| dbcache \| 1 \| 0 \| 0\.3 \|/);
    expect(printed.stderr).toContain('--frames must be a positive integer');
    expect(printed.stderr).toContain("unknown option '--prompt'");
    expect(printed.stdout).toMatch(/Options of the model families[\s\S]*--frames <n>[\s\S]*--fps <n>/);
    expect(record(out, 'fast', 0)).toMatchObject({ frames: 9, settings: { steps: 8, guidance: 4, family: { frames: 9, fps: 8 } } });
  });
});

describe('bench configs of any policy', () => {
  it('grid axes name policies and their keys; a key the policy does not take is refused with the valid ones', () => {
    const grid = join(dir, 'policy-grid.yaml');
    writeFileSync(
      grid,
      'grid:\n  - { Fn_compute_blocks: [1], residual_diff_threshold: [0.2] }\n  - { policy: [scm], mask_policy: [slow, ultra], steps_computation_policy: [static] }\n',
    );
    const configs = readBenchConfigs(grid);
    expect(configs.map((c) => c.cache)).toEqual([
      { Fn_compute_blocks: 1, residual_diff_threshold: 0.2 },
      { policy: 'scm', mask_policy: 'slow', steps_computation_policy: 'static' },
      { policy: 'scm', mask_policy: 'ultra', steps_computation_policy: 'static' },
    ]);
    expect(configs[2].name).toBe('scm_F8B0_W8I1M0MC0_R0.08_T0O0_static_maskPolicy-ultra');
    writeFileSync(grid, JSON.stringify({ grid: { mask_polcy: ['fast'] } }));
    expect(() => readBenchConfigs(grid)).toThrow(/unknown grid axis 'mask_polcy' \(axes: Fn_compute_blocks, .*policy, .*mask_policy/);
    writeFileSync(grid, JSON.stringify({ grid: { mask_policy: ['fast'] } }));
    expect(() => readBenchConfigs(grid)).toThrow(/unknown key "mask_policy".*Valid keys with policy 'dbcache'/);
    writeFileSync(grid, JSON.stringify({ grid: { policy: ['scm'], mask_policy: ['fastest'] } }));
    expect(() => readBenchConfigs(grid)).toThrow(/mask_policy.*'slow', 'medium', 'fast', 'ultra'/);
    writeFileSync(grid, JSON.stringify({ grid: { policy: [{ name: 'scm' }] } }));
    expect(() => readBenchConfigs(grid)).toThrow(/grid axis 'policy' must be a non-empty list of numbers, names or true \/ false/);
  });
});

describe('ditcache bench on HiDream (prompts on the Llama embeddings second axis)', () => {
  it("slices each tensor on its prompt axis: prompt 0 gives diffusers' image", async () => {
    const meta = metaOf(hidream);
    const prompts = join(dir, 'hd-prompts.safetensors');
    const names = [
      'prompt_embeds_t5',
      'prompt_embeds_llama3',
      'pooled_prompt_embeds',
      'negative_prompt_embeds_t5',
      'negative_prompt_embeds_llama3',
      'negative_pooled_prompt_embeds',
    ];
    writeTwoPrompts(hidream, prompts, names, { guidance_scale: String(meta.guidance_scale) }, { prompt_embeds_llama3: 1, negative_prompt_embeds_llama3: 1 });
    const configs = join(dir, 'hd-configs.json');
    writeFileSync(configs, JSON.stringify([{ name: 'off', Fn_compute_blocks: 1, residual_diff_threshold: 0 }, 'fast']));
    const out = join(dir, 'hd-out');
    const { results } = await bench(
      { model: hidream, prompts, configs, out, height: meta.height, width: meta.width, steps: meta.num_inference_steps, seed: 0, repeats: 1 },
      undefined,
      new Map([['--default-sample-size', meta['pipe.default_sample_size']]]),
    );
    const golden = loadSafetensors(join(hidream, 'pipeline.safetensors'));
    expect(worstLevel(await pixels(join(out, 'uncached', 'prompt-0.png')), golden.image_out.toFloat32Array())).toBeLessThanOrEqual(0.5 + 1e-3);
    for (const t of Object.values(golden)) t.dispose();
    // The scaled prompt is another image.
    const [first, second] = await Promise.all([0, 1].map((p) => pixels(join(out, 'uncached', `prompt-${p}.png`))));
    expect(Buffer.from(first).equals(Buffer.from(second))).toBe(false);
    const [, off, fast] = results;
    expect(off.psnr).toEqual([Infinity, Infinity]);
    for (const p of [0, 1]) expect(readFileSync(join(out, 'off', `prompt-${p}.png`)).equals(readFileSync(join(out, 'uncached', `prompt-${p}.png`)))).toBe(true);
    expect(fast.cachedSteps).toBeGreaterThan(0);
    expect(fast.psnr.every((p) => Number.isFinite(p) && p > 15)).toBe(true);
    expect(record(out, 'uncached', 0).frames).toBeUndefined();
  });
});
