// --dtype on the commands that load a model (generate, forward, bench), --repeat and --timings
// on forward, and what the user sees when float16 overflows; the built bin in a child process.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { FluxPipeline, FluxTransformer } from '@ditcache/adapter-flux';
import { loadSafetensors, mul, saveSafetensors, type Tensor } from '@ditcache/cuda-runtime';

const root = new URL('../../../', import.meta.url).pathname;
const bin = join(root, 'packages/cli/dist/cli.js');
const flux = join(root, 'testdata/goldens/flux-tiny-guidance');
const dir = mkdtempSync(join(tmpdir(), 'ditcache-dtype-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function ditcache(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf-8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const bytes = (t: Tensor): Buffer => Buffer.from(t.toBytes());
const meta = JSON.parse(readFileSync(join(flux, 'meta.json'), 'utf-8')) as Record<string, number>;
const size = ['--height', String(meta.height), '--width', String(meta.width), '--steps', '4', '--guidance', String(meta.guidance_scale)];

describe('--dtype', () => {
  it('generate --dtype bfloat16 writes the latents the pipeline computes in bfloat16', () => {
    const latents = join(dir, 'bf16-latents.safetensors');
    const image = join(dir, 'bf16.png');
    const r = ditcache(
      'generate',
      '--model',
      flux,
      '--inputs',
      join(flux, 'pipeline.safetensors'),
      ...size,
      '--dtype',
      'bfloat16',
      '--save-latents',
      latents,
      '--output',
      image,
    );
    expect(r.status, r.stderr).toBe(0);
    const inputs = loadSafetensors(join(flux, 'pipeline.safetensors'));
    using pipe = FluxPipeline.fromPretrained(flux, { dtype: 'bfloat16' });
    const want = pipe.generate({
      promptEmbeds: inputs.prompt_embeds,
      pooledPromptEmbeds: inputs.pooled_prompt_embeds,
      latents: inputs.latents_in,
      height: meta.height,
      width: meta.width,
      numInferenceSteps: 4,
      guidanceScale: meta.guidance_scale,
      decode: false,
    });
    const got = loadSafetensors(latents).latents_out;
    expect(got.dtype).toBe('bfloat16');
    expect(Buffer.compare(bytes(got), bytes(want.latents))).toBe(0);
    expect(readFileSync(image).subarray(1, 4).toString()).toBe('PNG');
  });

  it('is a usage error listing the valid dtypes when unknown, on every command', () => {
    const inputs = join(flux, 'pipeline.safetensors');
    for (const args of [
      ['generate', '--model', flux, '--inputs', inputs],
      ['forward', '--model', join(flux, 'transformer'), '--inputs', join(flux, 'transformer_forward.safetensors'), '--out', join(dir, 'x.safetensors')],
      ['bench', '--model', flux, '--prompts', inputs, '--configs', 'grid'],
    ]) {
      const r = ditcache(...args, '--dtype', 'bf16');
      expect(r.status, args[0]).toBe(2);
      expect(r.stderr).toMatch(/--dtype <dtype>' argument 'bf16' is invalid\. Allowed choices are float32, bfloat16, float16/);
    }
  });

  it('forward --dtype --repeat --timings: one time per call, the sample of the dtype', () => {
    const inputs = join(flux, 'transformer_forward.safetensors');
    const out = join(dir, 'forward-bf16.safetensors');
    const timings = join(dir, 'timings.json');
    const r = ditcache(
      'forward',
      '--model',
      join(flux, 'transformer'),
      '--inputs',
      inputs,
      '--dtype',
      'bfloat16',
      '--repeat',
      '3',
      '--timings',
      timings,
      '--out',
      out,
    );
    expect(r.status, r.stderr).toBe(0);
    const { seconds } = JSON.parse(readFileSync(timings, 'utf-8')) as { seconds: number[] };
    expect(seconds).toHaveLength(3);
    for (const s of seconds) expect(s).toBeGreaterThan(0);
    const x = loadSafetensors(inputs);
    using transformer = FluxTransformer.load(join(flux, 'transformer'), { dtype: 'bfloat16' });
    using want = transformer.forward({
      hiddenStates: x.hidden_states,
      encoderHiddenStates: x.encoder_hidden_states,
      pooledProjections: x.pooled_projections,
      timestep: x.timestep,
      imgIds: x.img_ids,
      txtIds: x.txt_ids,
      guidance: x.guidance,
    });
    const got = loadSafetensors(out).sample;
    expect(got.dtype).toBe('bfloat16');
    expect(Buffer.compare(bytes(got), bytes(want))).toBe(0);

    // Timings alone need no --out; neither is a usage error.
    const only = ditcache('forward', '--model', join(flux, 'transformer'), '--inputs', inputs, '--timings', join(dir, 'only.json'));
    expect(only.status, only.stderr).toBe(0);
    expect((JSON.parse(readFileSync(join(dir, 'only.json'), 'utf-8')) as { seconds: number[] }).seconds).toHaveLength(1);
    const neither = ditcache('forward', '--model', join(flux, 'transformer'), '--inputs', inputs);
    expect(neither.status).toBe(2);
    expect(neither.stderr).toMatch(/--out or --timings is required/);
    const zero = ditcache('forward', '--model', join(flux, 'transformer'), '--inputs', inputs, '--out', join(dir, 'z.safetensors'), '--repeat', '0');
    expect(zero.status).toBe(2);
    expect(zero.stderr).toMatch(/--repeat must be a positive integer/);
  });

  it('a plugin with only the older forward() runs forward, and refuses the flags it cannot serve', () => {
    const plugin = join(dir, 'legacy-adapter');
    mkdirSync(plugin);
    writeFileSync(
      join(plugin, 'package.json'),
      JSON.stringify({ name: 'legacy-adapter', version: '1.0.0', type: 'module', ditcache: { cli: './cli-family.js' } }),
    );
    // Its forward returns the input latents as `sample`.
    writeFileSync(
      join(plugin, 'cli-family.js'),
      `export default {
        label: 'Legacy', pipelineClasses: ['LegacyPipeline'], transformerClasses: ['LegacyTransformer'], flags: [], outputFormats: ['.png'],
        spawn() { throw new Error('not a real model'); }, request() { return {}; }, writeOutput: async () => {},
        forward(dir, inputs) { return inputs.hidden_states.clone(); },
      };`,
    );
    const model = join(dir, 'legacy-model');
    mkdirSync(model);
    writeFileSync(join(model, 'config.json'), JSON.stringify({ _class_name: 'LegacyTransformer' }));
    const inputs = join(flux, 'transformer_forward.safetensors');
    const ok = ditcache('forward', '--adapter', plugin, '--model', model, '--inputs', inputs, '--out', join(dir, 'legacy.safetensors'));
    expect(ok.status, ok.stderr).toBe(0);
    const refused = ditcache(
      'forward',
      '--adapter',
      plugin,
      '--model',
      model,
      '--inputs',
      inputs,
      '--out',
      join(dir, 'legacy2.safetensors'),
      '--dtype',
      'bfloat16',
      '--repeat',
      '2',
    );
    expect(refused.status).toBe(2);
    expect(refused.stderr).toMatch(/--dtype, --repeat: the Legacy CLI plugin implements only the older forward\(\).*loadTransformer/);
  });

  it('bench --dtype runs the pipeline in that dtype and says so in its table', () => {
    const golden = loadSafetensors(join(flux, 'pipeline.safetensors'));
    const prompts = join(dir, 'prompts.safetensors');
    saveSafetensors(
      prompts,
      { prompt_embeds: golden.prompt_embeds, pooled_prompt_embeds: golden.pooled_prompt_embeds },
      { height: '32', width: '32', num_inference_steps: '4' },
    );
    const configs = join(dir, 'configs.json');
    writeFileSync(configs, JSON.stringify({ loose: { Fn_compute_blocks: 1, max_warmup_steps: 1, residual_diff_threshold: 0.5 } }));
    const out = join(dir, 'bench-bf16');
    const r = ditcache('bench', '--model', flux, '--prompts', prompts, '--configs', configs, '--out', out, '--dtype', 'bfloat16');
    expect(r.status, r.stderr).toBe(0);
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf-8')) as { settings: { dtype: string } };
    expect(results.settings.dtype).toBe('bfloat16');
    expect(readFileSync(join(out, 'results.md'), 'utf-8')).toMatch(/in bfloat16, 1 prompts, 4 steps/);
  });
});

describe('float16 overflow from the command line', () => {
  it('generate --dtype float16 stops with one line naming the step and the block and suggesting bfloat16', () => {
    const model = join(dir, 'overflowing');
    cpSync(flux, model, { recursive: true });
    const file = join(model, 'transformer', 'diffusion_pytorch_model.safetensors');
    const weights = loadSafetensors(file);
    const name = 'transformer_blocks.0.ff.net.2.weight';
    saveSafetensors(file, { ...weights, [name]: mul(weights[name], 1e6) });
    const r = ditcache(
      'generate',
      '--model',
      model,
      '--inputs',
      join(flux, 'pipeline.safetensors'),
      ...size,
      '--dtype',
      'float16',
      '--save-latents',
      join(dir, 'f16.safetensors'),
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^ditcache: float16 overflow at step 1 of 4, in transformer_blocks\.0: .*--dtype bfloat16/m);
    const bf16 = ditcache(
      'generate',
      '--model',
      model,
      '--inputs',
      join(flux, 'pipeline.safetensors'),
      ...size,
      '--dtype',
      'bfloat16',
      '--save-latents',
      join(dir, 'bf16-ok.safetensors'),
    );
    expect(bf16.status, bf16.stderr).toBe(0);
  });
});
