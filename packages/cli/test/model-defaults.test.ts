// A model folder's ditcache.json fills what the flags leave out (flags win), in the CLI and the API; images say how they were made.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';

import { FluxPipeline } from '@ditcache/adapter-flux';
import { loadSafetensors } from '@ditcache/cuda-runtime';

import { readPngText } from '../src/png-text.js';

const root = new URL('../../../', import.meta.url).pathname;
const bin = join(root, 'packages/cli/dist/cli.js');
const shapes = join(root, 'models/flux-shapes');
const dir = mkdtempSync(join(tmpdir(), 'ditcache-defaults-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function ditcache(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf-8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const prompt = ['--prompt', 'a blue square in the center'];
const size = async (path: string) => {
  const { width, height } = await sharp(path).metadata();
  return [height, width];
};

describe('ditcache.json in the model folder', () => {
  it('gives the size, steps and text length the flags leave out: the image equals the one with those flags', async () => {
    const implicit = join(dir, 'implicit.png'),
      explicit = join(dir, 'explicit.png'),
      latents = join(dir, 'implicit.safetensors');
    const a = ditcache('generate', '--model', shapes, ...prompt, '--seed', '5', '--output', implicit, '--save-latents', latents);
    expect(a.status, a.stderr).toBe(0);
    expect(a.stderr).toContain(`ditcache: ${join(shapes, 'ditcache.json')} gives --height 32 --width 32 --steps 28 --max-sequence-length 16\n`);
    const b = ditcache(
      'generate',
      '--model',
      shapes,
      ...prompt,
      '--seed',
      '5',
      '--height',
      '32',
      '--width',
      '32',
      '--steps',
      '28',
      '--max-sequence-length',
      '16',
      '--output',
      explicit,
    );
    expect(b.status, b.stderr).toBe(0);
    expect(b.stderr).not.toContain('ditcache.json gives');
    expect(await size(implicit)).toEqual([32, 32]);
    expect(readFileSync(implicit).equals(readFileSync(explicit))).toBe(true);

    // The API reads the same file: generate() with no settings gives the CLI's latents.
    using pipe = FluxPipeline.fromPretrained(shapes);
    expect(pipe.defaults).toEqual({ height: 32, width: 32, numInferenceSteps: 28, maxSequenceLength: 16 });
    const api = pipe.generate({ prompt: 'a blue square in the center', seed: 5, decode: false });
    expect(api.timesteps).toHaveLength(28);
    expect(Buffer.from(api.latents.toBytes()).equals(Buffer.from(loadSafetensors(latents).latents_out.toBytes()))).toBe(true);
    api.latents.dispose();
  });

  it('yields to the flags', async () => {
    const out = join(dir, 'tall.png');
    const r = ditcache('generate', '--model', shapes, ...prompt, '--seed', '5', '--height', '48', '--output', out);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain('gives --width 32 --steps 28 --max-sequence-length 16\n');
    expect(await size(out)).toEqual([48, 32]);
  });

  it('is checked before any work: a bad file is one line naming the file and the key, listing the valid keys', () => {
    const model = join(dir, 'bad-defaults');
    mkdirSync(model);
    for (const name of readdirSync(shapes)) if (name !== 'ditcache.json') symlinkSync(join(shapes, name), join(model, name));
    writeFileSync(join(model, 'ditcache.json'), JSON.stringify({ height: 32, steps: 28 }));
    const r = ditcache('generate', '--model', model, ...prompt, '--output', join(dir, 'never.png'));
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      `ditcache: ${join(model, 'ditcache.json')}: unknown key "steps" (did you mean "num_inference_steps"?); valid keys: height, width, num_inference_steps, guidance_scale, max_sequence_length, num_frames, fps (and keys starting with _, which are ignored)`,
    ]);
  });
});

describe('the seed and the PNG text', () => {
  it('prints the seed drawn, and stores what made the image in it: the same flags and seed make the same image', () => {
    const cache = '{"Fn_compute_blocks": 1, "residual_diff_threshold": 0.2}';
    const first = join(dir, 'random-seed.png');
    const r = ditcache('generate', '--model', shapes, ...prompt, '--cache', cache, '--output', first);
    expect(r.status, r.stderr).toBe(0);
    const seed = /^ditcache: seed (\d+)$/m.exec(r.stderr)?.[1];
    expect(seed).toBeDefined();
    const text = readPngText(readFileSync(first));
    expect(text).toEqual({
      Software: `ditcache ${(JSON.parse(readFileSync(join(root, 'packages/cli/package.json'), 'utf-8')) as { version: string }).version}`,
      model: shapes,
      family: 'FLUX.1',
      prompt: 'a blue square in the center',
      seed,
      steps: '28',
      height: '32',
      width: '32',
      guidance: 'default',
      max_sequence_length: '16',
      dtype: 'float32',
      cache,
    });
    const again = join(dir, 'same-seed.png');
    const r2 = ditcache('generate', '--model', text.model, '--prompt', text.prompt, '--seed', text.seed, '--cache', text.cache, '--output', again);
    expect(r2.status, r2.stderr).toBe(0);
    expect(readFileSync(again).equals(readFileSync(first))).toBe(true);
  });

  it('names presets, the image of a batch, and noise that came from --inputs', () => {
    const out = join(dir, 'batch.png');
    const inputs = join(shapes, 'demo-prompts.safetensors');
    const r = ditcache('generate', '--model', shapes, '--inputs', inputs, '--seed', '3', '--cache', 'fast', '--dtype', 'bfloat16', '--output', out);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^ditcache: seed 3$/m);
    const text = readPngText(readFileSync(join(dir, 'batch-2.png')));
    expect(text).toMatchObject({ inputs, batch_index: '2', batch_size: '4', seed: '3', steps: '28', dtype: 'bfloat16', cache: 'fast' });
    expect(text.max_sequence_length).toBeUndefined();

    const tiny = join(root, 'testdata/goldens/flux-tiny');
    const given = join(dir, 'given-noise.png');
    const g = ditcache(
      'generate',
      '--model',
      tiny,
      '--inputs',
      join(tiny, 'pipeline.safetensors'),
      '--height',
      '32',
      '--width',
      '32',
      '--steps',
      '2',
      '--output',
      given,
    );
    expect(g.status, g.stderr).toBe(0);
    expect(g.stderr).toMatch(/^ditcache: the initial noise is latents_in of --inputs$/m);
    expect(readPngText(readFileSync(given))).toMatchObject({ seed: 'latents_in', steps: '2', cache: 'none' });
  });
});
