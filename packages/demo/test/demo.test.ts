// The demo on the reference model: Node reproduces diffusers' latents, and the demo's table,
// grid and plot come out right for one prompt.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';

import { FluxPipeline } from '@ditcache/adapter-flux';
import { scmMask } from '@ditcache/core';
import { Tensor, loadSafetensors, openSafetensors } from '@ditcache/cuda-runtime';

import { DEMO_DBPRUNE, DEMO_FASTERCACHE, DEMO_FOCA, DEMO_MAGCACHE, DEMO_PAB, DEMO_PRESETS, DEMO_SCM, REFERENCE_MODEL, runDemo } from '../src/demo.js';

/** The demo's prompts, as the embeddings file lists them in its metadata. */
function openPrompts(): string {
  using f = openSafetensors(join(REFERENCE_MODEL, 'demo-prompts.safetensors'));
  return f.metadata.prompts;
}

const dir = mkdtempSync(join(tmpdir(), 'ditcache-demo-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the reference model', () => {
  it('generates, uncached, the latents diffusers generated from the same embeddings and seeds', () => {
    const file = loadSafetensors(join(REFERENCE_MODEL, 'demo-prompts.safetensors'));
    using pipe = FluxPipeline.fromPretrained(REFERENCE_MODEL);
    try {
      for (const prompt of [0, 1]) {
        const promptEmbeds = file.prompt_embeds.narrow(0, prompt, 1);
        const pooledPromptEmbeds = file.pooled_prompt_embeds.narrow(0, prompt, 1);
        const { latents } = pipe.generate({ promptEmbeds, pooledPromptEmbeds, seed: prompt, height: 32, width: 32, numInferenceSteps: 28, decode: false });
        const got = latents.toFloat32Array();
        const reference = file.diffusers_latents_out.narrow(0, prompt, 1);
        const want = reference.toFloat32Array();
        let worst = 0;
        for (let i = 0; i < want.length; ++i) worst = Math.max(worst, Math.abs(got[i] - want[i]));
        expect(got.length).toBe(16 * 32);
        expect(worst).toBeLessThan(1e-4);
        for (const t of [latents, reference, promptEmbeds, pooledPromptEmbeds]) t.dispose();
      }
    } finally {
      for (const t of Object.values(file)) t.dispose();
    }
  });
});

describe('the reference model from text', () => {
  it("Node's CLIP and T5 encoders give the embeddings diffusers computed for the demo's prompts", () => {
    const file = loadSafetensors(join(REFERENCE_MODEL, 'demo-prompts.safetensors'));
    const prompts = JSON.parse(openPrompts()) as string[];
    using pipe = FluxPipeline.fromPretrained(REFERENCE_MODEL);
    const encoded = pipe.encodePrompt(prompts, { maxSequenceLength: 16 });
    try {
      const relativeL2 = (a: Float32Array, b: Float32Array) => {
        let d = 0,
          n = 0;
        for (let i = 0; i < b.length; ++i) {
          d += (a[i] - b[i]) ** 2;
          n += b[i] ** 2;
        }
        return Math.sqrt(d / n);
      };
      expect([...encoded.promptEmbeds.shape]).toEqual([...file.prompt_embeds.shape]);
      expect(relativeL2(encoded.promptEmbeds.toFloat32Array(), file.prompt_embeds.toFloat32Array())).toBeLessThan(1e-5);
      expect(relativeL2(encoded.pooledPromptEmbeds.toFloat32Array(), file.pooled_prompt_embeds.toFloat32Array())).toBeLessThan(1e-5);
    } finally {
      for (const t of [...Object.values(encoded), ...Object.values(file)]) if (t instanceof Tensor) t.dispose();
    }
  });
});

describe('the demo', () => {
  it('measures a preset against the uncached run and draws the grid and the residual plot', async () => {
    const demo = await runDemo({ out: dir, promptCount: 1, presets: ['fast'] });
    const [uncached, fast] = demo.results;
    expect([uncached.name, fast.name]).toEqual(['uncached', 'fast']);
    expect(uncached.speedup).toBe(1);
    expect(uncached.psnr).toEqual([Infinity]);
    // Measured: 20 of 28 steps cached at 53 dB (mean over the four demo prompts; prompt 0 alike).
    expect(fast.cachedSteps).toBeGreaterThanOrEqual(18);
    expect(fast.computedFraction).toBeLessThan(0.45);
    expect(fast.psnr[0]).toBeGreaterThan(45);
    expect(fast.meanSsim).toBeGreaterThan(0.99);
    const record = demo.records.get('fast')![0];
    expect(Object.keys(record.residualDiffs).length).toBeGreaterThan(record.cachedSteps.length);
    expect(demo.table.split('\n')).toHaveLength(4);
    expect(demo.table).toMatch(/^\| Config \| Policy \| Threshold \| Wall time \(s\) \| Speedup \| Cached steps/);
    expect(demo.table).toMatch(/\| fast \| dbcache \| 0\.3 \|/);
    expect(readFileSync(demo.files.table, 'utf-8')).toBe(`${demo.table}\n`);
    const grid = await sharp(demo.files.grid).metadata();
    // A label column of 260 px, then two tiles of 32 x 6 px with a 6 px gap each; a header of two 16 px lines.
    expect([grid.format, grid.width, grid.height]).toEqual(['png', 260 + 2 * (192 + 6), 44 + 192 + 6]);
    const plot = await sharp(demo.files.plot).metadata();
    expect(plot.format).toBe('png');
    expect(plot.width).toBeGreaterThan(400);
  });
});

describe('the demo of every policy', () => {
  it('adds SCM, FoCa, DBPrune, PAB, FasterCache and a calibrated MagCache after the presets, each caching with the fidelity measured', async () => {
    const demo = await runDemo({ out: join(dir, 'policies'), promptCount: 1, repeats: 1 });
    expect(demo.results.map((r) => r.name)).toEqual([
      'uncached',
      ...DEMO_PRESETS,
      DEMO_SCM.name,
      DEMO_FOCA.name,
      DEMO_DBPRUNE.name,
      DEMO_PAB.name,
      DEMO_FASTERCACHE.name,
      DEMO_MAGCACHE,
    ]);
    const byName = new Map(demo.results.map((r) => [r.name, r]));

    // SCM caches only where the medium mask allows: measured 12 of its 13 (mean over the four demo prompts) at about 57 dB.
    const record = demo.records.get(DEMO_SCM.name)![0];
    const maskZeros = scmMask('medium', 28).flatMap((m, step) => (m === 0 ? [step] : []));
    expect(maskZeros).toHaveLength(13);
    expect(record.cachedSteps.every((step) => maskZeros.includes(step))).toBe(true);
    expect(record.cachedSteps.length).toBeGreaterThanOrEqual(10);
    expect(byName.get(DEMO_SCM.name)!.psnr[0]).toBeGreaterThan(45);
    expect(demo.table).toMatch(/\| scm-medium \| scm medium dynamic \| 0\.3 \|/);

    // FoCa: measured on prompt 0 14 of 28 steps cached, 56% of the blocks, 47.6 dB; 3 in a row at most.
    const foca = byName.get(DEMO_FOCA.name)!;
    expect(foca.cachedSteps).toBeGreaterThanOrEqual(12);
    expect(foca.computedFraction).toBeLessThan(0.6);
    expect(foca.psnr[0]).toBeGreaterThan(44);
    expect(demo.table).toMatch(/\| foca \| dbcache foca \| 0\.15 \|/);

    // DBPrune: measured on prompt 0 a pruned block in 16 of 28 steps, 50% of the blocks, 41.8 dB.
    const dbprune = byName.get(DEMO_DBPRUNE.name)!;
    expect(dbprune.cachedSteps).toBeGreaterThanOrEqual(13);
    expect(dbprune.computedFraction).toBeLessThan(0.6);
    expect(dbprune.psnr[0]).toBeGreaterThan(39);
    expect(demo.table).toMatch(/\| dbprune \| dbprune .*\| 0\.1 \|/);

    // The attention policies run every block and reuse attention outputs instead: PAB measured 43% of
    // the attention calls reused at 53 dB (4 prompts), FasterCache's forecast 29% at 62 dB.
    const pab = byName.get(DEMO_PAB.name)!;
    const fastercache = byName.get(DEMO_FASTERCACHE.name)!;
    for (const [r, reused, psnr] of [
      [pab, 0.35, 45],
      [fastercache, 0.2, 50],
    ] as const) {
      expect(r.cachedSteps).toBe(0);
      expect(r.computedFraction).toBe(1);
      expect(r.attentionSkippedFraction).toBeGreaterThan(reused);
      expect(r.psnr[0]).toBeGreaterThan(psnr);
      expect(Number.isFinite(r.psnr[0])).toBe(true);
    }
    expect(demo.table).toMatch(/\| pab \| pab spatialAttentionBlockSkipRange=3 [^|]*\| - \|[^|]*\|[^|]*\| 0\.0\/28, attention \d+\.\d% reused \|/);
    expect(demo.table).toMatch(/\| fastercache \| fastercache [^|]*isGuidanceDistilled[^|]*\| - \|/);

    // MagCache with the ratios of prompt 0's calibration, diffusers' threshold 0.06: measured 11 of
    // 28 steps skipped, 61% of the blocks, 46.3 dB. The calibration run computed every block.
    const magcache = byName.get(DEMO_MAGCACHE)!;
    expect(magcache.cachedSteps).toBeGreaterThanOrEqual(9);
    expect(magcache.computedFraction).toBeLessThan(0.7);
    expect(magcache.psnr[0]).toBeGreaterThan(43);
    expect((magcache.cache!.mag_ratios as number[]).length).toBe(28);
    expect(demo.table).toMatch(/\| magcache \| magcache threshold=0\.06 .*\| 0\.06 \|/);
    for (const r of [foca, dbprune, magcache]) expect(Number.isFinite(r.psnr[0])).toBe(true);
  });
});

describe('the demo in bfloat16', () => {
  it("runs the pipeline in the dtype it is given, cached steps close to float32's", async () => {
    const demo = await runDemo({ out: join(dir, 'bf16'), promptCount: 1, presets: ['fast'], repeats: 1, dtype: 'bfloat16' });
    const record = demo.records.get('fast')![0];
    expect(record.settings.dtype).toBe('bfloat16');
    const fast = demo.results[1];
    expect(fast.cachedSteps).toBeGreaterThanOrEqual(16);
    expect(fast.psnr[0]).toBeGreaterThan(35);
  });

  it('npm run demo -- --dtype refuses an unknown dtype, listing the valid ones', () => {
    const r = spawnSync(process.execPath, [fileURLToPath(new URL('../dist/main.js', import.meta.url)), '--dtype', 'bf16'], { encoding: 'utf-8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--dtype: unknown dtype 'bf16' \(valid: float32, bfloat16, float16\)/);
  });
});

describe('the package', () => {
  it("import { runDemo } from '@ditcache/demo' resolves to the built demo", () => {
    const script = `const m = await import('@ditcache/demo'); console.log(JSON.stringify({ runDemo: typeof m.runDemo, model: m.REFERENCE_MODEL }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf-8',
      cwd: fileURLToPath(new URL('../../..', import.meta.url)),
    });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ runDemo: 'function', model: REFERENCE_MODEL });
  });
});
