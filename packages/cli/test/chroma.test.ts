// The built bin on Chroma folders (packages/adapter-chroma's goldens): `generate --stats` with one
// entry per cache context named as cache-dit names it (cachedSteps for a step's cond call,
// cfgCachedSteps for the other; at guidance 1, under the default separate CFG, as cache-dit counts
// without it: one call, one step), and `forward` on the transformer's keyword arguments. It lives
// here, not in the adapter, because the bin is built after the adapters it loads.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, relativeL2 } from '@ditcache/cuda-runtime';

const root = new URL('../../../', import.meta.url).pathname;
const bin = join(root, 'packages/cli/dist/cli.js');
const set = join(root, 'packages/adapter-chroma/test/goldens/chroma-tiny');
const meta = JSON.parse(readFileSync(`${set}/meta.json`, 'utf-8')) as Record<string, number> & {
  cache_traces: Record<string, { config: Record<string, unknown>; guidance_scale?: number; stats: { cached_steps: number[]; cfg_cached_steps: number[] }[] }>;
};
const dir = mkdtempSync(join(tmpdir(), 'ditcache-chroma-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function ditcache(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf-8', timeout: 300_000 });
  return { status: r.status, stderr: r.stderr };
}
const size = ['--height', String(meta.height), '--width', String(meta.width), '--steps', String(meta.num_inference_steps)];

describe('ditcache generate on a Chroma folder', () => {
  it.each(['F1B0_W2', 'G1'])("writes cache-dit's cached steps per context in --stats, and the latents (%s)", (kind) => {
    const name = Object.keys(meta.cache_traces).find((n) => (kind === 'G1' ? n.includes('_G1') : n.startsWith(kind)));
    expect(name, `a trace ${kind} in the goldens`).toBeDefined();
    const trace = meta.cache_traces[name as string];
    const stats = join(dir, `${kind}.json`);
    const latents = join(dir, `${kind}.safetensors`);
    const guidance = String(trace.guidance_scale ?? meta.guidance_scale);
    const r = ditcache(
      'generate',
      '--model',
      set,
      '--inputs',
      `${set}/pipeline.safetensors`,
      ...size,
      '--guidance',
      guidance,
      '--cache',
      // The guidance-1 trace is cache-dit's run without separate CFG; the CLI runs with the default.
      JSON.stringify({ ...trace.config, enable_separate_cfg: undefined }),
      '--save-latents',
      latents,
      '--stats',
      stats,
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/generated in/);
    const records = JSON.parse(readFileSync(stats, 'utf-8')) as { name: string; cachedSteps: number[]; cfgCachedSteps: number[] }[];
    expect(records.map((c) => c.name)).toEqual(['transformer.transformer_blocks', 'transformer.single_transformer_blocks']);
    records.forEach((c, i) => {
      expect(c.cachedSteps).toEqual(trace.stats[i].cached_steps);
      expect(c.cfgCachedSteps).toEqual(trace.stats[i].cfg_cached_steps);
    });
    const got = loadSafetensors(latents);
    const want = loadSafetensors(`${set}/cache_traces.safetensors`);
    expect(relativeL2(got.latents_out, want[`${name}.latents_out`])).toBeLessThan(1e-4);
    for (const t of [...Object.values(got), ...Object.values(want)]) t.dispose();
  });
});

describe('ditcache forward on a Chroma transformer folder', () => {
  it("writes diffusers' sample for the transformer's keyword arguments, attention_mask included", () => {
    const out = join(dir, 'forward.safetensors');
    const r = ditcache('forward', '--model', `${set}/transformer`, '--inputs', `${set}/transformer_forward.safetensors`, '--out', out);
    expect(r.status, r.stderr).toBe(0);
    const got = loadSafetensors(out);
    const want = loadSafetensors(`${set}/transformer_forward.safetensors`);
    expect(relativeL2(got.sample, want.sample)).toBeLessThan(1e-5);
    for (const t of [...Object.values(got), ...Object.values(want)]) t.dispose();
  });
});
