// The CLI as users run it: the built bin in a child process, on the goldens.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { loadSafetensors, saveSafetensors, type Tensor } from '@ditcache/cuda-runtime';

const root = new URL('../../../', import.meta.url).pathname;
const bin = join(root, 'packages/cli/dist/cli.js');
const flux = join(root, 'testdata/goldens/flux-tiny');
const dir = mkdtempSync(join(tmpdir(), 'ditcache-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function ditcache(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf-8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function relativeL2(a: Tensor, b: Tensor): number {
  const x = a.toFloat32Array(),
    y = b.toFloat32Array();
  let d = 0,
    n = 0;
  for (let i = 0; i < x.length; ++i) {
    d += (x[i] - y[i]) ** 2;
    n += y[i] ** 2;
  }
  return Math.sqrt(d / n);
}

const meta = JSON.parse(readFileSync(join(flux, 'meta.json'), 'utf-8')) as Record<string, number> & {
  cache_traces: Record<
    string,
    { config: Record<string, number>; taylorseer_order: number | null; stats: { cached_steps: number[]; residual_diffs: Record<string, number> }[] }
  >;
};
const size = ['--height', String(meta.height), '--width', String(meta.width), '--steps', String(meta.num_inference_steps)];

describe('ditcache generate', () => {
  it("writes the image, the latents and cache-dit's steps in --stats for a cache spec given as JSON (weights as stored)", () => {
    const name = 'F1B0_W3_R0.6_TS1';
    const trace = meta.cache_traces[name];
    const spec = JSON.stringify({ ...trace.config, taylorseer_order: trace.taylorseer_order });
    const out = join(dir, 'a.png'),
      latents = join(dir, 'a.safetensors'),
      stats = join(dir, 'a.json');
    const r = ditcache(
      'generate',
      '--model',
      flux,
      '--inputs',
      join(flux, 'pipeline.safetensors'),
      ...size,
      '--cache',
      spec,
      '--output',
      out,
      '--save-latents',
      latents,
      '--stats',
      stats,
      '--weight-dtype',
      'stored',
    );
    expect(r.stderr).toMatch(/generated in .* s, \d+ cached steps/);
    expect(r.status).toBe(0);
    expect(readFileSync(out).subarray(1, 4).toString()).toBe('PNG');
    const records = JSON.parse(readFileSync(stats, 'utf-8')) as Record<string, unknown>[];
    expect(records).toHaveLength(1);
    expect(Object.keys(records[0]).sort()).toEqual([
      'cachedSteps',
      'cfgCachedSteps',
      'cfgResidualDiffs',
      'computedBlocks',
      'firstPipelineStep',
      'name',
      'residualDiffs',
      'totalBlocks',
    ]);
    expect(records[0].cachedSteps).toEqual(trace.stats[0].cached_steps);
    expect(records[0].name).toBe('transformer.transformer_blocks+single_transformer_blocks');
    const got = loadSafetensors(latents),
      want = loadSafetensors(join(flux, 'cache_traces.safetensors'));
    expect(relativeL2(got.latents_out, want[`${name}.latents_out`])).toBeLessThan(1e-4);
  });

  it('takes presets and YAML files', () => {
    const yaml = join(dir, 'cache.yaml');
    writeFileSync(yaml, 'cache_config:\n  Fn_compute_blocks: 1\n  Bn_compute_blocks: 0\n  max_warmup_steps: 2\n  residual_diff_threshold: 0.65\n');
    const withYaml = ditcache(
      'generate',
      '--model',
      flux,
      '--inputs',
      join(flux, 'pipeline.safetensors'),
      ...size,
      '--cache',
      yaml,
      '--stats',
      join(dir, 'y.json'),
    );
    expect(withYaml.status).toBe(0);
    const records = JSON.parse(readFileSync(join(dir, 'y.json'), 'utf-8')) as { cachedSteps: number[] }[];
    expect(records[0].cachedSteps).toEqual(meta.cache_traces['F1B0_W2_R0.65'].stats[0].cached_steps);
    expect(
      ditcache('generate', '--model', flux, '--inputs', join(flux, 'pipeline.safetensors'), ...size, '--cache', 'balanced', '--stats', join(dir, 'b.json'))
        .status,
    ).toBe(0);
  });

  it('refuses bad input with one clear line and a non-zero exit', () => {
    const inputs = join(flux, 'pipeline.safetensors');
    const cases: [string[], RegExp][] = [
      [['--model', join(dir, 'missing'), '--inputs', inputs], /no such folder/],
      [['--model', join(root, 'testdata/goldens/wan-tiny/transformer'), '--inputs', inputs], /neither a model_index.json nor a transformer\/config.json/],
      [['--model', flux, '--inputs', inputs, '--cache', '{"Fn_compute_block": 1}'], /unknown key "Fn_compute_block" \(did you mean "Fn_compute_blocks"\?\)/],
      [['--model', flux, '--inputs', inputs, '--cache', 'turbo'], /'turbo' is not a preset/],
      [['--model', flux, '--inputs', join(flux, 'meta.json')], /not a valid safetensors file/],
      [['--model', flux, '--inputs', join(flux, 'transformer_forward.safetensors')], /has no tensor 'prompt_embeds'/],
      [
        ['--model', flux, '--inputs', inputs, '--height', '48', '--width', '32', '--output', join(dir, 'never.png')],
        /latents must be packed \(1, 96, 16\) for this size, got \(1, 64, 16\)/,
      ],
      [['--model', flux, '--inputs', inputs, '--steps', '0'], /--steps must be a positive integer/],
      [['--model', flux], /--inputs is required/],
      [
        ['--model', flux, '--inputs', inputs, '--weight-dtype', 'bf16'],
        /--weight-dtype <dtype>' argument 'bf16' is invalid. Allowed choices are float32, stored/,
      ],
    ];
    for (const [args, message] of cases) {
      const r = ditcache('generate', ...args);
      expect(r.status, r.stderr).not.toBe(0);
      expect(r.stderr.trim().split('\n')).toHaveLength(r.stderr.includes('--help') ? 2 : 1);
      expect(r.stderr).toMatch(message);
    }
  });

  it('never overwrites a file unless --force', () => {
    const out = join(dir, 'keep.png');
    writeFileSync(out, 'precious');
    const args = ['generate', '--model', flux, '--inputs', join(flux, 'pipeline.safetensors'), ...size, '--output', out];
    const r = ditcache(...args);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/keep.png exists; pass --force to overwrite it/);
    expect(readFileSync(out, 'utf-8')).toBe('precious');
    const forced = ditcache(...args, '--force');
    expect(forced.status, forced.stderr).toBe(0);
    expect(readFileSync(out).subarray(1, 4).toString()).toBe('PNG');
  });
});

describe('ditcache forward', () => {
  it('writes the transformer output for the golden inputs', () => {
    const out = join(dir, 'sample.safetensors');
    const r = ditcache('forward', '--model', join(flux, 'transformer'), '--inputs', join(flux, 'transformer_forward.safetensors'), '--out', out);
    expect(r.status, r.stderr).toBe(0);
    const got = loadSafetensors(out).sample,
      want = loadSafetensors(join(flux, 'transformer_forward.safetensors')).sample;
    expect(relativeL2(got, want)).toBeLessThan(1e-5);
    const wrong = ditcache(
      'forward',
      '--model',
      join(root, 'testdata/goldens/wan-tiny/transformer'),
      '--inputs',
      join(flux, 'transformer_forward.safetensors'),
      '--out',
      join(dir, 's2.safetensors'),
    );
    expect(wrong.status).not.toBe(0);
    expect(wrong.stderr).toMatch(/WanTransformer.forward: hiddenStates must be \(B, 16, frames, height, width\), got \(2, 64, 16\)/);
  });

  it('runs an image-to-video Wan transformer with encoder_hidden_states_image from --inputs, and says when it is missing', () => {
    const i2v = join(root, 'packages/adapter-wan/test/goldens/wan-i2v-tiny');
    const inputs = join(i2v, 'transformer_forward.safetensors');
    const out = join(dir, 'i2v-sample.safetensors');
    const r = ditcache('forward', '--model', join(i2v, 'transformer'), '--inputs', inputs, '--out', out);
    expect(r.status, r.stderr).toBe(0);
    expect(relativeL2(loadSafetensors(out).sample, loadSafetensors(inputs).sample)).toBeLessThan(1e-5);
    const { encoder_hidden_states_image: _image, ...withoutImage } = loadSafetensors(inputs);
    const textInputs = join(dir, 'i2v-text-only.safetensors');
    saveSafetensors(textInputs, withoutImage);
    const textOnly = ditcache('forward', '--model', join(i2v, 'transformer'), '--inputs', textInputs, '--out', join(dir, 'i2v-2.safetensors'));
    expect(textOnly.status).toBe(1);
    expect(textOnly.stderr).toMatch(/encoderHiddenStatesImage \(the CLIP image embeddings\) is required/);
  });
});

describe('ditcache on HiDream', () => {
  const hd = join(root, 'testdata/goldens/hidream-tiny');
  const hmeta = JSON.parse(readFileSync(join(hd, 'meta.json'), 'utf-8')) as Record<string, number> & {
    cache_traces: Record<string, { config: Record<string, number>; stats: { cached_steps: number[] }[] }>;
  };

  it("generate with a cache spec gives cache-dit's steps per block list under its names", () => {
    const name = 'F1B0_W2_R0.442';
    const trace = hmeta.cache_traces[name];
    const stats = join(dir, 'hd.json'),
      latents = join(dir, 'hd.safetensors');
    const r = ditcache(
      'generate',
      '--model',
      hd,
      '--inputs',
      join(hd, 'pipeline.safetensors'),
      '--height',
      String(hmeta.height),
      '--width',
      String(hmeta.width),
      '--steps',
      String(hmeta.num_inference_steps),
      '--guidance',
      String(hmeta.guidance_scale),
      '--default-sample-size',
      String(hmeta['pipe.default_sample_size']),
      '--cache',
      JSON.stringify(trace.config),
      '--stats',
      stats,
      '--save-latents',
      latents,
    );
    expect(r.status, r.stderr).toBe(0);
    const records = JSON.parse(readFileSync(stats, 'utf-8')) as { name: string; cachedSteps: number[]; cfgCachedSteps: number[] }[];
    expect(records.map((x) => x.name)).toEqual(['transformer.double_stream_blocks', 'transformer.single_stream_blocks']);
    expect(records.map((x) => x.cachedSteps)).toEqual(trace.stats.map((s) => s.cached_steps));
    expect(records.map((x) => x.cfgCachedSteps)).toEqual([[], []]);
    const want = loadSafetensors(join(hd, 'cache_traces.safetensors'))[`${name}.latents_out`];
    expect(relativeL2(loadSafetensors(latents).latents_out, want)).toBeLessThan(1e-4);
  });

  it('forward on square and non-square (padded) inputs', () => {
    for (const file of ['transformer_forward.safetensors', 'transformer_forward_nonsquare.safetensors']) {
      const out = join(dir, `hd-${file}`);
      const r = ditcache('forward', '--model', join(hd, 'transformer'), '--inputs', join(hd, file), '--out', out);
      expect(r.status, r.stderr).toBe(0);
      expect(relativeL2(loadSafetensors(out).sample, loadSafetensors(join(hd, file)).sample)).toBeLessThan(1e-5);
    }
  });
});

describe('ditcache on Wan', () => {
  const w21 = join(root, 'testdata/goldens/wan-tiny');
  const w22 = join(w21, 'wan22');
  type WanMeta = Record<string, number> & {
    cache_traces: Record<
      string,
      {
        config: Record<string, unknown>;
        taylorseer_order: number | null;
        params_modifiers: unknown[] | null;
        stats: { source: string; cached_steps: number[]; cfg_cached_steps: number[] }[];
      }
    >;
  };
  const flags = (m: WanMeta) => [
    '--height',
    String(m.height),
    '--width',
    String(m.width),
    '--frames',
    String(m.num_frames),
    '--steps',
    String(m.num_inference_steps),
    '--guidance',
    String(m.guidance_scale),
  ];

  it('Wan 2.2: per-expert ParamsModifiers from --cache, stats per expert and CFG branch, an animation with its frames', () => {
    const meta = JSON.parse(readFileSync(join(w22, 'meta.json'), 'utf-8')) as WanMeta;
    const name = 'F2B1_W2_R0.148_TS1_mod';
    const trace = meta.cache_traces[name];
    const spec = JSON.stringify({ ...trace.config, taylorseer_order: trace.taylorseer_order, params_modifiers: trace.params_modifiers });
    const stats = join(dir, 'w22.json'),
      video = join(dir, 'w22.webp'),
      latents = join(dir, 'w22.safetensors');
    const r = ditcache(
      'generate',
      '--model',
      w22,
      '--inputs',
      join(w22, 'pipeline.safetensors'),
      ...flags(meta),
      '--guidance-2',
      String(meta.guidance_scale_2),
      '--cache',
      spec,
      '--stats',
      stats,
      '--output',
      video,
      '--save-latents',
      latents,
    );
    expect(r.status, r.stderr).toBe(0);
    const records = JSON.parse(readFileSync(stats, 'utf-8')) as { name: string; firstPipelineStep: number; cachedSteps: number[]; cfgCachedSteps: number[] }[];
    expect(records.map((x) => x.name)).toEqual(['transformer.blocks', 'transformer_2.blocks']);
    expect(records.map((x) => x.firstPipelineStep)).toEqual([0, meta.expert_switch_step]);
    expect(records.map((x) => x.cachedSteps)).toEqual(trace.stats.map((s) => s.cached_steps));
    expect(records.map((x) => x.cfgCachedSteps)).toEqual(trace.stats.map((s) => s.cfg_cached_steps));
    const want = loadSafetensors(join(w22, 'cache_traces.safetensors'))[`${name}.latents_out`];
    expect(relativeL2(loadSafetensors(latents).latents_out, want)).toBeLessThan(1e-4);
    expect(readFileSync(video).subarray(8, 12).toString()).toBe('WEBP');
    expect(readdirSync(join(dir, 'w22_frames'))).toHaveLength(meta.num_frames);
  });

  it("Wan 2.1 from text: --prompt and --negative-prompt through the folder's UMT5 encoder give diffusers' latents", () => {
    const data = join(root, 'packages/adapter-wan/test/goldens/wan-prompt');
    const run = (JSON.parse(readFileSync(join(data, 'meta.json'), 'utf-8')) as { run: Record<string, string | number> }).run;
    const model = join(dir, 'wan-with-text');
    mkdirSync(model);
    for (const name of ['transformer', 'vae', 'scheduler']) symlinkSync(join(w21, name), join(model, name));
    for (const name of ['tokenizer', 'text_encoder']) symlinkSync(join(data, name), join(model, name));
    const index = JSON.parse(readFileSync(join(w21, 'model_index.json'), 'utf-8')) as Record<string, unknown>;
    writeFileSync(
      join(model, 'model_index.json'),
      JSON.stringify({ ...index, tokenizer: ['transformers', 'T5TokenizerFast'], text_encoder: ['transformers', 'UMT5EncoderModel'] }),
    );
    const ref = loadSafetensors(join(data, 'prompts.safetensors'));
    const inputs = join(dir, 'wan-latents-in.safetensors');
    saveSafetensors(inputs, { latents_in: ref.run_latents_in });
    const latents = join(dir, 'wan-from-text.safetensors');
    const size = [
      '--height',
      String(run.height),
      '--width',
      String(run.width),
      '--frames',
      String(run.num_frames),
      '--steps',
      String(run.num_inference_steps),
      '--guidance',
      String(run.guidance_scale),
    ];
    const r = ditcache(
      'generate',
      '--model',
      model,
      '--prompt',
      String(run.prompt),
      '--negative-prompt',
      String(run.negative_prompt),
      '--inputs',
      inputs,
      ...size,
      '--save-latents',
      latents,
    );
    expect(r.status, r.stderr).toBe(0);
    expect(relativeL2(loadSafetensors(latents).latents_out, ref.run_latents_out)).toBeLessThan(1e-4);
    const textless = ditcache('generate', '--model', w21, '--prompt', 'a cat', ...size);
    expect(textless.status).toBe(2);
    expect(textless.stderr).toMatch(/--prompt: .* has no tokenizer\/, text_encoder\/ \(the UMT5 text encoder\); give prompt embeddings with --inputs instead/);
  });

  it('Wan 2.1: forward, and clear errors for frames and formats', () => {
    const meta = JSON.parse(readFileSync(join(w21, 'meta.json'), 'utf-8')) as WanMeta;
    const out = join(dir, 'wan-sample.safetensors');
    const f = ditcache('forward', '--model', join(w21, 'transformer'), '--inputs', join(w21, 'transformer_forward.safetensors'), '--out', out);
    expect(f.status, f.stderr).toBe(0);
    expect(relativeL2(loadSafetensors(out).sample, loadSafetensors(join(w21, 'transformer_forward.safetensors')).sample)).toBeLessThan(1e-5);
    const base = ['generate', '--model', w21, '--inputs', join(w21, 'pipeline.safetensors')];
    for (const [args, message] of [
      [['--frames', '8'], /--frames must be 4k \+ 1/],
      [['--output', join(dir, 'w.png')], /Wan writes .webp or .gif files/],
      [['--true-cfg-scale', '2'], /--true-cfg-scale does not apply to Wan/],
      [[...flags(meta), '--guidance-2', '3', '--save-latents', join(dir, 'never.safetensors')], /guidanceScale2 is for the second expert of Wan 2.2/],
    ] as [string[], RegExp][]) {
      const r = ditcache(...base, ...args);
      expect(r.status, r.stderr).not.toBe(0);
      expect(r.stderr).toMatch(message);
    }
  });
});
