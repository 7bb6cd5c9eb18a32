// The CLI on LTX-Video folders (packages/adapter-ltx-video's goldens), as users run it: `forward`
// on the transformer's keyword arguments, `generate --save-latents` with --frames and --fps (the
// frame rate changes the result), the video output, and `--cache` / `--stats` against cache-dit's traces.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, relativeL2 } from '@ditcache/cuda-runtime';

const root = new URL('../../../', import.meta.url).pathname;
const bin = join(root, 'packages/cli/dist/cli.js');
const goldens = join(root, 'packages/adapter-ltx-video/test/goldens');
const dir = mkdtempSync(join(tmpdir(), 'ditcache-ltx-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function ditcache(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf-8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Meta {
  pipeline: { height: number; width: number; num_frames: number; frame_rate: number; steps: number; guidance_scale: number };
  cache_steps?: number;
  cache_traces?: Record<
    string,
    {
      config: Record<string, number>;
      taylorseer_order: number | null;
      params_modifiers: Record<string, number>[] | null;
      guidance_scale: number | null;
      stats: { cached_steps: number[] }[];
    }
  >;
}
const metaOf = (set: string): Meta => JSON.parse(readFileSync(join(goldens, set, 'meta.json'), 'utf-8')) as Meta;

function runFlags(set: string, overrides: Partial<Meta['pipeline']> = {}): string[] {
  const p = { ...metaOf(set).pipeline, ...overrides };
  return [
    '--height',
    `${p.height}`,
    '--width',
    `${p.width}`,
    '--frames',
    `${p.num_frames}`,
    '--fps',
    `${p.frame_rate}`,
    '--steps',
    `${p.steps}`,
    '--guidance',
    `${p.guidance_scale}`,
  ];
}

describe.each(['ltx-tiny', 'ltx-095-tiny'])('ditcache on %s', (set) => {
  const folder = join(goldens, set);

  it('forward: diffusers keyword arguments in (the int / float ones as float32 tensors), sample out', () => {
    const out = join(dir, `${set}-forward.safetensors`);
    const r = ditcache('forward', '--model', join(folder, 'transformer'), '--inputs', join(folder, 'transformer_forward.safetensors'), '--out', out);
    expect(r.status, r.stderr).toBe(0);
    expect(relativeL2(loadSafetensors(out).sample, loadSafetensors(join(folder, 'transformer_forward.safetensors')).sample)).toBeLessThan(1e-5);
  });

  it('generate --save-latents: the packed latents of output_type="latent", and --fps as the frame rate', () => {
    const want = loadSafetensors(join(folder, 'pipeline.safetensors'));
    for (const [fps, name] of [
      [undefined, 'latents_out'],
      [12, 'latents_out_fps_12'],
    ] as const) {
      const latents = join(dir, `${set}-${name}.safetensors`);
      const r = ditcache(
        'generate',
        '--model',
        folder,
        '--inputs',
        join(folder, 'pipeline.safetensors'),
        ...runFlags(set, fps ? { frame_rate: fps } : {}),
        '--save-latents',
        latents,
      );
      expect(r.status, r.stderr).toBe(0);
      expect(relativeL2(loadSafetensors(latents).latents_out, want[name])).toBeLessThan(1e-4);
    }
  });
});

describe('ditcache generate on ltx-tiny: video output and caching', () => {
  const folder = join(goldens, 'ltx-tiny');
  const meta = metaOf('ltx-tiny');

  it('writes the animation and every frame as PNG', () => {
    const out = join(dir, 'ltx.webp');
    const r = ditcache('generate', '--model', folder, '--inputs', join(folder, 'pipeline.safetensors'), ...runFlags('ltx-tiny'), '--output', out);
    expect(r.status, r.stderr).toBe(0);
    expect(existsSync(out)).toBe(true);
    expect(readdirSync(join(dir, 'ltx_frames')).length).toBe(meta.pipeline.num_frames);
  });

  it.each(Object.keys(meta.cache_traces ?? {}))("--cache %s: cache-dit's cached steps in one context, named as cache-dit names it, and its latents", (name) => {
    const trace = meta.cache_traces?.[name] as NonNullable<Meta['cache_traces']>[string];
    const spec = {
      ...trace.config,
      ...(trace.taylorseer_order ? { taylorseer_order: trace.taylorseer_order } : {}),
      ...(trace.params_modifiers ? { params_modifiers: trace.params_modifiers } : {}),
    };
    const latents = join(dir, `ltx-${name}.safetensors`);
    const stats = join(dir, `ltx-${name}.json`);
    const run = runFlags('ltx-tiny', { steps: meta.cache_steps, ...(trace.guidance_scale ? { guidance_scale: trace.guidance_scale } : {}) });
    const flags = [...run, '--cache', JSON.stringify(spec), '--stats', stats, '--save-latents', latents];
    const r = ditcache('generate', '--model', folder, '--inputs', join(folder, 'pipeline.safetensors'), ...flags);
    expect(r.status, r.stderr).toBe(0);
    const contexts = JSON.parse(readFileSync(stats, 'utf-8')) as { name: string; cachedSteps: number[]; cfgCachedSteps: number[] }[];
    expect(contexts.map((c) => c.name)).toEqual(['transformer.transformer_blocks']);
    expect(contexts[0].cachedSteps).toEqual(trace.stats[0].cached_steps);
    expect(contexts[0].cfgCachedSteps).toEqual([]);
    expect(relativeL2(loadSafetensors(latents).latents_out, loadSafetensors(join(folder, 'cache_traces.safetensors'))[`${name}.latents_out`])).toBeLessThan(
      1e-4,
    );
  });
});
