// This package as a plugin of the `ditcache` command line: package.json's "ditcache.cli" field
// points at src/cli-family.ts (built), `--adapter` loads it, and generate / forward then run SD3
// folders with the usual flags, checked against the goldens (cache-dit's traces included).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, saveSafetensors } from '@ditcache/cuda-runtime';

import sd3CliFamily from '../src/cli-family.js';
import { SD3Transformer, StableDiffusion3Pipeline } from '../src/index.js';
import { TEXT_COMPONENTS, goldenRequest, goldens, metaOf, relativeL2, sd3FolderWith, type Trace } from './helpers.js';

const here = new URL('..', import.meta.url).pathname;
// The `ditcache` command of the CLI package this package has as a dev dependency.
const cliManifest = createRequire(import.meta.url).resolve('@ditcache/cli/package.json');
const bin = join(dirname(cliManifest), (JSON.parse(readFileSync(cliManifest, 'utf-8')) as { bin: { ditcache: string } }).bin.ditcache);
// As the issue writes it (`--adapter examples/adapter-sd3` from the repository root): the
// package named by its folder, relative to the folder two levels up.
const cwd = join(here, '../..');
const adapter = relative(cwd, here);
const dir = mkdtempSync(join(tmpdir(), 'ditcache-sd3-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
// Named by package instead, --adapter looks in node_modules: link this package there, as
// installing it (or `npm link`) would.
const installedBeside = join(dir, 'app');
mkdirSync(join(installedBeside, 'node_modules'), { recursive: true });
symlinkSync(here, join(installedBeside, 'node_modules', 'ditcache-adapter-sd3'));

function ditcache(...args: string[]) {
  const byName = args.includes('ditcache-adapter-sd3');
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf-8', timeout: 120_000, cwd: byName ? installedBeside : cwd });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The flags of a golden run: its size, steps and guidance. */
function runFlags(set: string, guidance = metaOf(set).guidance_scale): string[] {
  const m = metaOf(set);
  return ['--height', String(m.height), '--width', String(m.width), '--steps', String(m.num_inference_steps), '--guidance', String(guidance)];
}

/** A trace's config as --cache JSON, in cache-dit's keys. */
function cacheSpec(trace: Trace): string {
  return JSON.stringify(
    trace.taylorseer_order
      ? { ...trace.config, taylorseer_order: trace.taylorseer_order, enable_encoder_calibrator: trace.enable_encoder_calibrator ?? true }
      : trace.config,
  );
}

describe('ditcache --adapter examples/adapter-sd3', () => {
  it('lists the SD3 family as loaded with --adapter', () => {
    const r = ditcache('adapters', '--adapter', adapter, '--json');
    expect(r.status, r.stderr).toBe(0);
    const [first] = JSON.parse(r.stdout) as { name: string; explicit: boolean; pipelineClasses: string[]; transformerClasses: string[] }[];
    expect(first).toMatchObject({
      name: 'ditcache-adapter-sd3',
      explicit: true,
      pipelineClasses: ['StableDiffusion3Pipeline'],
      transformerClasses: ['SD3Transformer2DModel'],
    });
  });

  it.each([
    ['sd3-tiny', 'F1B0_W2_R0.0518'],
    ['sd3-tiny', 'defaults_TS1'],
    ['sd35-tiny', 'F1B1_W2_R0.057_TS2'],
  ])("generate on %s with the cache config of trace %s: cache-dit's steps, its latents, an image", (set, name) => {
    const trace = metaOf(set).cache_traces[name];
    const model = join(goldens, set);
    const [stats, latents, image] = ['json', 'safetensors', 'png'].map((ext) => join(dir, `${set}-${name}.${ext}`));
    const r = ditcache(
      'generate',
      '--adapter',
      adapter,
      '--model',
      model,
      '--inputs',
      join(model, 'pipeline.safetensors'),
      ...runFlags(set),
      '--cache',
      cacheSpec(trace),
      '--stats',
      stats,
      '--save-latents',
      latents,
      '--output',
      image,
    );
    expect(r.status, r.stderr).toBe(0);
    const records = JSON.parse(readFileSync(stats, 'utf-8')) as { name: string; cachedSteps: number[] }[];
    expect(records.map((c) => c.name)).toEqual(['transformer.transformer_blocks']);
    expect(records[0].cachedSteps).toEqual(trace.stats[0].cached_steps);
    const want = loadSafetensors(join(model, 'cache_traces.safetensors'))[`${name}.latents_out`];
    expect(relativeL2(loadSafetensors(latents).latents_out, want)).toBeLessThan(1e-4);
    expect(readFileSync(image).subarray(1, 4).toString()).toBe('PNG');
  });

  it("generate uncached, the package named instead of its folder: diffusers' latents, with and without guidance", () => {
    const model = join(goldens, 'sd35-tiny');
    const latents = join(dir, 'uncached.safetensors');
    const r = ditcache(
      'generate',
      '--adapter',
      'ditcache-adapter-sd3',
      '--model',
      model,
      '--inputs',
      join(model, 'pipeline.safetensors'),
      ...runFlags('sd35-tiny'),
      '--save-latents',
      latents,
    );
    expect(r.status, r.stderr).toBe(0);
    expect(relativeL2(loadSafetensors(latents).latents_out, loadSafetensors(join(model, 'pipeline.safetensors')).latents_out)).toBeLessThan(1e-4);
    const unguided = join(dir, 'unguided.safetensors');
    const g1 = ditcache(
      'generate',
      '--adapter',
      'ditcache-adapter-sd3',
      '--model',
      model,
      '--inputs',
      join(model, 'pipeline.safetensors'),
      ...runFlags('sd35-tiny', 1),
      '--save-latents',
      unguided,
    );
    expect(g1.status, g1.stderr).toBe(0);
    expect(relativeL2(loadSafetensors(unguided).latents_out, loadSafetensors(join(model, 'pipeline.safetensors')).latents_out_guidance_1)).toBeLessThan(1e-4);
  });

  it.each(['sd3-tiny', 'sd35-tiny'])("forward on %s: diffusers' sample", (set) => {
    const transformer = join(goldens, set, 'transformer');
    const inputs = join(goldens, set, 'transformer_forward.safetensors');
    const out = join(dir, `${set}-sample.safetensors`);
    const r = ditcache('forward', '--adapter', adapter, '--model', transformer, '--inputs', inputs, '--out', out);
    expect(r.status, r.stderr).toBe(0);
    expect(relativeL2(loadSafetensors(out).sample, loadSafetensors(inputs).sample)).toBeLessThan(1e-5);
  });

  it('generate and forward --dtype bfloat16: the bfloat16 latents and sample the API computes, bit for bit', () => {
    const model = join(goldens, 'sd35-tiny');
    const m = metaOf('sd35-tiny');
    const latents = join(dir, 'bf16.safetensors');
    const r = ditcache(
      'generate',
      '--adapter',
      adapter,
      '--model',
      model,
      '--inputs',
      join(model, 'pipeline.safetensors'),
      '--height',
      String(m.height),
      '--width',
      String(m.width),
      '--steps',
      '4',
      '--guidance',
      String(m.guidance_scale),
      '--dtype',
      'bfloat16',
      '--save-latents',
      latents,
    );
    expect(r.status, r.stderr).toBe(0);
    const golden = loadSafetensors(join(model, 'pipeline.safetensors'));
    using pipe = StableDiffusion3Pipeline.fromPretrained(model, { dtype: 'bfloat16' });
    using want = pipe.generate({ ...goldenRequest(golden, m), numInferenceSteps: 4, decode: false }).latents;
    const got = loadSafetensors(latents).latents_out;
    expect(got.dtype).toBe('bfloat16');
    expect(Buffer.compare(got.toBytes(), want.toBytes())).toBe(0);

    const inputs = join(model, 'transformer_forward.safetensors');
    const out = join(dir, 'bf16-sample.safetensors');
    const f = ditcache('forward', '--adapter', adapter, '--model', join(model, 'transformer'), '--inputs', inputs, '--dtype', 'bfloat16', '--out', out);
    expect(f.status, f.stderr).toBe(0);
    const x = loadSafetensors(inputs);
    using transformer = SD3Transformer.load(join(model, 'transformer'), { dtype: 'bfloat16' });
    using sample = transformer.forward({
      hiddenStates: x.hidden_states,
      encoderHiddenStates: x.encoder_hidden_states,
      pooledProjections: x.pooled_projections,
      timestep: x.timestep,
    });
    expect(Buffer.compare(loadSafetensors(out).sample.toBytes(), sample.toBytes())).toBe(0);
  });

  it('refuses what SD3 cannot do with one clear line', () => {
    const model = join(goldens, 'sd3-tiny');
    const golden = loadSafetensors(join(model, 'pipeline.safetensors'));
    const positiveOnly = join(dir, 'positive-only.safetensors');
    saveSafetensors(positiveOnly, { latents_in: golden.latents_in, prompt_embeds: golden.prompt_embeds, pooled_prompt_embeds: golden.pooled_prompt_embeds });
    const cases: [string[], RegExp][] = [
      [
        ['--inputs', positiveOnly, ...runFlags('sd3-tiny')],
        /--inputs .*positive-only.safetensors needs negative_prompt_embeds and negative_pooled_prompt_embeds for classifier-free guidance \(--guidance 5\); or give --guidance 1/,
      ],
      [
        ['--inputs', join(model, 'pipeline.safetensors'), '--prompt', 'a cat'],
        /--prompt: .* has no tokenizer\/, tokenizer_2\/, text_encoder\/, text_encoder_2\/ \(text encoders\); give prompt embeddings with --inputs instead/,
      ],
      [['--inputs', join(model, 'pipeline.safetensors'), '--frames', '9'], /--frames does not apply to Stable Diffusion 3/],
      [['--inputs', join(model, 'transformer_forward.safetensors')], /has no tensor 'prompt_embeds'/],
      [['--inputs', join(model, 'pipeline.safetensors'), '--output', join(dir, 'x.webp')], /Stable Diffusion 3 writes .png files/],
    ];
    for (const [args, message] of cases) {
      const r = ditcache('generate', '--adapter', adapter, '--model', model, ...args);
      expect(r.status, r.stderr).not.toBe(0);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
    }
  });
});

describe('ditcache generate --prompt on an SD3 folder with its text encoders', () => {
  it("gives diffusers' latents from text, the prompts encoded in the worker", () => {
    const model = sd3FolderWith(TEXT_COMPONENTS);
    try {
      const ref = loadSafetensors(join(goldens, 'sd3-prompt', 'prompts.safetensors'));
      const run = (JSON.parse(readFileSync(join(goldens, 'sd3-prompt', 'meta.json'), 'utf-8')) as { run: Record<string, string | number> }).run;
      const inputs = join(dir, 'text-latents-in.safetensors');
      saveSafetensors(inputs, { latents_in: ref.run_latents_in });
      const latents = join(dir, 'from-text.safetensors');
      const r = ditcache(
        'generate',
        '--adapter',
        adapter,
        '--model',
        model,
        '--prompt',
        String(run.prompt),
        '--negative-prompt',
        String(run.negative_prompt),
        '--inputs',
        inputs,
        '--height',
        String(run.height),
        '--width',
        String(run.width),
        '--steps',
        String(run.num_inference_steps),
        '--guidance',
        String(run.guidance_scale),
        '--save-latents',
        latents,
      );
      expect(r.status, r.stderr).toBe(0);
      expect(relativeL2(loadSafetensors(latents).latents_out, ref.run_latents_out)).toBeLessThan(1e-4);
    } finally {
      rmSync(model, { recursive: true, force: true });
    }
  });
});

describe('the SD3 CLI family', () => {
  it('turns --prompt into a text request, with --inputs holding at most latents_in', () => {
    const latents = loadSafetensors(join(goldens, 'sd3-tiny', 'pipeline.safetensors')).latents_in;
    expect(
      sd3CliFamily.request({ latents_in: latents }, 'in.safetensors', {
        prompt: 'a cat',
        negativePrompt: 'dark',
        maxSequenceLength: 77,
        steps: 3,
        guidance: 5,
      }),
    ).toMatchObject({
      prompt: 'a cat',
      negativePrompt: 'dark',
      maxSequenceLength: 77,
      latents,
      numInferenceSteps: 3,
      guidanceScale: 5,
    });
    expect(() => sd3CliFamily.request({ prompt_embeds: latents }, 'in.safetensors', { prompt: 'a cat' })).toThrow(
      /--prompt and the prompt_embeds of --inputs in.safetensors exclude each other/,
    );
    expect(() => sd3CliFamily.request({ latents_in: latents }, 'in.safetensors', { negativePrompt: 'dark' })).toThrow(
      /--negative-prompt and --max-sequence-length go with --prompt/,
    );
  });
});
