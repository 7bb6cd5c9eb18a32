// The CLI family as `ditcache` uses it, and the built `ditcache` bin itself on the goldens:
// --inputs under the pipeline's __call__ names to diffusers' latents, `forward` on the
// transformer's keyword arguments, --stats with one entry per cache context named as cache-dit
// names it, cachedSteps for a step's first (cond) call and cfgCachedSteps for the other (at
// guidance 1, under the default separate CFG, as cache-dit counts without it: one call, one step),
// and bad input refused with what to give instead.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors } from '@ditcache/cuda-runtime';
import { UsageError } from '@ditcache/diffusion/cli';

import family from '../src/cli-family.js';
import { ChromaPipeline, type ChromaGenerateOptions } from '../src/index.js';
import { goldens, relativeL2 } from './helpers.js';

const set = `${goldens}/chroma-tiny`;
const meta = JSON.parse(readFileSync(`${set}/meta.json`, 'utf-8')) as Record<string, number> & {
  cache_traces: Record<string, { config: Record<string, unknown>; guidance_scale?: number; stats: { cached_steps: number[]; cfg_cached_steps: number[] }[] }>;
};
const ref = loadSafetensors(`${set}/pipeline.safetensors`);
const forwardRef = loadSafetensors(`${set}/transformer_forward.safetensors`);
const dir = mkdtempSync(join(tmpdir(), 'ditcache-chroma-cli-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  for (const t of [...Object.values(ref), ...Object.values(forwardRef)]) t.dispose();
});

const bin = new URL('../../cli/dist/cli.js', import.meta.url).pathname;
function ditcache(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf-8', timeout: 300_000 });
  return { status: r.status, stderr: r.stderr };
}
const size = ['--height', String(meta.height), '--width', String(meta.width), '--steps', String(meta.num_inference_steps)];

describe('the Chroma CLI family', () => {
  it('turns --inputs and --guidance into a request that gives diffusers latents', () => {
    const request = family.request(ref, 'in.safetensors', {
      height: meta.height,
      width: meta.width,
      steps: meta.num_inference_steps,
      guidance: meta.guidance_scale,
    });
    expect(family.batchSize?.(request)).toBe(1);
    using pipe = ChromaPipeline.fromPretrained(set);
    const { latents } = pipe.generate({ ...(request as ChromaGenerateOptions), decode: false });
    expect(relativeL2(latents, ref.latents_out)).toBeLessThan(1e-4);
    latents.dispose();
  });

  it("runs `forward` on the transformer's keyword arguments, attention_mask included", () => {
    using transformer = family.loadTransformer?.(`${set}/transformer`, {});
    using sample = transformer?.forward(forwardRef, 'fwd.safetensors');
    expect(relativeL2(sample as NonNullable<typeof sample>, forwardRef.sample)).toBeLessThan(1e-5);
  });

  it('names its two cache contexts as cache-dit does, with the folder block counts', () => {
    expect(family.cacheChains?.(set)).toEqual([
      { name: 'transformer.transformer_blocks', blocks: 4 },
      { name: 'transformer.single_transformer_blocks', blocks: 5 },
    ]);
  });

  it('refuses what cannot run, saying what to give instead', () => {
    expect(() => family.checkModel?.(set, { prompt: 'a cat' })).toThrow(UsageError);
    expect(() => family.checkModel?.(set, { prompt: 'a cat' })).toThrow(/--prompt: .* has no tokenizer\/, text_encoder\/ .* give prompt embeddings and masks/);
    expect(() => family.request({}, undefined, {})).toThrow(/--prompt or --inputs is required/);
    expect(() => family.request({ prompt_embeds: ref.prompt_embeds }, 'in.safetensors', {})).toThrow(
      /has no tensor 'prompt_attention_mask' \(it has: prompt_embeds\)/,
    );
    expect(() => family.request(ref, 'in.safetensors', { prompt: 'a cat' })).toThrow(
      /--prompt and the prompt embeddings of --inputs in.safetensors exclude each other/,
    );
    expect(() => family.request(ref, 'in.safetensors', { maxSequenceLength: 600 })).toThrow(/at most 512/);
  });
});

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
    expect(r.stderr).toMatch(/generated in/);
    expect(r.status).toBe(0);
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
    expect(relativeL2(got.sample, forwardRef.sample)).toBeLessThan(1e-5);
    for (const t of Object.values(got)) t.dispose();
  });
});
